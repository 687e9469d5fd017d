import ArgumentParser
import Backends
import Logging
import ServiceLifecycle

/// `imagegen fake-backend`: an OpenAI-compatible Images server on 127.0.0.1 for load runs and demos.
struct FakeBackendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fake-backend",
        abstract: "Serve a fake OpenAI Images API on 127.0.0.1 until SIGTERM or SIGINT.",
        discussion: """
            Answers POST /v1/images/generations and /v1/images/edits with real PNGs, and GET /stats \
            with its counts. Point a worker at it with --backend openai --openai-base-url \
            http://127.0.0.1:PORT/v1 and any API key.
            """)

    @Option(help: "Port on 127.0.0.1; 0 picks a free one. Default 8089.")
    var port: Int = 8089
    @Option(help: "Least latency in milliseconds. Default 20.")
    var latencyMs: Int = 20
    @Option(help: "Extra latency drawn from 0 to this many milliseconds. Default 0.")
    var jitterMs: Int = 0
    @Option(help: "Fraction of calls answered 500. Default 0.")
    var error500Rate: Double = 0
    @Option(help: "Fraction of calls answered 503. Default 0.")
    var error503Rate: Double = 0
    @Option(help: "Fraction of calls answered 429 rate_limit_exceeded with Retry-After. Default 0.")
    var rateLimitRate: Double = 0
    @Option(help: "Fraction of calls answered 429 insufficient_quota. Default 0.")
    var quotaRate: Double = 0
    @Option(help: "Fraction of calls answered 400 moderation_blocked. Default 0.")
    var moderationRate: Double = 0
    @Option(help: "Fraction of calls never answered. Default 0.")
    var timeoutRate: Double = 0
    @Option(help: "Comma-separated words whose prompts are refused by moderation. Default none.")
    var blockedWords: String = ""
    @Option(help: "Hard limit: requests per sliding minute, 0 for none. Default 0.")
    var requestsPerMinute: Int = 0
    @Option(help: "Hard limit: images per sliding minute, 0 for none. Default 0.")
    var imagesPerMinute: Int = 0
    @Option(help: "Largest output side drawn. Default 256.")
    var maxSide: Int = 256
    @Flag(help: "Draw noise: PNGs that do not compress (600x600 is about 1 MB), to measure large outputs.")
    var noise = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port: 0 to 65535") }
        let rates = [error500Rate, error503Rate, rateLimitRate, quotaRate, moderationRate, timeoutRate]
        guard rates.allSatisfy({ (0...1).contains($0) }), rates.reduce(0, +) <= 1 else {
            throw ValidationError("rates: fractions from 0 to 1, adding up to at most 1")
        }
        guard latencyMs >= 0, jitterMs >= 0, requestsPerMinute >= 0, imagesPerMinute >= 0, maxSide > 0 else {
            throw ValidationError("latencies and limits must not be negative; --max-side must be positive")
        }
    }

    func run() async throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let logger = Logger(label: "imagegen.fake-backend")
        var configuration = FakeImagesServer.Configuration()
        configuration.latency = .milliseconds(Int64(latencyMs))
        configuration.latencyJitter = .milliseconds(Int64(jitterMs))
        configuration.serverErrorRate = error500Rate
        configuration.unavailableRate = error503Rate
        configuration.rateLimitRate = rateLimitRate
        configuration.quotaRate = quotaRate
        configuration.moderationRate = moderationRate
        configuration.timeoutRate = timeoutRate
        configuration.blockedWords = blockedWords.split(separator: ",").map(String.init)
        configuration.requestsPerMinute = requestsPerMinute
        configuration.imagesPerMinute = imagesPerMinute
        configuration.maxOutputSide = maxSide
        configuration.noise = noise
        configuration.seed = UInt64.random(in: 0...UInt64.max)
        let service = FakeBackendService(
            server: FakeImagesServer(configuration: configuration), port: port, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint],
                cancellationSignals: [], logger: logger))
        try await group.run()
    }
}

/// Runs the fake server until graceful shutdown.
struct FakeBackendService: Service {
    let server: FakeImagesServer
    let port: Int
    let logger: Logger

    func run() async throws {
        let bound = try await server.start(host: "127.0.0.1", port: port)
        logger.notice("fake images server listening", metadata: ["address": "http://127.0.0.1:\(bound)/v1"])
        try? await gracefulShutdown()
        await server.stop()
        logger.notice("fake images server stopped", metadata: ["stats": "\(server.stats)"])
    }
}
