import Synchronization

/// A queue in process memory, for tests of pure logic (the worker's loop, drain, cancellation)
/// without Redis. Not for production: nothing is shared between processes and nothing survives
/// a restart.
///
/// It follows ``JobLifecycle`` and the same fencing rules as the Redis queue (every change by a
/// worker needs the lease's token), but serves jobs first in, first out, without tiers or
/// per-user fairness, which live in the Redis claim function.
public final class InMemoryQueueDriver: QueueDriver, BlockingLeaseRenewal, Sendable {
    /// Limits of the in-memory queue, with the Redis queue's defaults.
    public struct Settings: Sendable {
        /// How long a lease lasts without a heartbeat. Default 30 s.
        public var lease: Duration = .seconds(30)
        /// Attempts before a job is dead. Default 5.
        public var maxAttempts: Int = 5
        /// Worker deaths a job survives before it is dead as `poisoned`. Default 3.
        public var maxRecoveries: Int = 3

        public init() {}
    }

    private struct Job {
        var spec: JobSpec
        var state: JobState
        var attempts = 0
        var recoveries = 0
        var token: String?
        var leaseUntil: ContinuousClock.Instant?
        var dueAt: ContinuousClock.Instant?
        var errorCode: String?
        var errorMessage: String?
        var deadReason: String?
        var result: JobResult?
        let createdMS: Int64
    }

    private struct State {
        var jobs: [String: Job] = [:]
        var ready: [String] = []
        var nextID = 0
        var nextToken = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var canceled: [AsyncStream<String>.Continuation] = []
    }

    private let state = Mutex(State())
    private let settings: Settings

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    // MARK: Producer side

    /// Adds a job; returns its id.
    @discardableResult
    public func enqueue(_ spec: JobSpec) throws(QueueError) -> String {
        try spec.validate()
        let (id, waiters) = state.withLock { state -> (String, [CheckedContinuation<Void, Never>]) in
            state.nextID += 1
            let id = String(state.nextID)
            state.jobs[id] = Job(spec: spec, state: .queued, createdMS: 0)
            state.ready.append(id)
            defer { state.waiters.removeAll() }
            return (id, Array(state.waiters.values))
        }
        for waiter in waiters { waiter.resume() }
        return id
    }

    /// Cancels a job; returns the state it was in, or `nil` when unknown.
    @discardableResult
    public func cancel(jobID: String) -> JobState? {
        let (previous, listeners) = state.withLock { state -> (JobState?, [AsyncStream<String>.Continuation]) in
            guard var job = state.jobs[jobID], let next = JobLifecycle.next(job.state, .cancel) else {
                return (state.jobs[jobID]?.state, [])
            }
            let previous = job.state
            state.ready.removeAll { $0 == jobID }
            job.state = next
            job.token = nil
            state.jobs[jobID] = job
            return (previous, previous == .active ? state.canceled : [])
        }
        for listener in listeners { listener.yield(jobID) }
        return previous
    }

    /// The job's record, or `nil`.
    public func status(jobID: String) -> JobRecord? {
        state.withLock { state in
            guard let job = state.jobs[jobID] else { return nil }
            return JobRecord(
                id: jobID, state: job.state, user: job.spec.user, tier: job.spec.tier.rawValue,
                kind: job.spec.kind.rawValue, attempts: job.attempts, recoveries: job.recoveries,
                createdMS: job.createdMS, updatedMS: 0, errorCode: job.errorCode, errorMessage: job.errorMessage,
                deadReason: job.deadReason, result: job.result)
        }
    }

    // MARK: QueueDriver

    public func claim(workerID: String, limit: Int) async throws -> ClaimResult {
        let now = ContinuousClock.now
        return state.withLock { state in
            for (id, job) in state.jobs where job.state == .active && (job.leaseUntil ?? now) <= now {
                recover(id, &state)
            }
            for (id, job) in state.jobs where job.state == .delayed && (job.dueAt ?? now) <= now {
                state.jobs[id]?.state = .queued
                state.ready.append(id)
            }
            var claimed: [ClaimedJob] = []
            while claimed.count < limit, !state.ready.isEmpty {
                let id = state.ready.removeFirst()
                guard var job = state.jobs[id], let next = JobLifecycle.next(job.state, .claim) else { continue }
                state.nextToken += 1
                job.state = next
                job.token = String(state.nextToken)
                job.leaseUntil = now + settings.lease
                state.jobs[id] = job
                let lease = Lease(
                    jobID: id, token: job.token!, attempt: job.attempts + 1, recoveries: job.recoveries)
                claimed.append(ClaimedJob(lease: lease, spec: job.spec))
            }
            let due = state.jobs.values.compactMap { $0.state == .delayed ? $0.dueAt : nil }.min()
            return ClaimResult(jobs: claimed, nextDueIn: due.map { max(.zero, $0 - now) })
        }
    }

