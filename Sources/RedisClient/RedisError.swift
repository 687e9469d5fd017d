/// An error talking to Redis, with a code that says whether trying again can help.
public struct RedisError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable {
        /// Could not connect, or the connection broke. Retryable: the connection reconnects.
        case connectionFailed = "connection_failed"
        /// The server did not answer in time. Retryable; the connection is reset.
        case timeout
        /// The server answered with an error reply. Not retryable as is.
        case server
        /// The reply could not be understood. Not retryable.
        case protocolError = "protocol_error"
        /// The connection was closed by this process.
        case closed
        /// The URL or configuration is wrong. Not retryable.
        case configuration
        /// The caller's task was canceled while waiting.
        case canceled
    }

    public var code: Code
    /// A human-readable message. Never contains passwords or command arguments.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Whether the same command may succeed if sent again later.
    public var isRetryable: Bool {
        switch code {
        case .connectionFailed, .timeout: return true
        case .server, .protocolError, .closed, .configuration, .canceled: return false
        }
    }

    /// For server errors, the first word of the reply (`NOSCRIPT`, `WRONGTYPE`, `ERR`, …).
    public var serverErrorPrefix: Substring? {
        guard code == .server else { return nil }
        return message.split(separator: " ", maxSplits: 1).first
    }

    public var description: String { "redis \(code.rawValue): \(message)" }
}
