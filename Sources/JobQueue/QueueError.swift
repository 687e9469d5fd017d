/// An error from the queue, with a code that says whether trying again can help.
public struct QueueError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable {
        /// The job JSON breaks a rule. Not retryable: fix the job.
        case invalidJob = "invalid_job"
        /// The job JSON is larger than the queue accepts. Not retryable.
        case payloadTooLarge = "payload_too_large"
        /// The lease is no longer held (expired, canceled, or recovered): the caller must stop.
        case fenced
        /// No such job (never existed, or expired after the retention).
        case notFound = "not_found"
        /// A queue setting is wrong. Not retryable.
        case invalidConfiguration = "invalid_config"
        /// Redis could not be reached or failed. Retryable.
        case unavailable
        /// A reply did not have the expected shape. Not retryable.
        case protocolError = "protocol_error"
    }

    public var code: Code
    /// A message safe to log and show: never the prompt.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Whether the same call may succeed later.
    public var isRetryable: Bool { code == .unavailable }

    public var description: String { "\(code.rawValue): \(message)" }
}
