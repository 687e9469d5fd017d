import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A webhook endpoint on 127.0.0.1 for tests: records every request (path, headers, body) and
/// answers from a script, one answer per request, then 200 once the script is used up.
final class WebhookReceiver: Sendable {
    /// One scripted answer.
    enum Answer: Sendable {
        case status(Int, headers: [(String, String)] = [])
        /// Never answers (the client times out).
        case hang
    }

    /// One request as received.
    struct Request: Sendable {
        var path: String
        var headers: [String: String]
        var body: [UInt8]
    }

    private let script: Mutex<[Answer]>
    private let received = Mutex<[Request]>([])
    private let channel = Mutex<(any Channel)?>(nil)

    init(script: [Answer] = []) {
        self.script = Mutex(script)
    }

    var requests: [Request] { received.withLock { $0 } }

    /// Appends answers to the script.
    func then(_ answers: [Answer]) { script.withLock { $0 += answers } }

    /// Starts listening; returns the URL root (`http://127.0.0.1:PORT`).
    func start() async throws -> String {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(ReceiverHandler(receiver: self))
                }
            }
        let server = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        channel.withLock { $0 = server }
        return "http://127.0.0.1:\(server.localAddress?.port ?? 0)"
    }

    func stop() async {
        let server = channel.withLock { $0 }
        try? await server?.close()
    }

    fileprivate func handle(_ head: HTTPRequestHead, body: [UInt8]) -> Answer {
        var headers: [String: String] = [:]
        for header in head.headers { headers[header.name.lowercased()] = header.value }
        received.withLock { $0.append(Request(path: head.uri, headers: headers, body: body)) }
        return script.withLock { $0.isEmpty ? .status(200) : $0.removeFirst() }
    }
}

private final class ReceiverHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let receiver: WebhookReceiver
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(receiver: WebhookReceiver) { self.receiver = receiver }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
        case .body(var buffer):
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head else { return }
            self.head = nil
            guard case .status(let code, let headers) = receiver.handle(head, body: body) else { return }
            var responseHead = HTTPResponseHead(version: head.version, status: HTTPResponseStatus(statusCode: code))
            for (name, value) in headers { responseHead.headers.add(name: name, value: value) }
            responseHead.headers.add(name: "Content-Length", value: "2")
            context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "ok")))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
