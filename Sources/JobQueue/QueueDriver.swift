/// The queue operations a worker needs. ``RedisJobQueue`` implements it on Redis.
public protocol QueueDriver: Sendable {
    /// Takes up to `limit` jobs, fairly and within the caps, and leases them to `workerID`.
    func claim(workerID: String, limit: Int) async throws -> ClaimResult
    /// Waits until something may have become claimable, or `timeout` passes. Never polls.
    func waitForWork(timeout: Duration) async throws
    /// Waits for work, then claims up to `limit` jobs for `workerID` (whether work came or the
    /// wait timed out): a waiting worker's next claim without a round trip of its own.
    func waitForWork(timeout: Duration, thenClaim limit: Int, workerID: String) async throws -> ClaimResult
    /// Extends the leases; returns the job ids this worker no longer holds (stop them).
    func heartbeat(workerID: String, leases: [Lease]) async throws -> [String]
    /// Records a progress stage; throws ``QueueError/Code/fenced`` when the lease is gone.
    func progress(_ lease: Lease, stage: String, detail: String) async throws
    /// Marks the job succeeded with its result.
    func complete(_ lease: Lease, result: JobResult) async throws
    /// Marks the job succeeded and, in the same step, claims up to `limit` jobs for `workerID`
    /// (0: none), as ``claim(workerID:limit:)`` would: the slot the job frees takes its next job.
    func complete(_ lease: Lease, result: JobResult, thenClaim limit: Int, workerID: String) async throws
        -> ClaimResult
    /// Fails, retries or requeues the job; returns its new state.
    func fail(_ lease: Lease, failure: JobFailure) async throws -> JobState
    /// Hands the job back untouched, at once (graceful shutdown).
    func release(_ lease: Lease) async throws
    /// The job's current state, or `nil` when it no longer exists (finished and expired, deleted).
    func status(of jobID: String) async throws -> JobState?
}

extension QueueDriver {
    /// Waits for work as ``waitForWork(timeout:)`` does, then claims up to `limit` jobs for
    /// `workerID`: two steps, for drivers without a combined one.
    public func waitForWork(timeout: Duration, thenClaim limit: Int, workerID: String) async throws -> ClaimResult {
        try await waitForWork(timeout: timeout)
        return try await claim(workerID: workerID, limit: limit)
    }

    /// Completes, then claims: two steps, for drivers without a combined one.
    public func complete(_ lease: Lease, result: JobResult, thenClaim limit: Int, workerID: String) async throws
        -> ClaimResult
    {
        try await complete(lease, result: result)
        guard limit > 0 else { return ClaimResult(jobs: []) }
        return try await claim(workerID: workerID, limit: limit)
    }

    /// Ids of running jobs canceled by someone else; default: none (heartbeats still report them).
    public func canceledJobs() -> AsyncStream<String> {
        AsyncStream { $0.finish() }
    }
}

/// One output of a job for ``QueueStoringOutputs``.
public struct JobOutput: Sendable {
    /// The blob key: output `i` of job `id` is `output:<id>:<i>`.
    public var key: String
    public var bytes: [UInt8]

    public init(key: String, bytes: [UInt8]) {
        self.key = key
        self.bytes = bytes
    }
}

/// A queue that writes a job's outputs in the same step that completes it, where its blob store
/// reads them: one round trip fewer per job, and nothing is written unless the lease still holds,
/// so a job whose lease was lost leaves no outputs behind.
public protocol QueueStoringOutputs: QueueDriver {
    /// Stores `outputs` (expiring after `ttl`) and marks the job succeeded, then claims up to
    /// `limit` jobs for `workerID` (0: none), as ``QueueDriver/complete(_:result:thenClaim:workerID:)``.
    /// Output `i` must have the key `output:<job id>:<i>`.
    func complete(
        _ lease: Lease, result: JobResult, outputs: [JobOutput], ttl: Duration, thenClaim limit: Int,
        workerID: String
    ) async throws -> ClaimResult
}

/// A queue whose leases can be renewed from a plain thread, outside Swift concurrency, so that
/// lease renewal keeps going while the cooperative pool is busy.
public protocol BlockingLeaseRenewal: Sendable {
    /// Extends the leases; returns the job ids this worker no longer holds. Blocks the caller.
    func heartbeatBlocking(workerID: String, leases: [Lease]) throws -> [String]
    /// Marks the worker as gone so its jobs need no lease expiry to come back. Blocks the caller.
    func unregisterBlocking(workerID: String) throws
}
