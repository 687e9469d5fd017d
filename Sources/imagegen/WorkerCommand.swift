import ArgumentParser
import Backends
import Foundation
import ImageIngest
import JobQueue
import Logging
import RedisQueue
import ServiceLifecycle
import Storage
import Worker

/// Queue-wide settings a worker may write at start. Only the flags given (or their environment
/// variables, `IMAGEGEN_` and the flag's name in capitals) are written, so workers started with
/// defaults never undo an operator's settings.
struct QueueSettingsOptions: ParsableArguments {
    @Option(help: "Retention of user content in days (queue-wide). Env: IMAGEGEN_RETENTION_DAYS. Default 14.")
    var retentionDays: Double?
    @Option(
        help: "Jobs one user may run at once, 0 for no cap (queue-wide). Env: IMAGEGEN_USER_IN_FLIGHT_CAP. Default 4.")
    var userInFlightCap: Int?
    @Option(
        name: [.customLong("max-in-flight"), .customLong("global-in-flight-cap")],
        help:
            "Backend calls in flight across all workers, 0 for no cap (queue-wide). Env: IMAGEGEN_MAX_IN_FLIGHT. Default 0."
    )
    var globalInFlightCap: Int?
    @Option(help: "Attempts before a job is dead (queue-wide). Env: IMAGEGEN_MAX_ATTEMPTS. Default 5.")
    var maxAttempts: Int?
    @Option(
        help:
            "Worker deaths a job survives before it is dead as poisoned (queue-wide). Env: IMAGEGEN_MAX_RECOVERIES. Default 3."
    )
    var maxRecoveries: Int?
    @Option(help: "Lease length in seconds (queue-wide). Env: IMAGEGEN_LEASE_SECONDS. Default 30.")
    var leaseSeconds: Double?
    @Option(
        help:
            "Seconds without a heartbeat before a worker counts as dead (queue-wide). Env: IMAGEGEN_WORKER_TIMEOUT_SECONDS. Default 15."
    )
    var workerTimeoutSeconds: Double?
    @Option(help: "Tier weights as pro=6,standard=3,free=1 (queue-wide). Env: IMAGEGEN_TIER_WEIGHTS.")
    var tierWeights: String?
    @Option(
        help:
            "Backend calls per minute across all workers, 0 for no budget (queue-wide). Env: IMAGEGEN_REQUESTS_PER_MINUTE. Default 0."
    )
    var requestsPerMinute: Int?
    @Option(
        help:
            "Images per minute across all workers, 0 for no budget (queue-wide). Env: IMAGEGEN_IMAGES_PER_MINUTE. Default 0."
    )
    var imagesPerMinute: Int?
    @Option(
        help:
            "Calls that may start back to back under the per-minute budgets (queue-wide). Env: IMAGEGEN_BURST. Default 4."
    )
    var burst: Int?
    @Option(
        help:
            "The budgets count over a minute this many milliseconds longer, so calls reaching the provider a little early or late never crowd one of its minutes (queue-wide). Env: IMAGEGEN_WINDOW_MARGIN_MS. Default 500."
    )
    var windowMarginMs: Int?
    @Option(
        help:
            "Tokens per minute across all workers, 0 for no budget; corrected from the provider's usage after each call (queue-wide). Env: IMAGEGEN_TOKENS_PER_MINUTE. Default 0."
    )
    var tokensPerMinute: Int?
    @Option(
        help:
            "Tokens one image is charged before its usage is known (queue-wide). Env: IMAGEGEN_TOKENS_PER_IMAGE. Default 1100."
    )
    var tokensPerImage: Int?
    @Option(
        help:
            "Backend calls one user may start per minute, 0 for no budget (queue-wide). Env: IMAGEGEN_USER_REQUESTS_PER_MINUTE. Default 0."
    )
    var userRequestsPerMinute: Int?
    @Option(
        help:
            "Calls one user may start back to back under that budget (queue-wide). Env: IMAGEGEN_USER_BURST. Default 2."
    )
    var userBurst: Int?
    @Option(
        help:
            "Pause of every worker after a rate-limit 429 or a 503 without Retry-After, in seconds (queue-wide). Env: IMAGEGEN_PAUSE_SECONDS. Default 2."
    )
    var pauseSeconds: Double?
    @Option(
        help:
            "Longest pause, whatever Retry-After says, in seconds (queue-wide). Env: IMAGEGEN_MAX_PAUSE_SECONDS. Default 120."
    )
    var maxPauseSeconds: Double?
    @Option(
        help:
            "Seconds claiming stops after a quota 429 before one probe job goes out (queue-wide). Env: IMAGEGEN_QUOTA_BREAKER_SECONDS. Default 300."
    )
    var quotaBreakerSeconds: Double?
    @Option(
        help:
            "Each rate-limit 429 multiplies the budgets by this (queue-wide). Env: IMAGEGEN_ADAPTIVE_SHRINK. Default 0.8."
    )
    var adaptiveShrink: Double?
    @Option(
        help: "The budgets never shrink below this fraction (queue-wide). Env: IMAGEGEN_ADAPTIVE_FLOOR. Default 0.25.")
    var adaptiveFloor: Double?
    @Option(
        help:
            "Fraction of the budgets recovered per minute without a rate-limit 429 (queue-wide). Env: IMAGEGEN_ADAPTIVE_RECOVERY. Default 0.05."
    )
    var adaptiveRecovery: Double?

