import AsyncHTTPClient
import Foundation
import ImageIngest
import NIOCore
import NIOHTTP1

/// A backend calling the OpenAI Images API, or any server speaking it.
///
/// ``ImageRequest/Kind/generate`` posts JSON to `{baseURL}/images/generations`;
/// ``ImageRequest/Kind/edit`` posts `multipart/form-data` to `{baseURL}/images/edits` with one
/// `image[]` part per input and the optional `mask`. Bodies come from ``OpenAIRequestBody``; error
/// answers and transport failures are classified by ``OpenAIErrorClassifier``. The answer's
/// `b64_json` images are decoded off the cooperative pool by ``OpenAIAnswerDecoder`` and their size
/// and format read from the image header. Answers are read under a memory budget
/// (``Configuration/answerMemoryBytes``) held until the job's outputs are stored.
///
/// Each backend owns one `HTTPClient` on the shared NIO event loop group: call ``shutdown()``
/// once it is no longer used. Canceling the calling task aborts the HTTP request at once (AsyncHTTPClient
/// cancels the request when its task is canceled) and throws ``BackendError/Code/canceled``.
public struct OpenAIImagesBackend: ImageModelBackend {
    /// How to reach the provider.
    public struct Configuration: Sendable, CustomStringConvertible {
        /// The API root, without the trailing slash. Default `https://api.openai.com/v1`.
        public var baseURL: String
        /// The secret key sent as `Authorization: Bearer`. Never logged, printed or put in an error.
        public var apiKey: String
        /// `OpenAI-Organization`, when set. Default nil.
        public var organization: String?
        /// `OpenAI-Project`, when set. Default nil.
        public var project: String?
        /// How long establishing a connection may take. Default 10 s.
        public var connectTimeout: Duration
        /// How long a whole call may take, answer body included. Default 300 s.
        public var requestTimeout: Duration
        /// `moderation` of generations: `auto` or `low`. Default nil (the provider's default).
        public var moderation: String?
        /// `background`: `auto`, `transparent` or `opaque`. Default nil (the provider's default).
        public var background: String?
        /// `output_compression` (0...100) for JPEG and WebP outputs. Default nil (the provider's default).
        public var outputCompression: Int?
        /// The largest answer body accepted, in bytes. Default 256 MiB.
        public var maxResponseBytes: Int
        /// Connections kept to the provider at once, so that as many calls as the worker has
        /// slots can be in flight (HTTP/1.1 runs one call per connection). Default 256.
        public var maxConnections: Int = 256
        /// The answer bytes held in memory at once, across every call: an answer is read only once
        /// its `Content-Length` fits, and its share is held until the job's outputs are stored
        /// (``ImageResponse/memory``). An answer waiting for its turn keeps at most what the
        /// connection read with its head (up to 256 KiB); the rest stays in the socket. An answer
        /// larger than the budget is read alone; one without a length counts as 4 MiB. Decoding and
        /// storing an answer takes a few milliseconds, so a small budget still moves hundreds of
        /// megabyte answers a second; each MiB of budget costs about 5 MiB of peak memory (copies
        /// on the way to Redis, and the allocator's slack). Waiting for the budget counts toward
        /// ``requestTimeout``. Default 4 MiB.
        public var answerMemoryBytes: Int = 4 << 20

        /// Creates a configuration; every argument but the key defaults to the documented default.
        public init(
            baseURL: String = "https://api.openai.com/v1", apiKey: String, organization: String? = nil,
            project: String? = nil, connectTimeout: Duration = .seconds(10), requestTimeout: Duration = .seconds(300),
            moderation: String? = nil, background: String? = nil, outputCompression: Int? = nil,
            maxResponseBytes: Int = 256 << 20
        ) {
            self.baseURL = baseURL
            self.apiKey = apiKey
            self.organization = organization
            self.project = project
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
            self.moderation = moderation
            self.background = background
            self.outputCompression = outputCompression
            self.maxResponseBytes = maxResponseBytes
        }

        /// The settings with the API key redacted.
        public var description: String {
            "OpenAIImagesBackend.Configuration(baseURL: \(baseURL), apiKey: <redacted>, "
                + "connectTimeout: \(connectTimeout), requestTimeout: \(requestTimeout))"
        }

        var bodyOptions: OpenAIRequestBody.Options {
            .init(moderation: moderation, background: background, outputCompression: outputCompression)
        }
    }

    /// The configuration in use.
    public let configuration: Configuration
    private let client: HTTPClient
    private let pool: BlockingThreadPool
    private let answerMemory: Budget

    /// `openai`.
    public var name: String { "openai" }

