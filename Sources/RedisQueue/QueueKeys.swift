/// Every Redis key and channel name of one queue, in one place.
///
/// All of them start with `imagegen:{<queue>}`, so they share one hash tag and live in one
/// Redis Cluster slot. The layout is documented key by key in `imagegen.lua` and ARCHITECTURE.md.
public struct QueueKeys: Sendable, Equatable {
    /// The queue's prefix, passed as the single KEY of every function call.
    public let prefix: String

    /// Keys for the queue named `queue` (letters, digits, `-`, `_`).
    public init(queue: String) {
        self.prefix = "imagegen:{\(queue)}"
    }

    public func job(_ id: String) -> String { "\(prefix):job:\(id)" }
    public var events: String { "\(prefix):events" }
    public var wake: String { "\(prefix):wake" }
    public var dead: String { "\(prefix):dead" }
    public var active: String { "\(prefix):active" }
    public var config: String { "\(prefix):config" }
    /// The webhook delivery of a job.
    public func webhook(_ jobID: String) -> String { "\(prefix):wh:\(jobID)" }
    /// Webhook deliveries by due time (or lease deadline while claimed).
    public var webhooksDue: String { "\(prefix):wh:due" }
    /// Endpoint URLs that answered 410 Gone.
    public var webhooksDisabled: String { "\(prefix):wh:disabled" }
    /// The deployment's default webhook URL.
    public var webhookDefaultURL: String { "\(prefix):wh:default_url" }
    /// Wake-up tokens for webhook dispatchers.
    public var webhooksWake: String { "\(prefix):wh:wake" }
    /// Blob keys for the Redis blob store: `<prefix>:blob:<blob key>`.
    public var blobPrefix: String { "\(prefix):blob:" }
    /// Channel with one message per event: `<type> <job id>`.
    public var nudgeChannel: String { "\(prefix):nudge" }
    /// Channel with the id of each running job that was canceled.
    public var cancelChannel: String { "\(prefix):cancel" }

    /// Whether `name` is a valid queue name.
    public static func isValidQueueName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
    }
}
