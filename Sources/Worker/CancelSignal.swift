import Synchronization

/// Why a running job is being stopped from outside.
public enum StopReason: String, Sendable, Equatable {
    /// Someone canceled the job; the queue already marked it canceled.
    case canceled
    /// The lease is gone (expired and recovered elsewhere): write nothing.
    case leaseLost = "lease_lost"
    /// The worker is shutting down: hand the job back.
    case shutdown
}

/// A one-shot signal that stops one running job: fired once with a reason, awaited by the job.
final class CancelSignal: Sendable {
    private struct State {
        var reason: StopReason?
        var waiters: [UInt64: CheckedContinuation<StopReason?, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state = Mutex(State())

    /// The reason it fired with, if it has.
    var reason: StopReason? { state.withLock { $0.reason } }

    /// Fires the signal; later calls keep the first reason.
    func fire(_ reason: StopReason) {
        let waiters = state.withLock { state -> [CheckedContinuation<StopReason?, Never>] in
            guard state.reason == nil else { return [] }
            state.reason = reason
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: reason) }
    }

    /// Waits until the signal fires; returns `nil` when the waiting task is canceled first.
    func wait() async -> StopReason? {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let immediate: StopReason?? = state.withLock { state in
                    if let reason = state.reason { return .some(reason) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = continuation
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: nil)
        }
    }
}

/// Runs `body` until it finishes or `signal` fires; when the signal fires first, `body` is
/// canceled and `CancellationError` is thrown (read the reason from the signal).
func runUntilSignaled<T: Sendable>(
    _ signal: CancelSignal, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            _ = await signal.wait()
            throw CancellationError()
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw CancellationError() }
        return value
    }
}
