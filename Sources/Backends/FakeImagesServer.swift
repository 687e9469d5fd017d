import Foundation
import ImageIngest
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A small OpenAI-compatible Images server for tests, load runs and demos, on 127.0.0.1 only.
///
/// Serves `POST /v1/images/generations` (JSON) and `POST /v1/images/edits` (multipart, parsed
/// enough to count the `image[]` parts and see the `mask`), answering real PNGs of the requested
/// size (each side capped at ``Configuration/maxOutputSide``) as `b64_json` with a `usage` object.
/// It can add latency, mix in errors (500, 503, 429 rate limit or quota, 400 moderation, and
/// timeouts that never answer), refuse prompts containing ``Configuration/blockedWords``, and
/// enforce its own per-minute hard limits on requests and images over a sliding one-minute window,
/// answering 429 `rate_limit_exceeded` with `Retry-After` and counting every request over a limit.
/// `GET /stats` answers the counts as JSON (see ``Stats``). It never logs or stores prompts.
public final class FakeImagesServer: Sendable {
    /// How the server behaves.
    public struct Configuration: Sendable {
        /// The least time before an answer. Default 20 ms.
        public var latency: Duration = .milliseconds(20)
        /// Extra latency drawn uniformly from zero to this. Default 0.
        public var latencyJitter: Duration = .zero
        /// The fraction of image calls answered 500. Default 0.
        public var serverErrorRate: Double = 0
        /// The fraction of image calls answered 503. Default 0.
        public var unavailableRate: Double = 0
        /// The fraction of image calls answered 429 `rate_limit_exceeded` with `Retry-After`. Default 0.
        public var rateLimitRate: Double = 0
        /// The fraction of image calls answered 429 `insufficient_quota`. Default 0.
        public var quotaRate: Double = 0
        /// The fraction of image calls answered 400 `moderation_blocked`. Default 0.
        public var moderationRate: Double = 0
        /// The fraction of image calls never answered (the client times out). Default 0.
        public var timeoutRate: Double = 0
        /// Prompts containing any of these words (case-insensitive) are answered 400 `moderation_blocked`. Default none.
        public var blockedWords: [String] = []
        /// Requests accepted per sliding minute; 0 for no limit. Default 0.
        public var requestsPerMinute: Int = 0
        /// Images accepted per sliding minute; 0 for no limit. Default 0.
        public var imagesPerMinute: Int = 0
        /// `Retry-After` seconds of the simulated rate limits (error mix). Default 1.
        public var retryAfterSeconds: Int = 1
        /// The largest output side drawn; larger requested sizes are capped. Default 256.
        public var maxOutputSide: Int = 256
        /// Draws noise instead of a picture: PNGs that do not compress, about 3 bytes per pixel
        /// (600 × 600 is about 1 MB), for measuring what large outputs cost. Default false.
        public var noise: Bool = false
        /// The most images one call may ask for. Default 10.
        public var maxCount: Int = 10
        /// Seeds the error and latency draws. Default 0.
        public var seed: UInt64 = 0
        /// Categories named in moderation refusals, as `safety_violations=[...]` in the message. Default `violence`.
        public var moderationCategories: [String] = ["violence"]
        /// When set, every image call within the limits gets this error answer. Default nil.
        public var forcedError: ForcedError?

        /// Creates a configuration with the documented defaults.
        public init() {}
    }

    /// An error answer the server gives to every call (for tests of each kind of answer).
    public struct ForcedError: Sendable {
        public var status: Int
        /// `error.code` of the body; nil sends a non-JSON body.
        public var code: String?
        public var type: String
        /// The `Retry-After` header, when set.
        public var retryAfter: String?

        public init(status: Int, code: String?, type: String = "invalid_request_error", retryAfter: String? = nil) {
            self.status = status
            self.code = code
            self.type = type
            self.retryAfter = retryAfter
        }
    }

    /// What the server counted since it started.
    public struct Stats: Sendable, Codable, Equatable {
        /// Image calls received (`POST /v1/images/...`), over the limits or not.
        public var requests = 0
        /// Images answered.
        public var images = 0
        /// Calls refused by the hard limits.
        public var overLimit = 0
        /// Calls left unanswered on purpose.
        public var timeouts = 0
        /// `image[]` parts received by edits.
        public var editInputs = 0
        /// `mask` parts received by edits.
        public var masks = 0
        /// Answers by HTTP status (`"200"`, `"429"`, ...).
        public var byStatus: [String: Int] = [:]

        enum CodingKeys: String, CodingKey {
            case requests, images, timeouts, masks
            case overLimit = "over_limit"
            case editInputs = "edit_inputs"
            case byStatus = "by_status"
        }

