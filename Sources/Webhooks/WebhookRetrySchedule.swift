import Foundation
import JobQueue

/// When a webhook is tried again: a growing schedule spanning about a day, with jitter.
///
/// Attempt 1 goes out at once; after failed attempt `k` the next waits `delays[k-1]`, scaled by a
/// jitter factor drawn from `1 ± jitter`, and never less than what the endpoint asked for with
/// `Retry-After` (capped at ``maxRetryAfter``). After `delays.count + 1` attempts the
/// notification is given up.
public struct WebhookRetrySchedule: Sendable, Equatable {
    /// The waits between attempts. Default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (8 attempts, ~27.6 h).
    public var delays: [Duration] = [
        .seconds(5), .seconds(300), .seconds(1800), .seconds(7200), .seconds(18_000), .seconds(36_000),
        .seconds(36_000),
    ]
    /// The relative jitter of each wait, 0 to 1. Default 0.2 (±20 %).
    public var jitter: Double = 0.2
    /// The longest `Retry-After` honoured. Default 24 h.
    public var maxRetryAfter: Duration = .seconds(86_400)

    public init() {}

    public init(delays: [Duration], jitter: Double = 0.2, maxRetryAfter: Duration = .seconds(86_400)) {
        self.delays = delays
        self.jitter = jitter
        self.maxRetryAfter = maxRetryAfter
    }

    /// Attempts in all, the first one included.
    public var maxAttempts: Int { delays.count + 1 }

    /// The wait after failed attempt `attempt` (1-based), or nil when it was the last one.
    /// `unit` is a draw from `0..<1` (injected, so tests are exact); `retryAfter` is the endpoint's ask.
    public func delay(afterAttempt attempt: Int, unit: Double, retryAfter: Duration? = nil) -> Duration? {
        guard attempt >= 1, attempt <= delays.count else { return nil }
        let base = Double(delays[attempt - 1].milliseconds)
        let factor = 1 + jitter * (2 * min(max(unit, 0), 1) - 1)
        var wait = Duration.milliseconds(Int64((base * factor).rounded()))
        if let retryAfter { wait = max(wait, min(retryAfter, maxRetryAfter)) }
        return wait
    }

    /// The same with the system's random generator.
    public func delay(afterAttempt attempt: Int, retryAfter: Duration? = nil) -> Duration? {
        delay(afterAttempt: attempt, unit: Double.random(in: 0..<1), retryAfter: retryAfter)
    }
}

extension WebhookRetrySchedule {
    /// Parses a `Retry-After` value: delta seconds (`120`) or an HTTP date (`Sun, 06 Nov 1994
    /// 08:49:37 GMT`), counted from `now` and never negative. Nil when it is neither.
    public static func parseRetryAfter(_ value: String, now: Date = Date()) -> Duration? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Double(trimmed), seconds.isFinite, seconds >= 0, seconds < 1e9 {
            return .milliseconds(Int64(seconds * 1000))
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: trimmed) else { return nil }
        return .milliseconds(Int64(max(0, date.timeIntervalSince(now)) * 1000))
    }
}

extension WebhookRetrySchedule {
    /// What an answer means for attempt `attempt`: 2xx delivered; 410 disables the endpoint; any
    /// other status (redirects are not followed) is tried again by the schedule, honouring
    /// `retryAfter`, until the attempts run out. `status` 0 stands for no answer (timeout,
    /// connection refused). `unit` is the jitter draw.
    public func outcome(status: Int, retryAfter: Duration?, attempt: Int, unit: Double, reason: String? = nil)
        -> WebhookOutcome
    {
        if (200..<300).contains(status) { return .delivered(status: status) }
        if status == 410 { return .disableEndpoint(status: status) }
        let why = reason ?? "the endpoint answered \(status)"
        guard let wait = delay(afterAttempt: attempt, unit: unit, retryAfter: retryAfter) else {
            return .failed(status: status, reason: why)
        }
        return .retry(after: wait, status: status, reason: why)
    }
}
