import Foundation
import JobQueue
import Logging
import RedisClient
import Synchronization

/// The job queue on Redis: the worker's ``QueueDriver`` and the web tier's producer API.
///
/// Every state change is one call of a function of the `imagegen_v1` library
/// (`Scripts/imagegen.lua`), which also appends the event. The library is loaded on first use
/// and reloaded whenever the server lost it.
public final class RedisJobQueue: QueueStoringOutputs, Sendable {
    /// The queue's name (the part inside the hash tag).
    public let name: String
    /// The queue's keys.
    public let keys: QueueKeys
    /// The Redis connections.
    public let pool: RedisPool
    private let library: RedisFunctionLibrary
    private let blocking = Mutex<RedisConnection?>(nil)
    /// The webhook dispatcher's blocking connection (apart from the worker's: both may block at once).
    let webhookBlocking = Mutex<RedisConnection?>(nil)
    private let libraryChecked = Atomic<Bool>(false)
    private let logger: Logger
    /// Completions waiting for the next `complete_stored` call (see ``complete(_:result:)``).
    private let completions: GroupCommit<Completion, CompletionReply>

    /// The `imagegen_v1` function library, as shipped.
    public static let functionLibrary: RedisFunctionLibrary = {
        guard let url = Bundle.module.url(forResource: "imagegen", withExtension: "lua", subdirectory: "Scripts"),
            let source = try? String(contentsOf: url, encoding: .utf8)
        else {
            preconditionFailure("the imagegen.lua resource is missing from the RedisQueue bundle")
        }
        return RedisFunctionLibrary(name: "imagegen_v1", source: source)
    }()

    /// The revision of the shipped library (`REVISION` in `imagegen.lua`).
    public static let libraryRevision: Int = {
        let source = functionLibrary.source
        guard let line = source.split(separator: "\n").first(where: { $0.hasPrefix("local REVISION = ") }),
            let revision = Int(line.dropFirst("local REVISION = ".count).trimmingCharacters(in: .whitespaces))
        else { preconditionFailure("imagegen.lua has no REVISION line") }
        return revision
    }()

    /// A queue named `name` (default `default`) on `pool`.
    ///
    /// `completionLinger` says how long completions that come often (many slots, a fast backend)
    /// may wait to share a call of `complete_stored`; by default they never wait. A worker passes
    /// ``GroupCommitLinger/worker(slots:)``.
    public init(
        pool: RedisPool, name: String = "default", logger: Logger = Logger(label: "imagegen.queue"),
        completionLinger: GroupCommitLinger = .none
    ) throws {
        guard QueueKeys.isValidQueueName(name) else {
            throw QueueError(.invalidConfiguration, "queue name '\(name)': 1-64 letters, digits, - or _")
        }
        self.pool = pool
        self.name = name
        self.keys = QueueKeys(queue: name)
        self.library = RedisJobQueue.functionLibrary
        self.logger = logger
        // Outputs ride with their completions, but a call carries about one large image at most:
        // Redis copies every argument of a function call, and the worker's buffers stay small.
        self.completions = GroupCommit(
            maxBatch: 256, maxWeight: 1 << 20, weight: \.outputBytes, linger: completionLinger
        ) {
            [library, keys, pool] batch in
            try await RedisJobQueue.completeMany(batch, library: library, prefix: keys.prefix, pool: pool)
        }
    }

    /// Closes the blocking connection (the pool belongs to the caller).
    public func close() {
        blocking.withLock { connection in
            connection?.close()
            connection = nil
        }
        webhookBlocking.withLock { connection in
            connection?.close()
            connection = nil
        }
    }

    // MARK: Setup

    /// Makes sure the server runs this library's revision or a newer one (done once by the first call).
    public func loadFunctions() async throws {
        try await mapErrors {
            _ = try await library.upgrade(
                on: pool, revisionFunction: "imagegen_v1_revision", revision: RedisJobQueue.libraryRevision)
        }
        libraryChecked.store(true, ordering: .relaxed)
    }

    /// Writes queue-wide settings; every worker and producer call uses them from then on.
    @discardableResult
    public func configure(_ settings: QueueSettings?) async throws -> [String: String] {
        let reply = try await call("configure", (settings?.arguments ?? []).map { RedisArgument($0) })
        return RedisJobQueue.pairs(reply)
    }