        /// Empty counts.
        public init() {}
    }

    private struct State {
        var configuration: Configuration
        var random: SplitMix64
        var stats = Stats()
        /// Accepted calls of the last minute: when, and how many images.
        var window: [(at: ContinuousClock.Instant, images: Int)] = []
    }

    private let state: Mutex<State>
    private let pictures = Mutex<[String: String]>([:])
    private let channels = Mutex<(server: (any Channel)?, children: [ObjectIdentifier: any Channel])>((nil, [:]))

    /// Creates a server; nothing listens until ``start(host:port:)``.
    public init(configuration: Configuration = .init()) {
        state = Mutex(State(configuration: configuration, random: SplitMix64(seed: configuration.seed)))
    }

    /// Replaces the configuration; calls already received keep their draw.
    public func update(_ configuration: Configuration) {
        state.withLock { $0.configuration = configuration }
    }

    /// The counts so far.
    public var stats: Stats { state.withLock { $0.stats } }

    /// Starts listening on `host` (a loopback address) and `port` (0 picks a free one); returns the bound port.
    public func start(host: String = "127.0.0.1", port: Int = 0) async throws -> Int {
        guard ["127.0.0.1", "::1", "localhost"].contains(host) else {
            throw BackendError(.invalidRequest, "the fake server listens on loopback addresses only")
        }
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                let id = ObjectIdentifier(channel)
                channels.withLock { $0.children[id] = channel }
                channel.closeFuture.whenComplete { _ in
                    _ = self.channels.withLock { $0.children.removeValue(forKey: id) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FakeImagesHandler(server: self))
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        channels.withLock { $0.server = channel }
        return channel.localAddress?.port ?? port
    }

    /// Stops listening and closes every open connection.
    public func stop() async {
        let (server, children) = channels.withLock { ($0.server, Array($0.children.values)) }
        try? await server?.close()
        for child in children { try? await child.close() }
        channels.withLock { $0.server = nil }
    }

    /// An answer decided for one request.
    enum Reply {
        case respond(status: HTTPResponseStatus, headers: [(String, String)], body: [UInt8], after: Duration)
        case hang
    }

    /// Decides the answer to one complete request. Called on the event loop.
    func reply(to head: HTTPRequestHead, body: [UInt8]) -> Reply {
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        if head.method == .GET, path == "/stats" {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            let json = (try? encoder.encode(stats)).map(Array.init) ?? []
            return .respond(status: .ok, headers: [("Content-Type", "application/json")], body: json, after: .zero)
        }
        guard head.method == .POST, path == "/v1/images/generations" || path == "/v1/images/edits" else {
            return .respond(
                status: .notFound, headers: [("Content-Type", "application/json")],
                body: Self.error("unknown_url", type: "invalid_request_error", "no such endpoint"), after: .zero)
        }
        let call = Self.parse(head: head, body: body, edit: path.hasSuffix("edits"))
        return state.withLock { state in
            state.stats.requests += 1
            state.stats.editInputs += call.inputs
            state.stats.masks += call.hasMask ? 1 : 0
            return decide(call, &state)
        }
    }

    private func decide(_ call: ParsedCall, _ state: inout State) -> Reply {
        let configuration = state.configuration
        func answer(_ status: HTTPResponseStatus, _ body: [UInt8], _ headers: [(String, String)] = [], after: Duration)
            -> Reply
        {
            state.stats.byStatus[String(status.code), default: 0] += 1
            return .respond(
                status: status, headers: [("Content-Type", "application/json")] + headers, body: body, after: after)
        }
        guard call.authorized else {
            return answer(
                .unauthorized, Self.error("invalid_api_key", type: "invalid_request_error", "missing API key"),
                after: .zero)
        }
        guard let (width, height) = call.size, (1...configuration.maxCount).contains(call.count),
            !call.isEdit || call.inputs > 0
        else {
            return answer(
                .badRequest, Self.error("invalid_value", type: "invalid_request_error", "invalid size, n or images"),
                after: .zero)
        }

        // The hard limits, over a sliding minute.
        let now = ContinuousClock.now
        state.window.removeAll { now - $0.at >= .seconds(60) }
        let imagesInWindow = state.window.reduce(0) { $0 + $1.images }
        let overRequests = configuration.requestsPerMinute > 0 && state.window.count >= configuration.requestsPerMinute
        let overImages =
            configuration.imagesPerMinute > 0 && imagesInWindow + call.count > configuration.imagesPerMinute
        if overRequests || overImages {
            state.stats.overLimit += 1
            let oldest = state.window.first?.at ?? now
            let wait = max(1, Int(((oldest + .seconds(60)) - now).components.seconds) + 1)
            return answer(
                .tooManyRequests,
                Self.error(
                    "rate_limit_exceeded", type: "requests", "over the \(overRequests ? "request" : "image") limit"),
                [("Retry-After", String(wait))], after: .zero)
        }
        state.window.append((now, call.count))

        let jitter = configuration.latencyJitter * state.random.nextUnit()
        let delay = configuration.latency + jitter
        let draw = state.random.nextUnit()
        var edge = 0.0
        func next(_ rate: Double) -> Bool {
            edge += max(0, rate)
            return draw < edge
        }
        let retryAfter = [("Retry-After", String(configuration.retryAfterSeconds))]
        if let forced = configuration.forcedError {
            let body =
                forced.code.map { Self.error($0, type: forced.type, "forced answer: \($0)") }
                ?? Array("<html>forced answer</html>".utf8)
            return answer(
                HTTPResponseStatus(statusCode: forced.status), body,
                forced.retryAfter.map { [("Retry-After", $0)] } ?? [], after: delay)
        }
        if next(configuration.serverErrorRate) {
            return answer(
                .internalServerError, Self.error("server_error", type: "server_error", "simulated failure"),
                after: delay)
        }
        if next(configuration.unavailableRate) {
            return answer(
                .serviceUnavailable, Self.error("service_unavailable", type: "server_error", "simulated overload"),
                after: delay)
        }
        if next(configuration.rateLimitRate) {
            return answer(
                .tooManyRequests, Self.error("rate_limit_exceeded", type: "requests", "simulated rate limit"),
                retryAfter,
                after: delay)
        }
        if next(configuration.quotaRate) {
            return answer(
                .tooManyRequests, Self.error("insufficient_quota", type: "insufficient_quota", "simulated quota"),
                after: delay)
        }
        let blocked = configuration.blockedWords.contains {
            !$0.isEmpty && call.prompt.lowercased().contains($0.lowercased())
        }
        if next(configuration.moderationRate) || blocked {
            return answer(
                .badRequest,
                Self.error(
                    "moderation_blocked", type: "image_generation_user_error",
                    "Your request was refused by the safety system. safety_violations=["
                        + configuration.moderationCategories.joined(separator: ", ") + "]."),
                after: delay)
        }
        if next(configuration.timeoutRate) {
            state.stats.timeouts += 1
            return .hang
        }

        let side = max(1, configuration.maxOutputSide)
        let (outWidth, outHeight) = (min(width, side), min(height, side))
        let picture = picture(width: outWidth, height: outHeight, noise: configuration.noise)
        state.stats.images += call.count
        var json = "{\"created\":\(Int(Date().timeIntervalSince1970)),\"data\":["
        json += Array(repeating: "{\"b64_json\":\"\(picture)\"}", count: call.count).joined(separator: ",")
        let inputTokens = max(1, call.prompt.utf8.count / 4) + call.inputs * 65
        let outputTokens = call.count * max(1, outWidth * outHeight / 1024)
        json += "],\"usage\":{\"input_tokens\":\(inputTokens),\"output_tokens\":\(outputTokens),"
        json += "\"total_tokens\":\(inputTokens + outputTokens)}}"
        return answer(.ok, Array(json.utf8), after: delay)
    }

    /// A base64 PNG of the size, drawn once per size (called with the state locked).
    private func picture(width: Int, height: Int, noise: Bool) -> String {
        let key = "\(width)x\(height)\(noise ? "-noise" : "")"
        if let cached = pictures.withLock({ $0[key] }) { return cached }
        var image = SimulatedPainter.paint(prompt: "fake images server", width: width, height: height, variant: 0)
        if noise {
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            for index in image.pixels.indices where index % 4 != 3 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                image.pixels[index] = UInt8(truncatingIfNeeded: state >> 56)
            }
        }
        let encoded = ((try? PNGCodec.encode(image, keepAlpha: false)) ?? []).base64
        pictures.withLock { $0[key] = encoded }
        return encoded
    }

