/// An error of the webhook machinery, with a code that says whether trying again can help.
public struct WebhookError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable {
        /// A signing secret is malformed. Not retryable: fix the configuration.
        case invalidSecret = "invalid_secret"
        /// The URL is not an absolute http or https URL. Not retryable.
        case invalidURL = "invalid_url"
        /// The target resolves to an address webhooks may not reach (loopback, private, link-local …). Not retryable.
        case forbiddenTarget = "forbidden_target"
        /// The host name did not resolve. Retryable: DNS may recover.
        case unresolvable
    }

    public var code: Code
    /// A message safe to log: never a secret.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Whether the same delivery may succeed later.
    public var isRetryable: Bool { code == .unresolvable }

    public var description: String { "\(code.rawValue): \(message)" }
}