    public func waitForWork(timeout: Duration) async throws {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let ready = self.state.withLock { state -> Bool in
                            if !state.ready.isEmpty || Task.isCancelled { return true }
                            state.waiters[id] = continuation
                            return false
                        }
                        if ready { continuation.resume() }
                    }
                } onCancel: {
                    self.state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    public func heartbeat(workerID: String, leases: [Lease]) async throws -> [String] {
        try heartbeatBlocking(workerID: workerID, leases: leases)
    }

    public func progress(_ lease: Lease, stage: String, detail: String) async throws {
        try state.withLock { state in _ = try fenced(lease, state) }
    }

    public func complete(_ lease: Lease, result: JobResult) async throws {
        try transition(lease, .complete) { $0.result = result }
    }

    public func fail(_ lease: Lease, failure: JobFailure) async throws -> JobState {
        let now = ContinuousClock.now
        return try state.withLock { state in
            var job = try fenced(lease, state)
            job.token = nil
            job.errorCode = failure.code
            job.errorMessage = failure.message
            switch failure.disposition {
            case .terminal:
                job.attempts += 1
                job.state = JobLifecycle.next(job.state, .failTerminal)!
            case .retry(let after), .requeue(let after):
                if case .retry = failure.disposition { job.attempts += 1 }
                let left = job.attempts < settings.maxAttempts
                job.state = JobLifecycle.next(job.state, .retry(attemptsLeft: left))!
                job.dueAt = now + after
                if !left { job.deadReason = "max_attempts" }
            }
            state.jobs[lease.jobID] = job
            return job.state
        }
    }

    public func release(_ lease: Lease) async throws {
        try transition(lease, .release) { _ in }
        state.withLock { $0.ready.insert(lease.jobID, at: 0) }
    }

    public func status(of jobID: String) async throws -> JobState? {
        state.withLock { $0.jobs[jobID]?.state }
    }

    public func canceledJobs() -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self)
        state.withLock { $0.canceled.append(continuation) }
        return stream
    }

    // MARK: BlockingLeaseRenewal

    public func heartbeatBlocking(workerID: String, leases: [Lease]) throws -> [String] {
        let until = ContinuousClock.now + settings.lease
        return state.withLock { state in
            leases.compactMap { lease in
                guard (try? fenced(lease, state)) != nil else { return lease.jobID }
                state.jobs[lease.jobID]?.leaseUntil = until
                return nil
            }
        }
    }

    public func unregisterBlocking(workerID: String) throws {}

    /// Expires every lease now, as if every worker had died (for recovery tests).
    public func expireAllLeases() {
        state.withLock { state in
            for id in state.jobs.keys where state.jobs[id]?.state == .active {
                state.jobs[id]?.leaseUntil = .now - .seconds(1)
            }
        }
    }

    // MARK: Internals

    private func fenced(_ lease: Lease, _ state: State) throws -> Job {
        guard let job = state.jobs[lease.jobID], job.state == .active, job.token == lease.token else {
            throw QueueError(.fenced, "job \(lease.jobID) is not held by this lease")
        }
        return job
    }

    private func transition(_ lease: Lease, _ transition: JobTransition, _ update: (inout Job) -> Void) throws {
        try state.withLock { state in
            var job = try fenced(lease, state)
            job.state = JobLifecycle.next(job.state, transition)!
            job.token = nil
            update(&job)
            state.jobs[lease.jobID] = job
        }
    }

    private func recover(_ id: String, _ state: inout State) {
        guard var job = state.jobs[id] else { return }
        job.recoveries += 1
        job.token = nil
        let left = job.recoveries <= settings.maxRecoveries
        job.state = JobLifecycle.next(job.state, .recover(recoveriesLeft: left))!
        if left { state.ready.insert(id, at: 0) } else { job.deadReason = "poisoned" }
        state.jobs[id] = job
    }
}
