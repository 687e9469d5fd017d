/// Exponential backoff with full jitter for retryable job errors.
///
/// The delay before retry `attempt` (1-based) is uniform in `0 ... min(maxDelay, baseDelay × 2^(attempt-1))`,
/// and never less than what the provider asked for with `Retry-After`.
public struct RetryPolicy: Sendable, Equatable {
    /// The backoff ceiling of the first retry. Default 2 s.
    public var baseDelay: Duration = .seconds(2)
    /// The largest backoff ceiling. Default 5 min.
    public var maxDelay: Duration = .seconds(300)

    public init(baseDelay: Duration = .seconds(2), maxDelay: Duration = .seconds(300)) {
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// The ceiling of the delay after `attempt` failed attempts.
    public func ceiling(afterAttempt attempt: Int) -> Duration {
        let exponent = max(0, min(attempt - 1, 30))
        let raw = baseDelay * (1 << exponent)
        return min(raw, maxDelay)
    }

    /// A delay drawn with full jitter, at least `minimum`.
    public func delay(
        afterAttempt attempt: Int, minimum: Duration = .zero,
        using generator: inout some RandomNumberGenerator
    ) -> Duration {
        let ceiling = ceiling(afterAttempt: attempt).milliseconds
        let drawn = Duration.milliseconds(Int64.random(in: 0...max(0, ceiling), using: &generator))
        return max(drawn, minimum)
    }

    /// A delay drawn with the system's random generator.
    public func delay(afterAttempt attempt: Int, minimum: Duration = .zero) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(afterAttempt: attempt, minimum: minimum, using: &generator)
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    public var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