    /// Creates a backend with its own `HTTPClient` on the shared event loop group.
    public init(configuration: Configuration) {
        self.configuration = configuration
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.timeout = .init(connect: .nanoseconds(Self.nanoseconds(configuration.connectTimeout)))
        clientConfiguration.decompression = .disabled
        clientConfiguration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, configuration.maxConnections))
        // A refused connection fails the call at once (a retryable `unavailable`) instead of being
        // retried with backoff by the pool until the connect timeout: the queue owns retries.
        clientConfiguration.connectionPool.retryConnectionEstablishment = false
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        self.pool = BlockingThreadPool(threads: 1)
        self.answerMemory = Budget(capacity: configuration.answerMemoryBytes)
    }

    /// Closes the HTTP client's connections. Call once, after the last ``generate(_:)``.
    public func shutdown() async {
        try? await client.shutdown()
    }

    /// Calls the provider once for `request`.
    ///
    /// - Throws: ``BackendError``: the code from ``OpenAIErrorClassifier`` for an error answer or a
    ///   failed connection, ``BackendError/Code/timeout`` after ``Configuration/requestTimeout``,
    ///   ``BackendError/Code/canceled`` when the task is canceled, and
    ///   ``BackendError/Code/unavailable`` for an answer that is not the expected JSON.
    public func generate(_ request: ImageRequest) async throws -> ImageResponse {
        guard request.count >= 1 else { throw BackendError(.invalidRequest, "count must be at least 1") }
        if request.kind == .edit, request.inputs.isEmpty {
            throw BackendError(.invalidRequest, "an edit needs an input image")
        }
        let httpRequest = makeRequest(request)
        let answer = try await call(httpRequest)
        guard (200..<300).contains(answer.status) else {
            throw OpenAIErrorClassifier.classify(status: answer.status, body: answer.body, headers: answer.headers)
        }
        do {
            let body = answer.body
            var response = try await pool.run { try OpenAIAnswerDecoder.decode(body) }
            response.memory = answer.memory
            return response
        } catch is CancellationError {
            throw BackendError(.canceled, "the request was canceled")
        }
    }

    /// The HTTP request for `request`: URL, method, headers and body.
    func makeRequest(_ request: ImageRequest) -> HTTPClientRequest {
        let base =
            configuration.baseURL.hasSuffix("/") ? String(configuration.baseURL.dropLast()) : configuration.baseURL
        var httpRequest: HTTPClientRequest
        let body: [UInt8]
        switch request.kind {
        case .generate:
            httpRequest = HTTPClientRequest(url: base + "/images/generations")
            body = OpenAIRequestBody.generation(request, options: configuration.bodyOptions)
            httpRequest.headers.add(name: "Content-Type", value: "application/json")
        case .edit:
            httpRequest = HTTPClientRequest(url: base + "/images/edits")
            let boundary = OpenAIRequestBody.makeBoundary()
            body = OpenAIRequestBody.edit(request, options: configuration.bodyOptions, boundary: boundary)
            httpRequest.headers.add(name: "Content-Type", value: OpenAIRequestBody.contentType(boundary: boundary))
        }
        httpRequest.method = .POST
        httpRequest.headers.add(name: "Authorization", value: "Bearer \(configuration.apiKey)")
        httpRequest.headers.add(name: "Accept", value: "application/json")
        if let organization = configuration.organization {
            httpRequest.headers.add(name: "OpenAI-Organization", value: organization)
        }
        if let project = configuration.project { httpRequest.headers.add(name: "OpenAI-Project", value: project) }
        httpRequest.body = .bytes(ByteBuffer(bytes: body))
        return httpRequest
    }

    /// A whole answer, and its share of the answer memory.
    private struct Answer: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
        var memory: Budget.Reservation
    }

    /// Executes the request and reads the whole answer within ``Configuration/requestTimeout``,
    /// once its share of ``Configuration/answerMemoryBytes`` is free.
    private func call(_ request: HTTPClientRequest) async throws -> Answer {
        let timeout = configuration.requestTimeout
        let limit = configuration.maxResponseBytes
        let client = self.client
        let answerMemory = self.answerMemory
        do {
            // The request timeout covers the body too: AsyncHTTPClient's own deadline ends with the head.
            return try await withThrowingTaskGroup(of: Answer?.self) { group in
                group.addTask {
                    let response = try await client.execute(
                        request, timeout: .nanoseconds(Self.nanoseconds(timeout) + 1_000_000_000))
                    let length = response.headers.first(name: "content-length").flatMap { Int($0) }
                    if let length, length > limit { throw NIOTooManyBytesError(maxBytes: limit) }
                    // Until the share is free the body is not read: it waits in the socket.
                    let memory = try await answerMemory.reserve(length ?? Self.unknownLengthShare)
                    var body: [UInt8] = []
                    body.reserveCapacity(length ?? 0)
                    for try await chunk in response.body {
                        guard body.count + chunk.readableBytes <= limit else {
                            throw NIOTooManyBytesError(maxBytes: limit)
                        }
                        body.append(contentsOf: chunk.readableBytesView)
                    }
                    return Answer(
                        status: Int(response.status.code), headers: response.headers, body: body, memory: memory)
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let answer = first else {
                    throw HTTPClientError.deadlineExceeded
                }
                return answer
            }
        } catch {
            throw OpenAIErrorClassifier.classify(transportError: error, canceled: Task.isCancelled)
        }
    }

    /// The share of the answer memory taken by an answer without `Content-Length`.
    static let unknownLengthShare = 4 << 20

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
