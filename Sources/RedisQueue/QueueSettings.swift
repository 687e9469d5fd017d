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
    /// Jobs one user may have running at once (0: no cap). Default 4. Running jobs are counted only
    /// while a cap is set: a cap set on a busy queue counts the jobs claimed from then on.
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
    /// The backend budgets count over a window this much longer than a minute, so that calls
    /// reaching the provider a little earlier or later than admitted never crowd one of its
    /// minutes. Default 500 ms.
    public var windowMargin: Duration = .milliseconds(500)
    /// Tokens per minute across all workers (0: no budget). A job is charged ``tokensPerImage``
    /// per image when claimed; the provider's `usage` reported after the call corrects it. Default 0.
    public var tokensPerMinute: Int = 0
    /// The tokens one image is charged before its usage is known. Default 1,100.
    public var tokensPerImage: Int = 1100
    /// Backend calls one user may start per minute (GCRA; a user over it keeps its place and is
    /// passed over), 0 for no budget. Default 0.
    public var userRequestsPerMinute: Int = 0
    /// Calls one user may start back to back under ``userRequestsPerMinute``. Default 2.
    public var userBurst: Int = 2
    /// The shared pause after a rate-limit 429 or a 503 that says no `Retry-After`. Default 2 s.
    public var pauseDefault: Duration = .seconds(2)
    /// The longest shared pause, whatever `Retry-After` says. Default 120 s.
    public var pauseMax: Duration = .seconds(120)
    /// Up to this much is added to each pause, so workers do not all start again at once. Default 500 ms.
    public var pauseJitter: Duration = .milliseconds(500)
    /// How long claiming stops after a quota 429 before one probe job goes out. Default 5 min.
    public var quotaBreaker: Duration = .seconds(300)
    /// What the first rate-limit 429 of a pause multiplies the budgets by. Default 0.8.
    public var adaptiveShrink: Double = 0.8
    /// The budgets never shrink below this fraction. Default 0.25.
    public var adaptiveFloor: Double = 0.25
    /// Added back to the fraction after each ``adaptivePeriod`` without a rate-limit 429. Default 0.05.
    public var adaptiveRecovery: Double = 0.05
    /// The period of the recovery. Default 60 s.
    public var adaptivePeriod: Duration = .seconds(60)
    /// Weights of the tiers in weighted round robin. Default pro 6, standard 3, free 1.
    public var weights: [JobSpec.Tier: Int] = [.pro: 6, .standard: 3, .free: 1]

    public init() {}

    /// The field, value pairs the `configure` function takes.
    var arguments: [String] {
        var pairs: [(String, String)] = [
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
            ("window_margin_ms", windowMargin.milliseconds),
            ("tokens_per_minute", Int64(tokensPerMinute)),
            ("tokens_per_image", Int64(max(1, tokensPerImage))),
            ("user_requests_per_minute", Int64(userRequestsPerMinute)),
            ("user_burst", Int64(userBurst)),
            ("pause_default_ms", pauseDefault.milliseconds),
            ("pause_max_ms", pauseMax.milliseconds),
            ("pause_jitter_ms", pauseJitter.milliseconds),
            ("quota_breaker_ms", quotaBreaker.milliseconds),
            ("adaptive_period_ms", max(1, adaptivePeriod.milliseconds)),
        ].map { ($0.0, String($0.1)) }
        pairs += [
            ("adaptive_shrink", min(1, max(0.01, adaptiveShrink))),
            ("adaptive_floor", min(1, max(0.01, adaptiveFloor))),
            ("adaptive_recovery", max(0, adaptiveRecovery)),
        ].map { ($0.0, String($0.1)) }
        for tier in JobSpec.Tier.allCases {
            pairs.append(("weight_\(tier.rawValue)", String(max(1, weights[tier] ?? 1))))
        }
        return pairs.flatMap { [$0.0, $0.1] }
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
        if let v = value("window_margin_ms") { windowMargin = .milliseconds(v) }
        if let v = value("tokens_per_minute") { tokensPerMinute = Int(v) }
        if let v = value("tokens_per_image") { tokensPerImage = Int(v) }
        if let v = value("user_requests_per_minute") { userRequestsPerMinute = Int(v) }
        if let v = value("user_burst") { userBurst = Int(v) }
        if let v = value("pause_default_ms") { pauseDefault = .milliseconds(v) }
        if let v = value("pause_max_ms") { pauseMax = .milliseconds(v) }
        if let v = value("pause_jitter_ms") { pauseJitter = .milliseconds(v) }
        if let v = value("quota_breaker_ms") { quotaBreaker = .milliseconds(v) }
        if let v = value("adaptive_period_ms") { adaptivePeriod = .milliseconds(v) }
        if let v = fields["adaptive_shrink"].flatMap(Double.init) { adaptiveShrink = v }
        if let v = fields["adaptive_floor"].flatMap(Double.init) { adaptiveFloor = v }
        if let v = fields["adaptive_recovery"].flatMap(Double.init) { adaptiveRecovery = v }
        for tier in JobSpec.Tier.allCases {
            if let v = value("weight_\(tier.rawValue)") { weights[tier] = Int(v) }
        }
    }

    /// Writes nothing: `configure(.none)` only reads the effective settings.
    public static var none: QueueSettings? { nil }
}