    /// The flag's value, else its environment variable's (an unreadable value is an error).
    private func pick<T: LosslessStringConvertible>(_ flag: T?, _ name: String) throws -> T? {
        if let flag { return flag }
        guard let text = ProcessInfo.processInfo.environment[name], !text.isEmpty else { return nil }
        guard let value = T(text) else { throw ValidationError("\(name): cannot read '\(text)'") }
        return value
    }

    /// The settings to write, or nil when no flag or variable was given.
    func settings(reading current: [String: String]) throws -> QueueSettings? {
        var settings = QueueSettings(current: current)
        var given = false
        func set<T: LosslessStringConvertible>(_ flag: T?, _ name: String, _ apply: (T) throws -> Void) throws {
            guard let value = try pick(flag, name) else { return }
            try apply(value)
            given = true
        }
        func seconds(_ value: Double, _ name: String) throws -> Duration {
            guard value >= 0, value.isFinite else { throw ValidationError("\(name) must not be negative") }
            return .milliseconds(Int64(value * 1000))
        }
        func count(_ value: Int, _ name: String) throws -> Int {
            guard value >= 0 else { throw ValidationError("\(name) must not be negative") }
            return value
        }
        func fraction(_ value: Double, _ name: String) throws -> Double {
            guard value >= 0, value <= 1 else { throw ValidationError("\(name): a fraction from 0 to 1") }
            return value
        }
        try set(retentionDays, "IMAGEGEN_RETENTION_DAYS") {
            guard $0 > 0 else { throw ValidationError("--retention-days must be positive") }
            settings.retention = .milliseconds(Int64($0 * 86_400_000))
        }
        try set(userInFlightCap, "IMAGEGEN_USER_IN_FLIGHT_CAP") {
            settings.userInFlightCap = try count($0, "--user-in-flight-cap")
        }
        try set(globalInFlightCap, "IMAGEGEN_MAX_IN_FLIGHT") {
            settings.globalInFlightCap = try count($0, "--max-in-flight")
        }
        try set(maxAttempts, "IMAGEGEN_MAX_ATTEMPTS") { settings.maxAttempts = max(1, $0) }
        try set(maxRecoveries, "IMAGEGEN_MAX_RECOVERIES") { settings.maxRecoveries = try count($0, "--max-recoveries") }
        try set(leaseSeconds, "IMAGEGEN_LEASE_SECONDS") { settings.lease = try seconds($0, "--lease-seconds") }
        try set(workerTimeoutSeconds, "IMAGEGEN_WORKER_TIMEOUT_SECONDS") {
            settings.workerTimeout = try seconds($0, "--worker-timeout-seconds")
        }
        try set(requestsPerMinute, "IMAGEGEN_REQUESTS_PER_MINUTE") {
            settings.requestsPerMinute = try count($0, "--requests-per-minute")
        }
        try set(imagesPerMinute, "IMAGEGEN_IMAGES_PER_MINUTE") {
            settings.imagesPerMinute = try count($0, "--images-per-minute")
        }
        try set(burst, "IMAGEGEN_BURST") { settings.burst = max(1, $0) }
        try set(tokensPerMinute, "IMAGEGEN_TOKENS_PER_MINUTE") {
            settings.tokensPerMinute = try count($0, "--tokens-per-minute")
        }
        try set(tokensPerImage, "IMAGEGEN_TOKENS_PER_IMAGE") { settings.tokensPerImage = max(1, $0) }
        try set(windowMarginMs, "IMAGEGEN_WINDOW_MARGIN_MS") {
            settings.windowMargin = .milliseconds(Int64(try count($0, "--window-margin-ms")))
        }
        try set(userRequestsPerMinute, "IMAGEGEN_USER_REQUESTS_PER_MINUTE") {
            settings.userRequestsPerMinute = try count($0, "--user-requests-per-minute")
        }
        try set(userBurst, "IMAGEGEN_USER_BURST") { settings.userBurst = max(1, $0) }
        try set(pauseSeconds, "IMAGEGEN_PAUSE_SECONDS") { settings.pauseDefault = try seconds($0, "--pause-seconds") }
        try set(maxPauseSeconds, "IMAGEGEN_MAX_PAUSE_SECONDS") {
            settings.pauseMax = try seconds($0, "--max-pause-seconds")
        }
        try set(quotaBreakerSeconds, "IMAGEGEN_QUOTA_BREAKER_SECONDS") {
            settings.quotaBreaker = try seconds($0, "--quota-breaker-seconds")
        }
        try set(adaptiveShrink, "IMAGEGEN_ADAPTIVE_SHRINK") {
            settings.adaptiveShrink = try fraction($0, "--adaptive-shrink")
        }
        try set(adaptiveFloor, "IMAGEGEN_ADAPTIVE_FLOOR") {
            settings.adaptiveFloor = try fraction($0, "--adaptive-floor")
        }
        try set(adaptiveRecovery, "IMAGEGEN_ADAPTIVE_RECOVERY") {
            settings.adaptiveRecovery = try fraction($0, "--adaptive-recovery")
        }
        try set(tierWeights, "IMAGEGEN_TIER_WEIGHTS") { tierWeights in
            for pair in tierWeights.split(separator: ",") {
                let parts = pair.split(separator: "=")
                guard parts.count == 2, let tier = JobSpec.Tier(rawValue: String(parts[0])), let weight = Int(parts[1]),
                    weight > 0
                else { throw ValidationError("--tier-weights: expected pro=6,standard=3,free=1") }
                settings.weights[tier] = weight
            }
        }
        return given ? settings : nil
    }
}

