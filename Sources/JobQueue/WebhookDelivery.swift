/// One webhook notification of a job that ended, as the dispatcher claims it.
///
/// The queue records it in the same atomic step that writes the job's terminal state
/// (`succeeded`, `failed`, `dead`, `canceled`), so a crash can lose neither the state change nor
/// its notification. It holds references only: no prompt, no image bytes.
public struct WebhookDelivery: Sendable, Equatable {
    /// The job the notification is about.
    public var jobID: String
    /// The `webhook-id` header: the same for every attempt of this notification.
    public var messageID: String
    /// The fencing token of this claim: a report with an older token changes nothing.
    public var token: String
    /// The attempt being made, 1 for the first. A claim after a dispatcher died repeats its attempt.
    public var attempt: Int
    /// Where to send it (the job's `webhook_url`, else the queue's default URL).
    public var url: String
    /// The job's terminal state: `succeeded`, `failed`, `dead` or `canceled`.
    public var state: String
    /// The user id the job was enqueued with.
    public var user: String
    /// When the job ended, milliseconds since 1970 (server clock).
    public var atMS: Int64
    /// The error code of a failed or dead job (`dead` jobs: the reason, `max_attempts` or `poisoned`).
    public var errorCode: String?
    /// What a succeeded job produced: output references and usage.
    public var result: JobResult?
    /// The job's metadata, as the web tier enqueued it.
    public var metadata: [String: String]

    public init(
        jobID: String, messageID: String, token: String, attempt: Int, url: String, state: String, user: String,
        atMS: Int64, errorCode: String? = nil, result: JobResult? = nil, metadata: [String: String] = [:]
    ) {
        self.jobID = jobID
        self.messageID = messageID
        self.token = token
        self.attempt = attempt
        self.url = url
        self.state = state
        self.user = user
        self.atMS = atMS
        self.errorCode = errorCode
        self.result = result
        self.metadata = metadata
    }
}

/// What became of one delivery attempt, as the dispatcher reports it to the queue.
public enum WebhookOutcome: Sendable, Equatable {
    /// The endpoint answered 2xx: done.
    case delivered(status: Int)
    /// Try again after `delay` (the attempt is spent). `status` is 0 when no answer came.
    case retry(after: Duration, status: Int, reason: String)
    /// No more attempts: the notification is given up.
    case failed(status: Int, reason: String)
    /// The endpoint answered 410 Gone: this notification ends and the URL gets no more deliveries.
    case disableEndpoint(status: Int)
    /// The target is not allowed (scheme, private address): never sent.
    case refused(reason: String)
}

/// What a dispatcher's claim returned.
public struct WebhookClaim: Sendable {
    /// The deliveries now leased to the caller.
    public var deliveries: [WebhookDelivery]
    /// When fewer than asked were claimed: how soon the earliest remaining delivery (or lease) falls due.
    public var nextDueIn: Duration?

    public init(deliveries: [WebhookDelivery], nextDueIn: Duration?) {
        self.deliveries = deliveries
        self.nextDueIn = nextDueIn
    }
}

/// The queue operations a webhook dispatcher needs. ``RedisJobQueue`` implements it on Redis.
public protocol WebhookDeliveryQueue: Sendable {
    /// Leases up to `limit` due deliveries to `dispatcherID` for `lease`; a delivery whose lease
    /// ends without a report is claimed again, with the same message id and attempt.
    func claimWebhooks(dispatcherID: String, limit: Int, lease: Duration) async throws -> WebhookClaim
    /// Records the outcome of an attempt; throws ``QueueError/Code/fenced`` when the lease is gone.
    func reportWebhook(_ delivery: WebhookDelivery, outcome: WebhookOutcome) async throws
    /// Waits until a delivery may have been recorded, or `timeout` passes. Never polls.
    func waitForWebhooks(timeout: Duration) async throws
}