    // MARK: Producer

    /// The result of an enqueue.
    public struct EnqueueResult: Sendable, Equatable {
        public var jobID: String
        /// False when the idempotency key already named a job: `jobID` is that job.
        public var created: Bool
    }

    /// Enqueues a job. With an idempotency key, enqueueing again returns the first job's id.
    public func enqueue(_ spec: JobSpec, idempotencyKey: String? = nil, delay: Duration? = nil) async throws
        -> EnqueueResult
    {
        try spec.validate()
        return try await enqueue(json: spec.canonicalJSON(), idempotencyKey: idempotencyKey, delay: delay)
    }

    /// One job of ``enqueue(batch:)``.
    public struct BatchItem: Sendable {
        public var spec: JobSpec
        public var idempotencyKey: String?
        public var delay: Duration?

        public init(_ spec: JobSpec, idempotencyKey: String? = nil, delay: Duration? = nil) {
            self.spec = spec
            self.idempotencyKey = idempotencyKey
            self.delay = delay
        }
    }

    /// Enqueues many jobs in one call of `imagegen_v1_enqueue_many` per 1,000 jobs: the fast path for
    /// bulk producers. Each job is enqueued atomically on its own, exactly as
    /// ``enqueue(_:idempotencyKey:delay:)`` would; the results come back in order, a refused job as
    /// its `QueueError` without affecting the others.
    ///
    /// - Throws: only when Redis cannot be reached (then any subset of the jobs may have been
    ///   enqueued: retry with idempotency keys).
    public func enqueue(batch items: [BatchItem]) async throws -> [Result<EnqueueResult, QueueError>] {
        guard !items.isEmpty else { return [] }
        if !libraryChecked.load(ordering: .relaxed) { try await loadFunctions() }
        var results = [Result<EnqueueResult, QueueError>?](repeating: nil, count: items.count)
        var arguments: [[RedisArgument]] = [[]]
        var positions: [[Int]] = [[]]
        for (index, item) in items.enumerated() {
            do throws(QueueError) {
                try item.spec.validate()
            } catch {
                results[index] = .failure(error)
                continue
            }
            if positions[positions.count - 1].count == Self.maxJobsPerCall {
                arguments.append([])
                positions.append([])
            }
            arguments[arguments.count - 1] += Self.enqueueArguments(
                item.spec.canonicalJSON(), idempotencyKey: item.idempotencyKey, delay: item.delay)
            positions[positions.count - 1].append(index)
        }
        let calls = zip(arguments, positions).filter { !$0.1.isEmpty }
        let replies = try await mapErrors {
            try await library.callBatch(
                "imagegen_v1_enqueue_many", keys: [RedisArgument(keys.prefix)], argumentLists: calls.map(\.0),
                on: pool)
        }
        for (reply, (_, indices)) in zip(replies, calls) {
            let perJob = reply.array ?? Array(repeating: reply, count: indices.count)
            for (one, index) in zip(perJob, indices) {
                results[index] = Result { () throws(QueueError) in try Self.enqueueResult(one) }
            }
        }
        return results.map { $0 ?? .failure(QueueError(.protocolError, "no reply")) }
    }

    /// The most jobs one `enqueue_many` or `complete_stored` call carries.
    static let maxJobsPerCall = 1000

    /// Enqueues raw job JSON exactly as another language would.
    public func enqueue(json: [UInt8], idempotencyKey: String? = nil, delay: Duration? = nil) async throws
        -> EnqueueResult
    {
        let reply = try await call("enqueue", Self.enqueueArguments(json, idempotencyKey: idempotencyKey, delay: delay))
        return try Self.enqueueResult(reply)
    }

    static func enqueueArguments(_ json: [UInt8], idempotencyKey: String?, delay: Duration?) -> [RedisArgument] {
        [RedisArgument(bytes: json), RedisArgument(idempotencyKey ?? ""), RedisArgument(Int(delay?.milliseconds ?? 0))]
    }

    static func enqueueResult(_ reply: RESPValue) throws(QueueError) -> EnqueueResult {
        if case .error(let message) = reply { throw Self.queueError(RedisError(.server, message)) }
        guard let items = reply.array, items.count == 2, let id = items[0].string, let created = items[1].int else {
            throw QueueError(.protocolError, "unexpected enqueue reply")
        }
        return EnqueueResult(jobID: id, created: created == 1)
    }

