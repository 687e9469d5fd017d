import Foundation
import JobQueue

/// How one worker process runs. Plain data with documented defaults; the CLI fills it from
/// flags and the environment.
public struct WorkerConfiguration: Sendable {
    /// This worker's id in the queue (heartbeats, leases). Default `<host>-<pid>-<random>`.
    public var workerID: String
    /// Jobs run at once by this process. Default 16.
    public var slots: Int = 16
    /// Where the worker's tasks (its claim loop and slots) run. Default `.taskLoop`.
    public var jobExecutor: JobExecutor = .taskLoop
    /// Most jobs taken by one claim call. Default 16.
    public var claimBatch: Int = 16
    /// How often leases are renewed. Keep it well under the queue's lease (30 s). Default 2 s.
    public var heartbeatInterval: Duration = .seconds(2)
    /// On shutdown, how long running jobs may take to finish before they are handed back. Default 20 s.
    public var drainGracePeriod: Duration = .seconds(20)
    /// Longest blocking wait for new work before claiming again anyway. Default 5 s.
    public var idleWait: Duration = .seconds(5)
    /// Backoff for retryable errors. Default 2 s doubling to 5 min, full jitter.
    public var retryPolicy = RetryPolicy()
    /// Time to live of stored outputs. Default 14 days (the retention).
    public var outputTTL: Duration = .seconds(14 * 24 * 3600)
    /// Whether outputs are written by the queue's completion (``QueueStoringOutputs``) instead of
    /// the blob store: one round trip fewer per job, and a job whose lease was lost writes nothing.
    /// Only where the blob store reads what the queue writes: a `RedisBlobStore` on the queue's
    /// server with its `keys.blobPrefix`, as `imagegen worker --store redis` has. Queues that
    /// cannot store outputs ignore it. Default false.
    public var outputsWithCompletion = false
    /// The most output bytes of one job that go with its completion; larger outputs are written
    /// to the blob store first, as plain `SET`s: Redis copies a function's arguments into Lua and
    /// again into the key, which costs more than the round trip saved. Default 64 KiB.
    public var completionOutputLimit = 64 << 10
    /// Whether to publish progress events (validating, generating, storing). Default true.
    public var reportProgress = true
    /// Model name used when the job names none. Default `simulated-1`.
    public var defaultModel = "simulated-1"
    /// Salt of the user hash in logs and provider requests. Default empty.
    public var userHashSalt = ""

    public init(workerID: String = WorkerConfiguration.defaultWorkerID()) {
        self.workerID = workerID
    }

    /// `<host>-<pid>-<4 random hex digits>`.
    public static func defaultWorkerID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        let suffix = String(UInt16.random(in: 0...UInt16.max), radix: 16)
        return "\(host)-\(ProcessInfo.processInfo.processIdentifier)-\(suffix)"
    }
}

/// Where a worker's tasks run.
public enum JobExecutor: String, Sendable, CaseIterable {
    /// The process' task loop: one thread that also runs the timers, so a job's steps, the
    /// continuations its backend and Redis resume and its completion reach each other without
    /// waking another thread. Jobs wait on I/O; their CPU-heavy steps (decoding, resizing,
    /// encoding) run on blocking pools either way. One thread's worth of job overhead per process
    /// (tens of thousands of jobs per second); run more processes for more.
    case taskLoop = "loop"
    /// Swift's global concurrent pool, across all its threads: each hand-off between them is a
    /// thread woken.
    case globalPool = "pool"
}
