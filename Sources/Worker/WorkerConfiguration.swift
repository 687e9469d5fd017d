import Foundation
import JobQueue

/// How one worker process runs. Plain data with documented defaults; the CLI fills it from
/// flags and the environment.
public struct WorkerConfiguration: Sendable {
    /// This worker's id in the queue (heartbeats, leases). Default `<host>-<pid>-<random>`.
    public var workerID: String
    /// Jobs run at once by this process. Default 16.
    public var slots: Int = 16
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
