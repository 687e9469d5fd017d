import Backends
import Foundation
import ImageIngest
import JobQueue
import Logging
import RedisClient
import RedisQueue
import Storage
import Synchronization
import Testing
import Worker

@Suite("Privacy: purge, delete, history, retention audit, logs")
struct PrivacyTests {
    /// Every value stored under the queue's keys, as text, with the key names.
    static func dump(_ fixture: QueueFixture) async throws -> String {
        var text = ""
        for key in try await fixture.keys() {
            text += key + "\n"
            let type = try await fixture.pool.send("TYPE", key).string ?? ""
            let reply: RESPValue
            switch type {
            case "string": reply = try await fixture.pool.send("GET", key)
            case "hash": reply = try await fixture.pool.send("HGETALL", key)
            case "zset": reply = try await fixture.pool.send("ZRANGE", key, 0, -1)
            case "list": reply = try await fixture.pool.send("LRANGE", key, 0, -1)
            case "stream": reply = try await fixture.pool.send("XRANGE", key, "-", "+")
            case "set": reply = try await fixture.pool.send("SMEMBERS", key)
            default: continue
            }
            text += flatten(reply) + "\n"
        }
        return text
    }

    static func flatten(_ value: RESPValue) -> String {
        switch value {
        case .array(let items): return items.map(flatten).joined(separator: " ")
        case .bulk(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .status(let text), .error(let text): return text
        case .integer(let number): return String(number)
        case .null: return ""
        }
    }

    @Test("purge-user deletes every trace of the user in every state; other users are untouched")
    func purgeUser() async throws {
        var settings = QueueSettings()
        settings.maxAttempts = 1
        settings.userInFlightCap = 0
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let victim = "victim-\(UUID().uuidString.prefix(8))"
        let marker = Array("UPLOAD-OF-\(victim)".utf8)
        let queue = fixture.queue

        try await fixture.blobs.put("upload:v1", marker, ttl: .seconds(600))
        try await fixture.blobs.put("upload:b1", Array("bystander upload".utf8), ttl: .seconds(600))
        let bystander = try await queue.enqueue(JobSpec(user: "bystander", prompt: "keep me"), idempotencyKey: "b-1")
            .jobID
        // One job of the victim per state.
        let succeeded = try await queue.enqueue(JobSpec(user: victim, prompt: "p1"), idempotencyKey: "v-1").jobID
        let failed = try await queue.enqueue(JobSpec(user: victim, prompt: "p2")).jobID
        let dead = try await queue.enqueue(JobSpec(user: victim, prompt: "p3")).jobID
        let active = try await queue.enqueue(JobSpec(user: victim, kind: .edit, prompt: "p4", inputs: ["upload:v1"]))
            .jobID
        let claimed = try await queue.claim(workerID: "w", limit: 10).jobs
        func lease(_ id: String) throws -> Lease { try #require(claimed.first { $0.lease.jobID == id }).lease }
        try await fixture.blobs.put(BlobKey.output(jobID: succeeded, index: 0), marker, ttl: .seconds(600))
        try await queue.complete(try lease(succeeded), result: emptyResult)
        _ = try await queue.fail(
            try lease(failed), failure: JobFailure(code: "x", message: "x", disposition: .terminal))
        _ = try await queue.fail(
            try lease(dead), failure: JobFailure(code: "x", message: "x", disposition: .retry(after: .zero)))
        try await queue.complete(try lease(bystander), result: emptyResult)
        let delayed = try await queue.enqueue(JobSpec(user: victim, prompt: "p5"), delay: .seconds(60)).jobID
        let queued = try await queue.enqueue(JobSpec(user: victim, tier: .pro, prompt: "p6")).jobID
        #expect(try await queue.status(jobID: dead)?.state == .dead)
        #expect(try await Self.dump(fixture).contains(victim))

        let cancellations = queue.canceledJobs()
        var heard = cancellations.makeAsyncIterator()
        try await Task.sleep(for: .milliseconds(200))
        let report = try await queue.purgeUser(victim)
        #expect(report.jobs == 6)
        #expect(report.events > 0)
        #expect(await heard.next() == active)  // the running job's worker is told to stop

        let after = try await Self.dump(fixture)
        #expect(!after.contains(victim), "the victim's id is still stored")
        #expect(!after.contains("UPLOAD-OF-"), "the victim's bytes are still stored")
        for id in [succeeded, failed, dead, active, delayed, queued] {
            #expect(try await queue.status(jobID: id) == nil)
        }
        #expect(try await fixture.blobs.get(BlobKey.output(jobID: succeeded, index: 0)) == nil)
        // The bystander keeps everything, and the queue keeps working.
        #expect(try await queue.status(jobID: bystander)?.state == .succeeded)
        #expect(try await fixture.blobs.get("upload:b1") != nil)
        #expect(after.contains("bystander"))
        #expect(
            try await queue.enqueue(JobSpec(user: "bystander", prompt: "again"), idempotencyKey: "b-1").created == false
        )
        #expect(try await queue.stats().active == 0)
        // Idempotent.
        #expect(try await queue.purgeUser(victim) == .init(jobs: 0, keys: 0, events: 0))
    }

    @Test("a running job purged mid-flight cannot leave its outputs behind")
    func purgeMidFlight() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let victim = "victim-\(UUID().uuidString.prefix(8))"
        let backend = StubbornBackend(delay: .milliseconds(600))
        let worker = RunningWorker(queue: fixture.queue, blobs: fixture.blobs, backend: backend)
        let id = try await fixture.queue.enqueue(JobSpec(user: victim, prompt: "mid-flight")).jobID
        try await fixture.waitForEvent(id, type: "progress")
        _ = try await fixture.queue.purgeUser(victim)
        // The backend ignores cancellation and returns an image after its delay; whatever the
        // worker does with it, nothing of the job may remain once it has finished.
        #expect(try await eventually(timeout: .seconds(10)) { backend.finished })
        try await Task.sleep(for: .milliseconds(300))
        try await worker.stop()
        let after = try await Self.dump(fixture)
        #expect(!after.contains(victim))
        #expect(try await fixture.blobs.get(BlobKey.output(jobID: id, index: 0)) == nil)
        #expect(try await fixture.queue.status(jobID: id) == nil)
    }