    private static func error(_ code: String, type: String, _ message: String) -> [UInt8] {
        Array("{\"error\":{\"code\":\"\(code)\",\"type\":\"\(type)\",\"message\":\"\(message)\",\"param\":null}}".utf8)
    }

    /// What the server reads of one image call.
    struct ParsedCall {
        var isEdit: Bool
        var authorized: Bool
        var prompt = ""
        var count = 1
        var size: (Int, Int)? = (1024, 1024)
        var inputs = 0
        var hasMask = false
    }

    static func parse(head: HTTPRequestHead, body: [UInt8], edit: Bool) -> ParsedCall {
        var call = ParsedCall(
            isEdit: edit, authorized: head.headers.first(name: "authorization")?.hasPrefix("Bearer ") == true)
        var fields: [String: String] = [:]
        if edit {
            let contentType = head.headers.first(name: "content-type") ?? ""
            guard let range = contentType.range(of: "boundary=") else {
                call.size = nil
                return call
            }
            let boundary = String(contentType[range.upperBound...]).trimmingCharacters(
                in: CharacterSet(charactersIn: "\""))
            for part in MultipartParts(body: body, boundary: boundary) {
                switch part.name {
                case "image[]", "image": call.inputs += 1
                case "mask": call.hasMask = true
                case let name?: fields[name] = String(decoding: part.content, as: UTF8.self)
                case nil: break
                }
            }
        } else if let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] {
            for (key, value) in object {
                if let string = value as? String {
                    fields[key] = string
                } else if let number = value as? Int {
                    fields[key] = String(number)
                }
            }
        } else {
            call.size = nil
        }
        call.prompt = fields["prompt"] ?? ""
        if let n = fields["n"] { call.count = Int(n) ?? 0 }
        if let size = fields["size"], size != "auto" {
            let sides = size.split(separator: "x").compactMap { Int($0) }
            call.size = sides.count == 2 && sides[0] > 0 && sides[1] > 0 ? (sides[0], sides[1]) : nil
        }
        return call
    }
}

