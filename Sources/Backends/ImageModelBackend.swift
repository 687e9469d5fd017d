import ImageIngest

/// What the worker asks a model backend to do for one job.
public struct ImageRequest: Sendable {
    /// Whether the model draws from a prompt alone or edits the input images.
    public enum Kind: String, Sendable, Codable {
        case generate
        case edit
    }

    /// The job this request belongs to (for tracing; never sent to a provider as content).
    public var jobID: String
    public var kind: Kind
    /// The user's prompt. Never log it.
    public var prompt: String
    /// Free-form model name, passed through to the provider.
    public var model: String
    public var width: Int
    public var height: Int
    /// Number of images to produce.
    public var count: Int
    /// `auto`, `low`, `medium`, `high` (provider-specific strings pass through).
    public var quality: String
    /// `png` or `jpeg`.
    public var outputFormat: String
    /// Normalized input images (edits only).
    public var inputs: [IngestedImage]
    /// Normalized mask (edits only, optional).
    public var mask: IngestedImage?
    /// A stable hash of the user id, for provider abuse tracking. Never the raw id.
    public var userHash: String

    public init(
        jobID: String, kind: Kind, prompt: String, model: String, width: Int, height: Int,
        count: Int, quality: String = "auto", outputFormat: String = "png",
        inputs: [IngestedImage] = [], mask: IngestedImage? = nil, userHash: String
    ) {
        self.jobID = jobID
        self.kind = kind
        self.prompt = prompt
        self.model = model
        self.width = width
        self.height = height
        self.count = count
        self.quality = quality
        self.outputFormat = outputFormat
        self.inputs = inputs
        self.mask = mask
        self.userHash = userHash
    }
}

/// One image produced by a backend, already encoded.
public struct GeneratedImage: Sendable {
    public var bytes: [UInt8]
    /// `png` or `jpeg`.
    public var format: String
    public var width: Int
    public var height: Int

    public init(bytes: [UInt8], format: String, width: Int, height: Int) {
        self.bytes = bytes
        self.format = format
        self.width = width
        self.height = height
    }
}

/// What a backend returns for one request.
public struct ImageResponse: Sendable {
    public var images: [GeneratedImage]
    /// Tokens the provider billed, when it says.
    public var inputTokens: Int?
    public var outputTokens: Int?
    /// The backend's memory the images stand for, held until they are stored: release it then
    /// (dropping the response releases it too). Nil when the backend keeps no such budget.
    public var memory: Budget.Reservation?

    public init(
        images: [GeneratedImage], inputTokens: Int? = nil, outputTokens: Int? = nil, memory: Budget.Reservation? = nil
    ) {
        self.images = images
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.memory = memory
    }
}

/// A model that turns an ``ImageRequest`` into images.
///
/// Implementations must honour task cancellation promptly (the worker cancels the task when the
/// job is canceled or the worker shuts down) and throw ``BackendError`` for every failure so the
/// worker can tell a retryable error from a terminal one.
public protocol ImageModelBackend: Sendable {
    /// A short name for logs and metrics (`simulated`, `openai`).
    var name: String { get }
    func generate(_ request: ImageRequest) async throws -> ImageResponse
}

/// A backend failure, classified so the worker knows whether a retry can help.
public struct BackendError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable {
        /// The call took too long. Retryable.
        case timeout
        /// The provider failed (5xx) or the connection broke. Retryable.
        case unavailable
        /// The provider asked us to slow down. Retryable without spending an attempt.
        case rateLimited = "rate_limited"
        /// The account is out of quota or credit. Stop claiming; nothing fails.
        case quotaExhausted = "quota_exhausted"
        /// The request itself is wrong. Terminal.
        case invalidRequest = "invalid_request"
        /// The provider's moderation refused the prompt or image. Terminal.
        case moderationBlocked = "moderation_blocked"
        /// The credentials are wrong. Terminal.
        case unauthorized
        /// The call was canceled by us.
        case canceled
    }

    public var code: Code
    /// A message safe to show the user and to log: never the prompt.
    public var message: String
    /// Seconds the provider asked us to wait, when it said.
    public var retryAfter: Double?
    /// The provider's HTTP status, when it answered (a 503 pauses every worker; a 500 does not).
    public var status: Int?
    /// The moderation categories the provider named for a ``Code/moderationBlocked`` refusal.
    public var categories: [String]

    public init(
        _ code: Code, _ message: String, retryAfter: Double? = nil, status: Int? = nil, categories: [String] = []
    ) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
        self.status = status
        self.categories = categories
    }

    /// Whether running the same request again later can succeed.
    public var isRetryable: Bool {
        switch code {
        case .timeout, .unavailable, .rateLimited, .quotaExhausted: return true
        case .invalidRequest, .moderationBlocked, .unauthorized, .canceled: return false
        }
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
