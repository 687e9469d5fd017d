import Backends
import ImageIngest
import JobQueue
import Storage

/// Turns an error from any stage of a job into what the queue should do with the job.
///
/// Terminal: bad input (ingest codes), moderation, invalid requests, bad credentials.
/// Retryable with backoff, spending an attempt: timeouts, provider 5xx, storage or queue outages.
/// Requeued without spending an attempt: the provider's rate limit and quota pauses. Rate limits,
/// 503s and quota answers also carry a ``BackendSignal`` that the queue shares with every worker.
public struct FailureClassifier: Sendable {
    public var retryPolicy: RetryPolicy

    public init(retryPolicy: RetryPolicy) {
        self.retryPolicy = retryPolicy
    }

    /// The failure to report for `error` on attempt `attempt` (1-based).
    public func classify(_ error: any Error, attempt: Int) -> JobFailure {
        switch error {
        case let error as IngestError:
            return JobFailure(code: error.code.rawValue, message: error.message, disposition: .terminal)
        case let error as BackendError:
            let asked = error.retryAfter.map { Duration.milliseconds(Int64($0 * 1000)) }
            switch error.code {
            case .rateLimited:
                return JobFailure(
                    code: error.code.rawValue, message: error.message,
                    disposition: .requeue(after: max(asked ?? .zero, .seconds(1))),
                    signal: BackendSignal(.rateLimited, retryAfter: asked))
            case .quotaExhausted:
                return JobFailure(
                    code: error.code.rawValue, message: error.message,
                    disposition: .requeue(after: max(asked ?? .zero, .seconds(60))),
                    signal: BackendSignal(.quotaExhausted, retryAfter: asked))
            case .timeout, .unavailable:
                return JobFailure(
                    code: error.code.rawValue, message: error.message,
                    disposition: .retry(after: retryPolicy.delay(afterAttempt: attempt, minimum: asked ?? .zero)),
                    signal: error.status == 503 ? BackendSignal(.unavailable, retryAfter: asked) : nil)
            case .moderationBlocked:
                return JobFailure(
                    code: error.code.rawValue, message: error.message, disposition: .terminal,
                    categories: error.categories)
            case .invalidRequest, .unauthorized, .canceled:
                return JobFailure(code: error.code.rawValue, message: error.message, disposition: .terminal)
            }
        case let error as InputError:
            return JobFailure(code: error.code, message: error.message, disposition: .terminal)
        case let error as BlobStoreError:
            return JobFailure(
                code: "storage_\(error.code.rawValue)", message: error.message,
                disposition: error.isRetryable ? .retry(after: retryPolicy.delay(afterAttempt: attempt)) : .terminal)
        case let error as QueueError:
            return JobFailure(
                code: error.code.rawValue, message: error.message,
                disposition: error.isRetryable ? .retry(after: retryPolicy.delay(afterAttempt: attempt)) : .terminal)
        default:
            return JobFailure(
                code: "internal", message: "unexpected error: \(type(of: error))",
                disposition: .retry(after: retryPolicy.delay(afterAttempt: attempt)))
        }
    }
}

/// A problem with the job's inputs found before ingest (a missing upload).
public struct InputError: Error, Sendable, Equatable {
    /// `input_missing` (the upload expired or never existed) or `invalid_input`.
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}
