import JobQueue

/// Queue-wide settings, stored in the queue's `config` hash so that every worker and every
/// producer's enqueue call applies the same rules. Defaults apply to any setting never written.
public struct QueueSettings: Sendable, Equatable {
    /// How long user content is kept: job records, idempotency keys, events, outputs. Default 14 days.
    public var retention: Duration = .seconds(14 * 24 * 3600)
    /// How long events stay in the stream (capped at ``retention``). Default 24 h.
    public var eventsMaxAge: Duration = .seconds(24 * 3600)
    /// Dead jobs kept at most; the oldest are deleted beyond it. Default 10,000.
    public var deadLetterCap: Int = 10_000
    /// Attempts (runs ending in a retryable error) before a job is dead. Default 5.
    public var maxAttempts: Int = 5
    /// Worker deaths a job survives before it is dead as `poisoned`. Default 3.
    public var maxRecoveries: Int = 3
    /// Largest job JSON accepted. Default 64 KiB.
    public var maxPayloadBytes: Int = 65_536
    /// How long a lease lasts without a heartbeat. Default 30 s.
    public var lease: Duration = .seconds(30)
    /// Jobs one user may have running at once (0: no cap). Default 4.
    public var userInFlightCap: Int = 4
    /// Jobs running at once across all workers (0: no cap). Default 0.
    public var globalInFlightCap: Int = 0
    /// A worker without a heartbeat for this long is dead and its jobs come back. Default 15 s.
    public var workerTimeout: Duration = .seconds(15)
    /// Backend calls admitted per minute across all workers (0: no budget). Default 0.
    public var requestsPerMinute: Int = 0
    /// Images admitted per minute across all workers; a job costs its `n` (0: no budget). Default 0.
    public var imagesPerMinute: Int = 0
    /// Calls that may start back to back before the per-minute budgets space them out. Default 4.
    public var burst: Int = 4
    /// Weights of the tiers in weighted round robin. Default pro 6, standard 3, free 1.
    public var weights: [JobSpec.Tier: Int] = [.pro: 6, .standard: 3, .free: 1]

    public init() {}

    /// The field, value pairs the `configure` function takes.
    var arguments: [String] {
        var pairs: [(String, Int64)] = [
            ("retention_ms", retention.milliseconds),
            ("events_max_age_ms", eventsMaxAge.milliseconds),
            ("dead_max", Int64(deadLetterCap)),
            ("max_attempts", Int64(maxAttempts)),
            ("max_recoveries", Int64(maxRecoveries)),
            ("max_payload_bytes", Int64(maxPayloadBytes)),
            ("lease_ms", lease.milliseconds),
            ("user_inflight_cap", Int64(userInFlightCap)),
            ("global_inflight_cap", Int64(globalInFlightCap)),
            ("worker_timeout_ms", workerTimeout.milliseconds),
            ("requests_per_minute", Int64(requestsPerMinute)),
            ("images_per_minute", Int64(imagesPerMinute)),
            ("burst", Int64(burst)),
        ]
        for tier in JobSpec.Tier.allCases {
            pairs.append(("weight_\(tier.rawValue)", Int64(max(1, weights[tier] ?? 1))))
        }
        return pairs.flatMap { [$0.0, String($0.1)] }
    }
}

extension QueueSettings {
    /// Settings read back from the `configure` reply (unknown or missing fields keep defaults).
    public init(current fields: [String: String]) {
        self.init()
        func value(_ key: String) -> Int64? { fields[key].flatMap { Int64($0) ?? Double($0).map { Int64($0) } } }
        if let v = value("retention_ms") { retention = .milliseconds(v) }
        if let v = value("events_max_age_ms") { eventsMaxAge = .milliseconds(v) }
        if let v = value("dead_max") { deadLetterCap = Int(v) }
        if let v = value("max_attempts") { maxAttempts = Int(v) }
        if let v = value("max_recoveries") { maxRecoveries = Int(v) }
        if let v = value("max_payload_bytes") { maxPayloadBytes = Int(v) }
        if let v = value("lease_ms") { lease = .milliseconds(v) }
        if let v = value("user_inflight_cap") { userInFlightCap = Int(v) }
        if let v = value("global_inflight_cap") { globalInFlightCap = Int(v) }
        if let v = value("worker_timeout_ms") { workerTimeout = .milliseconds(v) }
        if let v = value("requests_per_minute") { requestsPerMinute = Int(v) }
        if let v = value("images_per_minute") { imagesPerMinute = Int(v) }
        if let v = value("burst") { burst = Int(v) }
        for tier in JobSpec.Tier.allCases {
            if let v = value("weight_\(tier.rawValue)") { weights[tier] = Int(v) }
        }
    }

    /// Writes nothing: `configure(.none)` only reads the effective settings.
    public static var none: QueueSettings? { nil }
}