/// The parts of a `multipart/form-data` body: each part's `name` and content.
struct MultipartParts: Sequence {
    struct Part {
        var name: String?
        var content: ArraySlice<UInt8>
    }

    var body: [UInt8]
    var boundary: String

    func makeIterator() -> IndexingIterator<[Part]> { parts().makeIterator() }

    private func parts() -> [Part] {
        let delimiter = Array("--\(boundary)".utf8)
        var starts: [Int] = []
        var index = 0
        while let found = Self.find(delimiter, in: body, from: index) {
            starts.append(found)
            index = found + delimiter.count
        }
        var parts: [Part] = []
        for (start, end) in zip(starts, starts.dropFirst()) {
            let partStart = start + delimiter.count + 2  // the CRLF after the delimiter
            let partEnd = end - 2  // the CRLF before the next delimiter
            guard partStart <= partEnd, let split = Self.find(Array("\r\n\r\n".utf8), in: body, from: partStart),
                split + 4 <= partEnd
            else { continue }
            let headers = String(decoding: body[partStart..<split], as: UTF8.self)
            var name: String?
            if let range = headers.range(of: "name=\"") {
                name = String(headers[range.upperBound...].prefix { $0 != "\"" })
            }
            parts.append(Part(name: name, content: body[(split + 4)..<partEnd]))
        }
        return parts
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, from <= haystack.count - needle.count else { return nil }
        var index = from
        while index <= haystack.count - needle.count {
            if haystack[index] == needle[0], haystack[index..<(index + needle.count)].elementsEqual(needle) {
                return index
            }
            index += 1
        }
        return nil
    }
}

extension [UInt8] {
    fileprivate var base64: String { Data(self).base64EncodedString() }
}

/// Reads one HTTP request at a time and writes the server's reply, after its latency.
private final class FakeImagesHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The largest request body read; larger bodies are answered 413.
    static let maxBody = 64 << 20

    private let server: FakeImagesServer
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(server: FakeImagesServer) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            tooLarge = false
        case .body(var buffer):
            if body.count + buffer.readableBytes > Self.maxBody {
                tooLarge = true
            } else {
                body.append(contentsOf: buffer.readBytes(length: buffer.readableBytes) ?? [])
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let reply: FakeImagesServer.Reply =
                tooLarge
                ? .respond(status: .payloadTooLarge, headers: [], body: [], after: .zero)
                : server.reply(to: head, body: body)
            body = []
            guard case .respond(let status, let headers, let responseBody, let delay) = reply else { return }
            let keepAlive = head.isKeepAlive
            let write = { [self] in
                var responseHead = HTTPResponseHead(version: head.version, status: status)
                for (name, value) in headers { responseHead.headers.add(name: name, value: value) }
                responseHead.headers.add(name: "Content-Length", value: String(responseBody.count))
                if !keepAlive { responseHead.headers.add(name: "Connection", value: "close") }
                context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: responseBody)))), promise: nil)
                let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
                if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
            }
            if delay <= .zero {
                write()
            } else {
                let (seconds, attoseconds) = delay.components
                let amount = TimeAmount.nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
                context.eventLoop.assumeIsolated().scheduleTask(in: amount) {
                    guard context.channel.isActive else { return }
                    write()
                }
            }
        }
    }
}
