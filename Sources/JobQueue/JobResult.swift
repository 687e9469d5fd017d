/// One stored output image of a finished job.
public struct OutputReference: Codable, Sendable, Equatable {
    /// The blob key (`output:<job id>:<index>`) to fetch it from the blob store.
    public var key: String
    /// `png` or `jpeg`.
    public var format: String
    public var width: Int
    public var height: Int
    public var bytes: Int

    public init(key: String, format: String, width: Int, height: Int, bytes: Int) {
        self.key = key
        self.format = format
        self.width = width
        self.height = height
        self.bytes = bytes
    }
}

/// What a job produced, as stored in its record and its `succeeded` event.
public struct JobResult: Codable, Sendable, Equatable {
    /// Usage, for billing credits.
    public struct Usage: Codable, Sendable, Equatable {
        public var images: Int
        public var size: String
        public var model: String
        public var inputTokens: Int?
        public var outputTokens: Int?

        enum CodingKeys: String, CodingKey {
            case images, size, model
            case inputTokens = "input_tokens"
            case outputTokens = "output_tokens"
        }

        public init(images: Int, size: String, model: String, inputTokens: Int? = nil, outputTokens: Int? = nil) {
            self.images = images
            self.size = size
            self.model = model
            self.inputTokens = inputTokens
            self.outputTokens = outputTokens
        }
    }

    /// Time spent in each stage, in milliseconds.
    public struct Durations: Codable, Sendable, Equatable {
        public var ingestMS: Int
        public var backendMS: Int
        public var storeMS: Int

        enum CodingKeys: String, CodingKey {
            case ingestMS = "ingest_ms"
            case backendMS = "backend_ms"
            case storeMS = "store_ms"
        }

        public init(ingestMS: Int, backendMS: Int, storeMS: Int) {
            self.ingestMS = ingestMS
            self.backendMS = backendMS
            self.storeMS = storeMS
        }
    }

    public var outputs: [OutputReference]
    public var usage: Usage
    public var durations: Durations

    public init(outputs: [OutputReference], usage: Usage, durations: Durations) {
        self.outputs = outputs
        self.usage = usage
        self.durations = durations
    }
}

/// Why a job attempt failed, as the worker reports it.
public struct JobFailure: Sendable, Equatable {
    /// What to do with the job.
    public enum Disposition: Sendable, Equatable {
        /// Never retry: the job fails.
        case terminal
        /// Retry after `delay`, spending one attempt.
        case retry(after: Duration)
        /// Put back after `delay` without spending an attempt (the provider asked us to slow down).
        case requeue(after: Duration)
    }

    /// A stable machine-readable code (`invalid_input`, `moderation_blocked`, `timeout`, …).
    public var code: String
    /// A message for the user. Never the prompt.
    public var message: String
    public var disposition: Disposition
    /// What the failure says about the backend as a whole, for every worker to obey (a shared
    /// pause, the quota breaker). Nil for failures of this job alone.
    public var signal: BackendSignal?
    /// The provider's moderation categories of a refused job (`violence`, …); empty otherwise.
    public var categories: [String]

    public init(
        code: String, message: String, disposition: Disposition, signal: BackendSignal? = nil,
        categories: [String] = []
    ) {
        self.code = code
        self.message = message
        self.disposition = disposition
        self.signal = signal
        self.categories = categories
    }
}

/// What a backend answer says about the provider's capacity, shared by every worker through the
/// queue: the claims of all workers obey it.
public struct BackendSignal: Sendable, Equatable {
    /// The kind of answer.
    public enum Kind: String, Sendable, CaseIterable {
        /// 429 `rate_limit_exceeded` or `slow_down`: every worker pauses until `Retry-After`, and
        /// the budgets shrink (the adaptive factor).
        case rateLimited = "rate_limit"
        /// 503: every worker pauses until `Retry-After`.
        case unavailable
        /// 429 `insufficient_quota` or a billing code: the quota breaker opens; claiming stops for
        /// the breaker time, then one probe job goes out.
        case quotaExhausted = "quota"
    }

    public var kind: Kind
    /// How long the provider asked to wait, when it said.
    public var retryAfter: Duration?

    public init(_ kind: Kind, retryAfter: Duration? = nil) {
        self.kind = kind
        self.retryAfter = retryAfter
    }
}