    /// Cancels a job: a queued or delayed job is removed; a running job is fenced out and its
    /// worker told to abort. Returns the state the job was in, `already_<state>`, or `missing`.
    public func cancel(jobID: String) async throws -> String {
        try await call("cancel", [RedisArgument(jobID)]).string ?? "missing"
    }

    /// The job's record, or `nil` when it does not exist (or expired).
    public func status(jobID: String) async throws -> JobRecord? {
        let reply = try await mapErrors { try await pool.send(["HGETALL", RedisArgument(keys.job(jobID))]) }
        let fields = RedisJobQueue.pairs(reply)
        guard !fields.isEmpty else { return nil }
        return RedisJobQueue.record(fields)
    }

    /// Queue depth and health.
    public func stats() async throws -> QueueStats {
        let f = RedisJobQueue.pairs(try await call("stats", []))
        var byTier: [String: Int] = [:]
        for tier in JobSpec.Tier.allCases { byTier[tier.rawValue] = Int(f["queued_\(tier.rawValue)"] ?? "0") ?? 0 }
        return QueueStats(
            queuedByTier: byTier, delayed: Int(f["delayed"] ?? "0") ?? 0, active: Int(f["active"] ?? "0") ?? 0,
            dead: Int(f["dead"] ?? "0") ?? 0, liveWorkers: Int(f["workers"] ?? "0") ?? 0,
            oldestQueuedAgeMS: Int(f["oldest_queued_age_ms"] ?? "0") ?? 0)
    }

    // MARK: Users' data

    /// What a purge deleted.
    public struct PurgeReport: Sendable, Equatable {
        public var jobs: Int
        public var keys: Int
        public var events: Int

        public init(jobs: Int, keys: Int, events: Int) {
            self.jobs = jobs
            self.keys = keys
            self.events = events
        }
    }

    /// Deletes all of `user`'s data: every job whatever its state (a running one is fenced out
    /// and its worker told to abort), uploads, outputs, webhook deliveries, idempotency keys,
    /// history and events.
    /// Idempotent: a second purge finds nothing.
    public func purgeUser(_ user: String) async throws -> PurgeReport {
        var report = PurgeReport(jobs: 0, keys: 0, events: 0)
        var cursor = ""
        repeat {
            let reply = try await call("purge_user", [RedisArgument(user), RedisArgument(cursor), 20_000])
            guard let parts = reply.array, parts.count == 4 else {
                throw QueueError(.protocolError, "unexpected purge_user reply")
            }
            report.jobs += parts[0].int ?? 0
            report.keys += parts[1].int ?? 0
            report.events += parts[2].int ?? 0
            cursor = parts[3].string ?? ""
        } while !cursor.isEmpty
        return report
    }

    /// Deletes one job like ``purgeUser(_:)`` does; returns the keys deleted, or `nil` when the job
    /// does not exist.
    public func deleteJob(jobID: String) async throws -> Int? {
        let deleted = try await call("delete_job", [RedisArgument(jobID)]).int ?? -1
        return deleted < 0 ? nil : deleted
    }

    /// The user's jobs, newest first (at most `limit`), as long as the retention keeps them.
    public func history(user: String, limit: Int = 50) async throws -> [JobRecord] {
        let key = "\(keys.prefix):u:\(user):jobs"
        let ids = try await mapErrors {
            try await pool.send(["ZREVRANGE", RedisArgument(key), 0, RedisArgument(max(0, limit - 1))])
        }
        var records: [JobRecord] = []
        for id in ids.array?.compactMap(\.string) ?? [] {
            if let record = try await status(jobID: id) { records.append(record) }
        }
        return records
    }

    /// A key of the queue that breaks the retention promise.
    public struct RetentionFinding: Sendable, Equatable {
        public var key: String
        /// The key's time to live in milliseconds; -1 when it has none.
        public var ttlMS: Int
    }