struct WorkerOptions: ParsableArguments {
    @Option(help: "Jobs this process runs at once. Default 16.")
    var slots: Int = 16
    @Option(
        help: """
            Milliseconds a completion may wait to share a Redis call with others, when they come \
            often: at most this long after the previous call, and not once a quarter of the slots are \
            completing. 0 sends each at once. Default 2.
            """)
    var completionLingerMs: Int = 2
    @Option(
        help: """
            Where the worker's tasks run: loop (one thread, with the timers: a job's steps hand \
            nothing to another thread) or pool (Swift's global pool). Default loop.
            """)
    var executor: JobExecutor = .taskLoop
    @Option(help: "Seconds between lease renewals. Default 2.")
    var heartbeatSeconds: Double = 2
    @Option(help: "Seconds running jobs may take to finish on shutdown before they are handed back. Default 20.")
    var drainGraceSeconds: Double = 20
    @Option(
        help:
            "Backend: simulated (built in) or openai (the OpenAI Images API or a server speaking it). Default simulated."
    )
    var backend: String = "simulated"
    @Option(help: "OpenAI backend: API root. Default https://api.openai.com/v1.")
    var openaiBaseUrl: String = "https://api.openai.com/v1"
    @Option(help: "OpenAI backend: file holding the API key. Env: OPENAI_API_KEY.")
    var openaiApiKeyFile: String?
    @Option(help: "OpenAI backend: seconds a whole call may take. Default 300.")
    var openaiTimeoutSeconds: Double = 300
    @Option(
        help:
            "OpenAI backend: MiB of answers held at once, from reading one until its outputs are stored. Default 4."
    )
    var openaiAnswerMemoryMb: Int = 4
    @Option(help: "Model used when a job names none. Default simulated-1, or gpt-image-1 with --backend openai.")
    var model: String?
    @Option(help: "Simulated backend: mean latency in milliseconds. Default 300.")
    var simLatencyMs: Int = 300
    @Option(help: "Simulated backend: fraction of calls failing with a retryable error. Default 0.")
    var simFailureRate: Double = 0
    @Option(
        help: "Simulated backend: fraction of calls answered with a rate limit (requeued, no attempt spent). Default 0."
    )
    var simRateLimitRate: Double = 0
    @Option(help: "Simulated backend: fraction of calls refused by moderation (terminal). Default 0.")
    var simModerationRate: Double = 0
    @Option(help: "Where outputs go: redis (with TTL) or file. Default redis.")
    var store: String = "redis"
    @Option(help: "Directory of the file store. Default ./imagegen-blobs.")
    var storeDir: String = "imagegen-blobs"
    @Flag(help: "Do not publish progress events (fewer Redis calls per job).")
    var noProgress = false
    @Option(help: "Largest upload in bytes. Default 50000000.")
    var maxUploadBytes: Int = IngestLimits().maxBytes
    @Option(help: "Most pixels of an upload (width × height). Default 40000000.")
    var maxUploadPixels: Int = IngestLimits().maxPixels
    @Option(help: "Uploads are fitted so their longer side is at most this before reaching the backend. Default 1536.")
    var maxSide: Int = 1536
    @Option(help: "Threads decoding uploads: also the most images decoded at once. Default 2.")
    var ingestThreads: Int = 2
    @Option(
        help: "Most upload pixels decoded at once across all jobs; a larger image is decoded alone. Default 80000000.")
    var ingestPixelBudget: Int = ImageIngestor.defaultPixelBudget
    @OptionGroup var png: PNGOutputOptions