    @Test("delete-job removes one job with its uploads and outputs")
    func deleteJob() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        try await fixture.blobs.put("upload:one", [1, 2, 3], ttl: .seconds(60))
        let id = try await fixture.queue.enqueue(
            JobSpec(user: "u", kind: .edit, prompt: "x", inputs: ["upload:one"]), idempotencyKey: "k"
        ).jobID
        let other = try await fixture.queue.enqueue(JobSpec(user: "u", prompt: "y")).jobID
        #expect(try await fixture.queue.deleteJob(jobID: id) != nil)
        #expect(try await fixture.queue.status(jobID: id) == nil)
        #expect(try await fixture.blobs.get("upload:one") == nil)
        #expect(try await fixture.queue.deleteJob(jobID: id) == nil)
        #expect(try await fixture.queue.history(user: "u").map(\.id) == [other])
        // The idempotency key is free again.
        #expect(try await fixture.queue.enqueue(JobSpec(user: "u", prompt: "x"), idempotencyKey: "k").created)
    }

    @Test("history lists a user's jobs newest first")
    func history() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        var ids: [String] = []
        for index in 0..<5 {
            ids.append(try await fixture.queue.enqueue(JobSpec(user: "h", prompt: "p\(index)")).jobID)
            try await Task.sleep(for: .milliseconds(2))
        }
        _ = try await fixture.queue.enqueue(JobSpec(user: "someone-else", prompt: "q"))
        #expect(try await fixture.queue.history(user: "h", limit: 3).map(\.id) == Array(ids.reversed().prefix(3)))
    }

    @Test("the retention audit is clean after a full run, and finds a key without a TTL")
    func retentionAudit() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let worker = RunningWorker(
            queue: fixture.queue, blobs: fixture.blobs,
            backend: SimulatedBackend(configuration: .init(latency: .milliseconds(10))))
        var ids: [String] = []
        for index in 0..<6 {
            ids.append(try await fixture.queue.enqueue(spec("u\(index % 2)"), idempotencyKey: "r\(index)").jobID)
        }
        for id in ids { _ = try await fixture.waitUntilFinished(id) }
        try await worker.stop()
        #expect(try await fixture.queue.retentionAudit() == [])
        let planted = "\(fixture.queue.keys.prefix):job:planted"
        _ = try await fixture.pool.send("HSET", planted, "user", "x")
        #expect(try await fixture.queue.retentionAudit().map(\.key) == [planted])
    }

    @Test("no prompt appears in any log line at any level, through success, failure and refusal")
    func logsHoldNoPrompts() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let recorder = LogRecorder()
        var logger = Logger(label: "imagegen.test.logs") { _ in recorder }
        logger.logLevel = .trace
        let secret = "SECRET-PROMPT-\(UUID().uuidString)"
        let backend = SimulatedBackend(configuration: .init(latency: .milliseconds(5), failureRate: 0.3, seed: 3))
        let worker = RunningWorker(queue: fixture.queue, blobs: fixture.blobs, backend: backend, logger: logger)
        try await fixture.blobs.put("upload:bad", Array("GIF89a-not-really".utf8), ttl: .seconds(60))
        var ids: [String] = []
        let rawUser = "RAWUSER-\(UUID().uuidString.prefix(8))"
        for index in 0..<8 {
            let job = JobSpec(user: "\(rawUser)-\(index)", prompt: "\(secret) \(index)")
            ids.append(try await fixture.queue.enqueue(job).jobID)
        }
        let edit = JobSpec(user: rawUser, kind: .edit, prompt: secret, inputs: ["upload:bad"])
        ids.append(try await fixture.queue.enqueue(edit).jobID)
        for id in ids { _ = try await fixture.waitUntilFinished(id) }
        try await worker.stop()
        let lines = recorder.lines
        #expect(lines.count > ids.count)  // the worker did log
        #expect(lines.allSatisfy { !$0.contains("SECRET-PROMPT") })
        #expect(lines.allSatisfy { !$0.contains("RAWUSER-") })  // users appear only hashed
        #expect(lines.contains { $0.contains("user.hash") })
        // Every line about one job names it, its attempt and its user's hash.
        let jobLines = lines.filter {
            $0.contains("job started") || $0.contains("job succeeded") || $0.contains("job attempt failed")
        }
        #expect(jobLines.count >= ids.count * 2)
        #expect(jobLines.allSatisfy { $0.contains("job.id") && $0.contains("job.attempt") && $0.contains("user.hash") })
    }
}

/// A backend that ignores cancellation: it returns an image after its delay whatever happens.
final class StubbornBackend: ImageModelBackend, Sendable {
    let delay: Duration
    private let done = Mutex(false)
    var name: String { "stubborn" }
    var finished: Bool { done.withLock { $0 } }

    init(delay: Duration) { self.delay = delay }

    func generate(_ request: ImageRequest) async throws -> ImageResponse {
        let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        await withCheckedContinuation { continuation in
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { continuation.resume() }
        }
        let png = try PNGCodec.encode(RGBAImage(width: 4, height: 4, red: 9))
        done.withLock { $0 = true }
        return ImageResponse(images: [GeneratedImage(bytes: png, format: "png", width: 4, height: 4)])
    }
}

/// Keeps every log line with its metadata, as text, in a store shared by all its copies.
struct LogRecorder: LogHandler {
    final class Store: Sendable {
        let lines = Mutex<[String]>([])
    }

    let store = Store()
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    var lines: [String] { store.lines.withLock { $0 } }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        store.lines.withLock { $0.append("\(event.level) \(event.message) \(all)") }
    }
}
