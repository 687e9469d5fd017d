import JobQueue
import Synchronization

/// The jobs this worker runs now, with the signal that stops each.
final class RunningJobs: Sendable {
    private struct Entry {
        let lease: Lease
        let signal: CancelSignal
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let changes: AsyncStream<Int>.Continuation
    /// Yields the number of running jobs each time a job ends.
    let ended: AsyncStream<Int>

    init() {
        (ended, changes) = AsyncStream.makeStream(of: Int.self, bufferingPolicy: .bufferingNewest(1))
    }

    var count: Int { entries.withLock { $0.count } }
    var leases: [Lease] { entries.withLock { $0.values.map(\.lease) } }

    func add(_ lease: Lease) -> CancelSignal {
        let signal = CancelSignal()
        entries.withLock { $0[lease.jobID] = Entry(lease: lease, signal: signal) }
        return signal
    }

    /// Swaps a finished job for the next one its slot claimed, in one step: the count of running
    /// jobs never dips, so the claim loop sees no free slot in between.
    func replace(_ jobID: String, with lease: Lease) -> CancelSignal {
        let signal = CancelSignal()
        entries.withLock { entries in
            entries.removeValue(forKey: jobID)
            entries[lease.jobID] = Entry(lease: lease, signal: signal)
        }
        return signal
    }

    func remove(_ jobID: String) {
        let left = entries.withLock { entries -> Int in
            entries.removeValue(forKey: jobID)
            return entries.count
        }
        changes.yield(left)
    }

    /// Stops one job; returns false when this worker does not run it.
    @discardableResult
    func stop(_ jobID: String, reason: StopReason) -> Bool {
        guard let signal = entries.withLock({ $0[jobID]?.signal }) else { return false }
        signal.fire(reason)
        return true
    }

    func stopAll(reason: StopReason) {
        for signal in entries.withLock({ $0.values.map(\.signal) }) { signal.fire(reason) }
    }

    /// Waits until no job runs.
    func waitUntilEmpty() async {
        if count == 0 { return }
        for await left in ended where left == 0 { return }
    }

    func finish() { changes.finish() }
}