    /// Scans every key of the queue and returns those that may hold user content yet have no TTL
    /// or one longer than `retention` (default: the queue's setting). Counters, settings and
    /// scheduler state hold no user content and are not reported.
    public func retentionAudit(retention: Duration? = nil) async throws -> [RetentionFinding] {
        let limit = Int(
            (try await retention.asyncOr { QueueSettings(current: try await configure(nil)).retention }).milliseconds)
        let exempt: Set<String> = ["seq", "fence", "config", "sched", "wake", "gcra", "throttle", "wh:default_url"]
            .reduce(
                into: []
            ) {
                $0.insert("\(keys.prefix):\($1)")
            }
        var findings: [RetentionFinding] = []
        var cursor = "0"
        repeat {
            let reply = try await mapErrors {
                try await pool.send([
                    "SCAN", RedisArgument(cursor), "MATCH", RedisArgument("\(keys.prefix):*"), "COUNT", 1000,
                ])
            }
            guard let parts = reply.array, parts.count == 2 else { break }
            cursor = parts[0].string ?? "0"
            let found = (parts[1].array ?? []).compactMap(\.string).filter { !exempt.contains($0) }
            let ttls = try await mapErrors { try await pool.pipeline(found.map { ["PTTL", RedisArgument($0)] }) }
            for (key, ttl) in zip(found, ttls) {
                let value = ttl.int ?? -2
                if value == -2 { continue }  // expired between SCAN and PTTL
                if value < 0 || value > limit { findings.append(RetentionFinding(key: key, ttlMS: value)) }
            }
        } while cursor != "0"
        return findings
    }

    // MARK: Dead letters

    /// Dead jobs, newest first.
    public func deadJobs(limit: Int = 100) async throws -> [JobRecord] {
        let reply = try await mapErrors {
            try await pool.send(["ZREVRANGE", RedisArgument(keys.dead), 0, RedisArgument(limit - 1)])
        }
        var records: [JobRecord] = []
        for id in reply.array?.compactMap(\.string) ?? [] {
            if let record = try await status(jobID: id) { records.append(record) }
        }
        return records
    }

    /// Gives a dead job a fresh set of attempts. Returns false when it is not dead.
    public func requeueDead(jobID: String) async throws -> Bool {
        try await call("dlq_requeue", [RedisArgument(jobID)]).int == 1
    }

    /// Deletes a dead job. Returns false when it is not dead.
    public func deleteDead(jobID: String) async throws -> Bool {
        try await call("dlq_delete", [RedisArgument(jobID)]).int == 1
    }

    // MARK: Worker side (QueueDriver)

    public func claim(workerID: String, limit: Int) async throws -> ClaimResult {
        try await claimResult(from: try await call("claim", [RedisArgument(workerID), RedisArgument(limit)]))
    }

    /// Reads claim's reply (the wait hint, then id, token, attempt, recoveries and spec JSON per job).
    /// A job whose JSON cannot be read is failed for good: enqueue validated it, so a producer wrote
    /// the keys by hand.
    private func claimResult(from reply: RESPValue) async throws -> ClaimResult {
        guard let items = reply.array, let hint = items.first?.int else {
            throw QueueError(.protocolError, "unexpected claim reply")
        }
        var jobs: [ClaimedJob] = []
        var rejected = 0
        var index = 1
        while index + 4 < items.count {
            let id = items[index].string ?? ""
            let lease = Lease(
                jobID: id, token: items[index + 1].string ?? "", attempt: items[index + 2].int ?? 1,
                recoveries: items[index + 3].int ?? 0)
            index += 5
            do {
                let spec = try JobSpec.decode(json: items[index - 1].bytes ?? [])
                jobs.append(ClaimedJob(lease: lease, spec: spec))
            } catch {
                rejected += 1
                _ = try? await fail(
                    lease,
                    failure: JobFailure(
                        code: "invalid_job", message: "the job JSON could not be read", disposition: .terminal))
            }
        }
        return ClaimResult(jobs: jobs, rejected: rejected, nextDueIn: hint >= 0 ? .milliseconds(hint) : nil)
    }

    public func waitForWork(timeout: Duration) async throws {
        _ = try await mapErrors {
            try await blockingConnection().sendBlocking(blockingWait(timeout), timeout: timeout)
        }
    }

