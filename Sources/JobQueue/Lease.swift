/// The right to work on one job, proven by a fencing token.
///
/// Every change a worker makes to the job (heartbeat, progress, complete, fail, release) is
/// conditional on the token: once the lease expired and the job was recovered, or the job was
/// canceled, the old token changes nothing.
public struct Lease: Sendable, Hashable {
    public var jobID: String
    /// The fencing token, increasing across the queue.
    public var token: String
    /// 1 for the first run; attempts spent on errors, plus one.
    public var attempt: Int
    /// How many times a worker died holding this job before.
    public var recoveries: Int

    public init(jobID: String, token: String, attempt: Int, recoveries: Int) {
        self.jobID = jobID
        self.token = token
        self.attempt = attempt
        self.recoveries = recoveries
    }
}

/// A job handed to a worker by a claim.
public struct ClaimedJob: Sendable {
    public var lease: Lease
    public var spec: JobSpec

    public init(lease: Lease, spec: JobSpec) {
        self.lease = lease
        self.spec = spec
    }
}

/// What a claim returned.
public struct ClaimResult: Sendable {
    public var jobs: [ClaimedJob]
    /// Jobs that were claimed but whose JSON could not be read; the driver already failed them.
    public var rejected: Int
    /// When nothing was claimable: how long until a delayed job or a lease falls due.
    public var nextDueIn: Duration?

    public init(jobs: [ClaimedJob], rejected: Int = 0, nextDueIn: Duration? = nil) {
        self.jobs = jobs
        self.rejected = rejected
        self.nextDueIn = nextDueIn
    }
}
