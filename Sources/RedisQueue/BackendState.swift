/// The backend's state shared by every worker, as ``RedisJobQueue/backendState()`` reads it.
public struct BackendState: Sendable, Equatable {
    /// The quota breaker.
    public enum Breaker: String, Sendable {
        /// Claiming as usual.
        case closed
        /// A quota answer stopped claiming until ``BackendState/breakerRemaining`` passes.
        case open
        /// One probe job may go (or went); its end without a quota answer closes the breaker.
        case halfOpen = "half_open"
    }

    /// Time left of the shared pause (zero: none).
    public var pauseRemaining: Duration
    public var breaker: Breaker
    /// Time left before the open breaker lets a probe through.
    public var breakerRemaining: Duration
    /// The probe job of a half-open breaker, once claimed.
    public var probeJobID: String?
    /// What the budgets are multiplied by (1: full budgets).
    public var factor: Double
    /// Signals received since the queue was created.
    public var rateLimits: Int
    public var unavailable: Int
    public var quotaAnswers: Int

    init(fields f: [String: String]) {
        pauseRemaining = .milliseconds(Int64(f["pause_remaining_ms"] ?? "0") ?? 0)
        breaker = Breaker(rawValue: f["breaker"] ?? "closed") ?? .closed
        breakerRemaining = .milliseconds(Int64(f["breaker_remaining_ms"] ?? "0") ?? 0)
        probeJobID = f["probe"].flatMap { $0.isEmpty ? nil : $0 }
        factor = Double(f["factor"] ?? "1") ?? 1
        rateLimits = Int(f["rate_limit_count"] ?? "0") ?? 0
        unavailable = Int(f["unavailable_count"] ?? "0") ?? 0
        quotaAnswers = Int(f["quota_count"] ?? "0") ?? 0
    }
}