    /// Waits on the wake-up list with the claim pipelined behind the wait on the same connection:
    /// Redis runs the claim the moment the wait returns, so a waiting worker's pickup costs one
    /// round trip, not two.
    public func waitForWork(timeout: Duration, thenClaim limit: Int, workerID: String) async throws -> ClaimResult {
        if !libraryChecked.load(ordering: .relaxed) { try await loadFunctions() }
        let claim: RedisCommand = [
            "FCALL", "imagegen_v1_claim", 1, RedisArgument(keys.prefix), RedisArgument(workerID), RedisArgument(limit),
        ]
        let replies = try await mapErrors {
            try await blockingConnection().pipelineBlocking([blockingWait(timeout), claim], timeout: timeout)
        }
        guard replies.count == 2 else { throw QueueError(.protocolError, "unexpected wait reply") }
        if case .error(let message) = replies[1] {
            // The library went missing (a restarted server): load it and claim the usual way.
            if message.contains("Function not found") { return try await self.claim(workerID: workerID, limit: limit) }
            throw Self.queueError(RedisError(.server, message))
        }
        return try await claimResult(from: replies[1])
    }

    /// The worker's blocking connection, made on first use.
    private func blockingConnection() -> RedisConnection {
        blocking.withLock { connection in
            if let connection { return connection }
            let made = pool.makeBlockingConnection()
            connection = made
            return made
        }
    }

    /// `BLPOP` on the wake-up list for `timeout` (in seconds as a decimal; 0 would block forever).
    private func blockingWait(_ timeout: Duration) -> RedisCommand {
        let seconds = max(0.01, Double(timeout.milliseconds) / 1000)
        return ["BLPOP", RedisArgument(keys.wake), RedisArgument(String(format: "%.3f", seconds))]
    }

    public func heartbeat(workerID: String, leases: [Lease]) async throws -> [String] {
        var arguments = [RedisArgument(workerID)]
        for lease in leases {
            arguments.append(RedisArgument(lease.jobID))
            arguments.append(RedisArgument(lease.token))
        }
        return try await call("heartbeat", arguments).array?.compactMap(\.string) ?? []
    }

    public func progress(_ lease: Lease, stage: String, detail: String = "") async throws {
        _ = try await call(
            "progress",
            [RedisArgument(lease.jobID), RedisArgument(lease.token), RedisArgument(stage), RedisArgument(detail)])
    }

    /// Records the result. Completions from many jobs at once share one `complete_many` call: one
    /// goes at once, and those that arrive while it is on the wire go together in the next.
    public func complete(_ lease: Lease, result: JobResult) async throws {
        _ = try await complete(lease, result: result, thenClaim: 0, workerID: "")
    }

    /// Records the result and claims up to `limit` jobs for `workerID` in the same call of
    /// `complete_stored` (shared with other completions, as ``complete(_:result:)``).
    public func complete(_ lease: Lease, result: JobResult, thenClaim limit: Int, workerID: String) async throws
        -> ClaimResult
    {
        try await complete(
            lease, result: result, outputs: [], ttl: .milliseconds(1), thenClaim: limit, workerID: workerID)
    }

    /// Stores the outputs under ``QueueKeys/blobPrefix`` (where a ``RedisBlobStore`` on the same
    /// server and prefix reads them), records the result and claims up to `limit` jobs for
    /// `workerID`, all in one call of `complete_stored` shared with other completions. The outputs
    /// are written only if the lease holds.
    public func complete(
        _ lease: Lease, result: JobResult, outputs: [JobOutput], ttl: Duration, thenClaim limit: Int,
        workerID: String
    ) async throws -> ClaimResult {
        var stored = [RedisArgument(Int(max(1, ttl.milliseconds))), RedisArgument(outputs.count)]
        for output in outputs { stored += [RedisArgument(output.key), RedisArgument(bytes: output.bytes)] }
        let reply = try await completions.submit(
            Completion(
                arguments: [
                    RedisArgument(lease.jobID), RedisArgument(lease.token),
                    RedisArgument(bytes: result.canonicalJSON()),
                ], outputs: stored, workerID: workerID, claim: max(0, limit)))
        if case .error(let message) = reply.result { throw Self.queueError(RedisError(.server, message)) }
        return try await claimResult(from: .array([.integer(-1)] + reply.claimed))
    }

