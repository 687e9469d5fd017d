import Foundation
import JobQueue
import Logging
import ThreadSupport

/// Renews the leases of the running jobs from a thread of its own.
///
/// It never waits on Swift's cooperative pool, so image work that saturates the pool cannot
/// starve it and let leases expire under a live worker. Jobs the queue says this worker no
/// longer holds are stopped (`lease_lost`).
final class LeaseRenewer: @unchecked Sendable {
    // `@unchecked Sendable`: `stopped` is guarded by `condition`; the rest is immutable.
    private let condition = NSCondition()
    private var stopped = false
    private let interval: Duration
    private let workerID: String
    private let queue: any BlockingLeaseRenewal
    private let jobs: RunningJobs
    private let logger: Logger

    init(interval: Duration, workerID: String, queue: any BlockingLeaseRenewal, jobs: RunningJobs, logger: Logger) {
        self.interval = interval
        self.workerID = workerID
        self.queue = queue
        self.jobs = jobs
        self.logger = logger
    }

    func start() {
        startThread(named: "lease-renewer") { [self] in loop() }
    }

    /// Stops renewing and, when `unregister` is true, tells the queue this worker is gone.
    func stop(unregister: Bool) {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
        if unregister { try? queue.unregisterBlocking(workerID: workerID) }
    }

    private func loop() {
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        while true {
            condition.lock()
            let deadline = Date(timeIntervalSinceNow: seconds)
            while !stopped && condition.wait(until: deadline) {}
            let done = stopped
            condition.unlock()
            if done { return }
            do {
                let lost = try queue.heartbeatBlocking(workerID: workerID, leases: jobs.leases)
                for jobID in lost where jobs.stop(jobID, reason: .leaseLost) {
                    logger.warning("lease lost; stopping job", metadata: ["job.id": "\(jobID)"])
                }
            } catch {
                logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