    func validate() throws {
        guard slots >= 1 else { throw ValidationError("--slots must be at least 1") }
        guard (0...1000).contains(completionLingerMs) else {
            throw ValidationError("--completion-linger-ms: from 0 to 1000")
        }
        guard maxUploadBytes > 0, maxUploadPixels > 0, maxSide > 0, ingestThreads > 0, ingestPixelBudget > 0 else {
            throw ValidationError(
                "--max-upload-bytes, --max-upload-pixels, --max-side, --ingest-threads and --ingest-pixel-budget must be positive"
            )
        }
        guard (1...65_536).contains(openaiAnswerMemoryMb) else {
            throw ValidationError("--openai-answer-memory-mb: from 1 to 65536")
        }
        guard backend == "simulated" || backend == "openai" else {
            throw ValidationError("--backend: simulated or openai")
        }
        if backend == "openai" {
            guard try openAIKey() != nil else {
                throw ValidationError("--backend openai needs a key: OPENAI_API_KEY or --openai-api-key-file")
            }
            guard openaiTimeoutSeconds > 0 else { throw ValidationError("--openai-timeout-seconds must be positive") }
        }
        guard store == "redis" || store == "file" else { throw ValidationError("--store: redis or file") }
        guard (0...1).contains(simFailureRate), (0...1).contains(simRateLimitRate), (0...1).contains(simModerationRate),
            simFailureRate + simRateLimitRate + simModerationRate <= 1
        else { throw ValidationError("--sim-*-rate: fractions from 0 to 1, adding up to at most 1") }
    }

    /// How completions share Redis calls (see `--completion-linger-ms`).
    var completionLinger: GroupCommitLinger {
        guard completionLingerMs > 0 else { return .none }
        var linger = GroupCommitLinger.worker(slots: slots)
        linger.interval = .milliseconds(completionLingerMs)
        return linger
    }

    func workerConfiguration() -> WorkerConfiguration {
        var configuration = WorkerConfiguration()
        configuration.slots = slots
        configuration.jobExecutor = executor
        configuration.claimBatch = min(slots, 32)
        configuration.heartbeatInterval = .milliseconds(Int64(heartbeatSeconds * 1000))
        configuration.drainGracePeriod = .milliseconds(Int64(drainGraceSeconds * 1000))
        configuration.reportProgress = !noProgress
        configuration.userHashSalt = ProcessInfo.processInfo.environment["IMAGEGEN_USER_HASH_SALT"] ?? ""
        if let model {
            configuration.defaultModel = model
        } else if backend == "openai" {
            configuration.defaultModel = "gpt-image-1"
        }
        return configuration
    }