    /// One completion waiting for `complete_stored`: its arguments, its outputs (time to live,
    /// count, then key and bytes of each), and the jobs to claim after it.
    struct Completion: Sendable {
        var arguments: [RedisArgument]
        var outputs: [RedisArgument]
        var workerID: String
        var claim: Int

        /// The bytes of the outputs, which bound a batch.
        var outputBytes: Int { outputs.reduce(0) { $0 + $1.bytes.count } }
    }

    /// A completion's reply: 1 or the error, and the claimed jobs (five values each) that are its.
    struct CompletionReply: Sendable {
        var result: RESPValue
        var claimed: [RESPValue]
    }

    /// Sends one batch of completions. The claims go under the first completion's worker id; a
    /// completion from another worker of this process (rare) claims nothing this time. Only
    /// completions that went through claim: the claimed jobs are dealt out to them in order.
    static func completeMany(
        _ batch: [Completion], library: RedisFunctionLibrary, prefix: String, pool: RedisPool
    ) async throws -> [CompletionReply] {
        let workerID = batch.first?.workerID ?? ""
        let wants = batch.map { $0.workerID == workerID ? $0.claim : 0 }
        var arguments = [RedisArgument(workerID)]
        for (completion, want) in zip(batch, wants) {
            arguments += completion.arguments + [RedisArgument(want)] + completion.outputs
        }
        let reply = try await mapErrors {
            try await library.call(
                "imagegen_v1_complete_stored", keys: [RedisArgument(prefix)], arguments: arguments, on: pool)
        }
        guard let parts = reply.array, parts.count == 2, let results = parts[0].array, results.count == batch.count,
            let claim = parts[1].array
        else {
            throw QueueError(.protocolError, "unexpected complete_stored reply")
        }
        // Claimed jobs in order, five values each after the wait hint.
        var claimed = claim.dropFirst()
        return zip(results, wants).map { result, want in
            guard result.int == 1 else { return CompletionReply(result: result, claimed: []) }
            let mine = Array(claimed.prefix(5 * want))
            claimed = claimed.dropFirst(mine.count)
            return CompletionReply(result: result, claimed: mine)
        }
    }

    /// Reports a failed attempt. A failure with a ``BackendSignal`` records it for every worker
    /// first (``throttle(_:)``); a requeue with a signal hands the job back at once, keeping its
    /// place, and the claims of every worker hold it back until the pause or breaker ends.
    public func fail(_ lease: Lease, failure: JobFailure) async throws -> JobState {
        let mode: String
        let delay: Duration
        let spend: String
        switch failure.disposition {
        case .terminal: (mode, delay, spend) = ("terminal", .zero, "1")
        case .retry(let after): (mode, delay, spend) = ("retry", after, "1")
        case .requeue(let after):
            if let signal = failure.signal {
                _ = try await call(
                    "throttle",
                    Self.signalArguments(signal) + [
                        RedisArgument(lease.jobID), RedisArgument(lease.token), RedisArgument(failure.code),
                        RedisArgument(failure.message),
                    ])
                return .queued
            }
            (mode, delay, spend) = ("retry", after, "0")
        }
        if let signal = failure.signal { try await throttle(signal) }
        let reply = try await call(
            "fail",
            [
                RedisArgument(lease.jobID), RedisArgument(lease.token), RedisArgument(failure.code),
                RedisArgument(failure.message), RedisArgument(mode), RedisArgument(Int(delay.milliseconds)),
                RedisArgument(spend), RedisArgument(failure.categories.joined(separator: ",")),
            ])
        return reply.string.flatMap(JobState.init(rawValue:)) ?? .failed
    }

    // MARK: Backend throttling

    /// Corrects the token budget by what the provider billed for the job (no-op without one).
    public func recordUsage(_ lease: Lease, tokens: Int) async throws {
        _ = try await call("usage", [RedisArgument(lease.jobID), RedisArgument(max(0, tokens))])
    }

    /// Records what a backend answer says about the provider for every worker's claim to obey: a
    /// shared pause (rate limit, 503), the adaptive factor, or the quota breaker.
    @discardableResult
    public func throttle(_ signal: BackendSignal) async throws -> BackendState {
        _ = try await call("throttle", Self.signalArguments(signal))
        return try await backendState()
    }

