import Synchronization
import ThreadSupport

/// Why a running job is being stopped from outside.
public enum StopReason: String, Sendable, Equatable {
    /// Someone canceled the job; the queue already marked it canceled.
    case canceled
    /// The lease is gone (expired and recovered elsewhere): write nothing.
    case leaseLost = "lease_lost"
    /// The worker is shutting down: hand the job back.
    case shutdown
}

/// A one-shot stop signal for one running job, fired from outside (cancel listener, lease
/// renewer, shutdown). The first reason wins; later fires do nothing.
final class CancelSignal: Sendable {
    private struct State {
        var reason: StopReason?
        var handlers: [@Sendable (StopReason) -> Void] = []
    }

    private let state = Mutex(State())

    /// The reason it fired with, if it has.
    var reason: StopReason? { state.withLock { $0.reason } }

    func fire(_ reason: StopReason) {
        let handlers = state.withLock { state -> [@Sendable (StopReason) -> Void] in
            guard state.reason == nil else { return [] }
            state.reason = reason
            defer { state.handlers.removeAll() }
            return state.handlers
        }
        for handler in handlers { handler(reason) }
    }

    /// Calls `handler` when the signal fires: at once if it has fired already, else once, on the
    /// thread that fires it (keep it short).
    func onFire(_ handler: @escaping @Sendable (StopReason) -> Void) {
        let fired = state.withLock { state -> StopReason? in
            if let reason = state.reason { return reason }
            state.handlers.append(handler)
            return nil
        }
        if let fired { handler(fired) }
    }
}

/// Runs `body` in a task of its own, cancelled when `signal` fires or the caller is cancelled, and
/// returns its result. Once the signal has fired it throws `CancellationError`, even when the body
/// finished anyway: a stopped job's outcome is decided by the stop reason.
///
/// The result is handed over through a box the caller empties, not kept as the task's value: the
/// signal's handler holds the task until the next job replaces it, and a job's result can hold
/// its outputs (megabytes), which must go as soon as the caller is done with them.
func runUntilSignaled<T: Sendable>(
    _ signal: CancelSignal, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let handover = Mutex<T?>(nil)
    // On the caller's executor (the task loop, for the worker's slots), as a child task would be.
    let task = Task(executorPreference: currentTaskExecutorPreference()) {
        let value = try await body()
        handover.withLock { $0 = value }
    }
    signal.onFire { _ in task.cancel() }
    try await withTaskCancellationHandler {
        try await task.value
    } onCancel: {
        task.cancel()
    }
    let value = handover.withLock { $0.take() }
    if signal.reason != nil { throw CancellationError() }
    guard let value else { throw CancellationError() }
    return value
}