    func makeIngestor() -> ImageIngestor {
        var limits = IngestLimits()
        limits.maxBytes = maxUploadBytes
        limits.maxPixels = maxUploadPixels
        return ImageIngestor(
            limits: limits, normalization: NormalizationOptions(fit: .maxSide(maxSide), png: png.encoding),
            threads: ingestThreads, pixelBudget: ingestPixelBudget)
    }

    /// The OpenAI key from the key file, else from `OPENAI_API_KEY`; nil when neither has one.
    func openAIKey() throws -> String? {
        if let file = openaiApiKeyFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read the OpenAI API key file \(file)")
            }
            let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
            return key.isEmpty ? nil : key
        }
        let key = ProcessInfo.processInfo.environment["OPENAI_API_KEY"] ?? ""
        return key.isEmpty ? nil : key
    }

    /// The backend, and what to call once the worker has stopped.
    func makeBackend() throws -> (any ImageModelBackend, @Sendable () async -> Void) {
        if backend == "openai", let key = try openAIKey() {
            var configuration = OpenAIImagesBackend.Configuration(
                baseURL: openaiBaseUrl, apiKey: key, requestTimeout: .milliseconds(Int64(openaiTimeoutSeconds * 1000)))
            configuration.maxConnections = max(slots, 8)  // one connection per call in flight
            configuration.answerMemoryBytes = openaiAnswerMemoryMb << 20
            let backend = OpenAIImagesBackend(configuration: configuration)
            return (backend, { await backend.shutdown() })
        }
        var configuration = SimulatedBackend.Configuration(
            latency: .milliseconds(Int64(simLatencyMs)), failureRate: simFailureRate,
            seed: UInt64.random(in: 0...UInt64.max))
        configuration.rateLimitRate = simRateLimitRate
        configuration.moderationRate = simModerationRate
        return (SimulatedBackend(configuration: configuration), {})
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a worker: claim jobs, generate images, store outputs, until SIGTERM or SIGINT.",
        discussion: """
            On SIGTERM or SIGINT the worker stops claiming, lets running jobs finish for the grace \
            period, then hands the rest back to the queue at once. A second signal stops it at once. \
            With a webhook signing secret it also sends the queue's webhooks (see docs/webhooks.md).
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var worker: WorkerOptions
    @OptionGroup var queueSettings: QueueSettingsOptions
    @OptionGroup var webhooks: WebhookOptions

    func run() async throws {
        let logger = connection.bootstrapLogging()
        let (pool, queue, redisBlobs) = try connection.connect(
            logger: logger, poolSize: 1, completionLinger: worker.completionLinger)
        defer {
            queue.close()
            pool.close()
        }
        try await queue.loadFunctions()
        let current = try await queue.configure(QueueSettings.none)
        var configuration = worker.workerConfiguration()
        if let settings = try queueSettings.settings(reading: current) {
            let applied = try await queue.configure(settings)
            logger.info("queue settings written", metadata: ["settings": "\(applied.sorted { $0.key < $1.key })"])
            configuration.outputTTL = settings.retention
        } else {
            configuration.outputTTL = QueueSettings(current: current).retention
        }
        let blobs: any BlobStore =
            worker.store == "file" ? try FileBlobStore(directory: URL(fileURLWithPath: worker.storeDir)) : redisBlobs
        // The Redis store reads the queue's blob keys on the same server: the completion can write them.
        configuration.outputsWithCompletion = worker.store == "redis"
        let (backend, shutdownBackend) = try worker.makeBackend()
        let service = WorkerService(
            configuration: configuration, queue: queue, backend: backend, ingestor: worker.makeIngestor(),
            blobs: blobs, logger: logger)
        // Graceful shutdown runs in reverse order: the worker drains first (its last jobs record
        // their webhooks), then the dispatcher stops.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: service)]
        if let dispatcher = try await webhooks.makeDispatcher(queue: queue, logger: logger) {
            services.insert(.init(service: dispatcher), at: 0)
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                cancellationSignals: [], logger: logger))
        do {
            try await group.run()
        } catch {
            await shutdownBackend()
            throw error
        }
        await shutdownBackend()
    }
}

extension JobExecutor: ExpressibleByArgument {}