    /// The backend's shared state: pause, quota breaker and adaptive factor.
    public func backendState() async throws -> BackendState {
        BackendState(fields: RedisJobQueue.pairs(try await call("backend_state", [])))
    }

    private static func signalArguments(_ signal: BackendSignal) -> [RedisArgument] {
        [RedisArgument(signal.kind.rawValue), RedisArgument(signal.retryAfter.map { Int($0.milliseconds) } ?? -1)]
    }

    public func status(of jobID: String) async throws -> JobState? {
        let reply = try await mapErrors { try await pool.send(["HGET", RedisArgument(keys.job(jobID)), "state"]) }
        return reply.string.flatMap(JobState.init(rawValue:))
    }

    public func release(_ lease: Lease) async throws {
        _ = try await call("release", [RedisArgument(lease.jobID), RedisArgument(lease.token)])
    }

    // MARK: Events

    /// Events after stream id `after` (`0` for all kept, `$` for only new ones), waiting up to
    /// `block` for the first when there are none yet.
    public func readEvents(
        after: String, count: Int = 100, block: Duration? = nil, on connection: RedisConnection? = nil
    )
        async throws -> [JobEvent]
    {
        var command: RedisCommand = ["XREAD", "COUNT", RedisArgument(count)]
        if let block { command += ["BLOCK", RedisArgument(Int(max(1, block.milliseconds)))] }
        command += ["STREAMS", RedisArgument(keys.events), RedisArgument(after)]
        let reply: RESPValue
        if let block, let connection {
            reply = try await mapErrors { try await connection.sendBlocking(command, timeout: block) }
        } else {
            reply = try await mapErrors { try await pool.send(command) }
        }
        guard let streams = reply.array, let first = streams.first?.array, first.count == 2,
            let entries = first[1].array
        else { return [] }
        return entries.compactMap(RedisJobQueue.event)
    }

    /// Follows the event stream from `after` (default: only new events), resuming by itself after
    /// a lost connection without losing or repeating events (it re-reads from the last id seen).
    public func followEvents(after: String = "$") -> AsyncThrowingStream<JobEvent, Error> {
        let connection = pool.makeBlockingConnection()
        let queue = self
        return AsyncThrowingStream { continuation in
            let task = Task {
                var last = after
                if last == "$" {
                    // Pin "now" to a concrete id so a reconnect cannot skip events.
                    let info = try? await queue.pool.send([
                        "XREVRANGE", RedisArgument(queue.keys.events), "+", "-", "COUNT", "1",
                    ])
                    last = info?.array?.first?.array?.first?.string ?? "0"
                }
                var backoff: Duration = .milliseconds(50)
                while !Task.isCancelled {
                    do {
                        let events = try await queue.readEvents(
                            after: last, count: 500, block: .seconds(5), on: connection)
                        backoff = .milliseconds(50)
                        for event in events {
                            last = event.id
                            continuation.yield(event)
                        }
                    } catch let error as QueueError where error.isRetryable {
                        try? await Task.sleep(for: backoff)
                        backoff = min(backoff * 2, .seconds(2))
                    } catch {
                        if !Task.isCancelled { continuation.finish(throwing: error) }
                        break
                    }
                }
                connection.close()
                continuation.finish()
            }
            continuation.onTermination = { _ in
                task.cancel()
                connection.close()
            }
        }
    }

    // MARK: Plumbing

    func call(_ function: String, _ arguments: [RedisArgument]) async throws -> RESPValue {
        if !libraryChecked.load(ordering: .relaxed) { try await loadFunctions() }
        return try await mapErrors {
            try await library.call(
                "imagegen_v1_\(function)", keys: [RedisArgument(keys.prefix)], arguments: arguments, on: pool)
        }
    }

    func mapErrors<T>(_ body: () async throws -> T) async throws -> T {
        try await Self.mapErrors(body)
    }

    static func mapErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RedisError {
            if error.code == .canceled { throw CancellationError() }
            throw Self.queueError(error)
        }
    }

    /// A Redis error as a queue error: the functions' `IMAGEGEN <code> <message>` replies keep their code.
    static func queueError(_ error: RedisError) -> QueueError {
        if error.code == .server, error.message.hasPrefix("IMAGEGEN ") {
            let rest = error.message.dropFirst("IMAGEGEN ".count)
            let parts = rest.split(separator: " ", maxSplits: 1)
            let code = QueueError.Code(rawValue: String(parts.first ?? "")) ?? .protocolError
            return QueueError(code, parts.count > 1 ? String(parts[1]) : String(rest))
        }
        return QueueError(error.isRetryable ? .unavailable : .protocolError, error.description)
    }

    static func pairs(_ reply: RESPValue) -> [String: String] {
        guard let items = reply.array else { return [:] }
        var out: [String: String] = [:]
        var index = 0
        while index + 1 < items.count {
            if let key = items[index].string { out[key] = items[index + 1].string ?? "" }
            index += 2
        }
        return out
    }

    static func record(_ f: [String: String]) -> JobRecord {
        func int64(_ key: String) -> Int64? { f[key].flatMap { Int64($0) } }
        func nonEmpty(_ key: String) -> String? { f[key].flatMap { $0.isEmpty ? nil : $0 } }
        let result = nonEmpty("result").flatMap { try? JSONDecoder().decode(JobResult.self, from: Data($0.utf8)) }
        return JobRecord(
            id: f["id"] ?? "", state: JobState(rawValue: f["state"] ?? "") ?? .queued, user: f["user"] ?? "",
            tier: f["tier"] ?? "", kind: f["kind"] ?? "", attempts: Int(f["attempts"] ?? "0") ?? 0,
            recoveries: Int(f["recoveries"] ?? "0") ?? 0, createdMS: int64("created_ms") ?? 0,
            updatedMS: int64("updated_ms") ?? 0, startedMS: int64("started_ms"), finishedMS: int64("finished_ms"),
            stage: nonEmpty("stage"), errorCode: nonEmpty("error_code"), errorMessage: nonEmpty("error_message"),
            deadReason: nonEmpty("dead_reason"), result: result)
    }

    static func event(_ entry: RESPValue) -> JobEvent? {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string else { return nil }
        var fields = pairs(parts[1])
        let type = fields.removeValue(forKey: "type") ?? ""
        let job = fields.removeValue(forKey: "job") ?? ""
        let user = fields.removeValue(forKey: "user") ?? ""
        let tier = fields.removeValue(forKey: "tier") ?? ""
        let at = Int64(fields.removeValue(forKey: "at") ?? "0") ?? 0
        return JobEvent(id: id, type: type, jobID: job, user: user, tier: tier, atMS: at, fields: fields)
    }
}

extension RedisJobQueue: BlockingLeaseRenewal {
    public func heartbeatBlocking(workerID: String, leases: [Lease]) throws -> [String] {
        var command: RedisCommand = [
            "FCALL", "imagegen_v1_heartbeat", 1, RedisArgument(keys.prefix), RedisArgument(workerID),
        ]
        for lease in leases {
            command.append(RedisArgument(lease.jobID))
            command.append(RedisArgument(lease.token))
        }
        let connection = pool.connection
        do {
            return try connection.sendAndWait(command).array?.compactMap(\.string) ?? []
        } catch let error as RedisError where error.code == .server && error.message.contains("Function not found") {
            _ = try connection.sendAndWait(["FUNCTION", "LOAD", "REPLACE", RedisArgument(library.source)])
            return try connection.sendAndWait(command).array?.compactMap(\.string) ?? []
        }
    }

    public func unregisterBlocking(workerID: String) throws {
        _ = try pool.connection.sendAndWait(["ZREM", RedisArgument("\(keys.prefix):workers"), RedisArgument(workerID)])
    }

    /// Ids of running jobs canceled through ``cancel(jobID:)``, from the queue's cancel channel.
    public func canceledJobs() -> AsyncStream<String> {
        let subscriber = RedisSubscriber(
            configuration: pool.configuration, channels: [keys.cancelChannel], logger: logger)
        return AsyncStream { continuation in
            let task = Task {
                for await event in subscriber.events {
                    if case .message(_, let payload) = event {
                        continuation.yield(String(decoding: payload, as: UTF8.self))
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in
                subscriber.close()
                task.cancel()
            }
        }
    }
}

extension Optional {
    fileprivate func asyncOr(_ fallback: () async throws -> Wrapped) async rethrows -> Wrapped {
        if let value = self { return value }
        return try await fallback()
    }
}
