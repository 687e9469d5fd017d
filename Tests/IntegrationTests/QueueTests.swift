import Foundation
import JobQueue
import RedisClient
import RedisQueue
import Storage
import Synchronization
import Testing

@Suite("Redis queue")
struct QueueTests {
    @Test("enqueue is idempotent on the client's key")
    func idempotentEnqueue() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let first = try await fixture.queue.enqueue(spec("u1"), idempotencyKey: "order-42")
        let again = try await fixture.queue.enqueue(spec("u1", prompt: "something else"), idempotencyKey: "order-42")
        let other = try await fixture.queue.enqueue(spec("u1"), idempotencyKey: "order-43")
        #expect(first.created)
        #expect(!again.created)
        #expect(again.jobID == first.jobID)
        #expect(other.jobID != first.jobID)
        #expect(try await fixture.queue.stats().queuedByTier["standard"] == 2)
    }

    @Test("batch enqueue: one pipelined write, results in order, a refused job does not affect the others")
    func batchEnqueue() async throws {
        var settings = QueueSettings()
        settings.maxPayloadBytes = 2048
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        var invalid = spec("u2")
        invalid.n = 0
        let results = try await fixture.queue.enqueue(batch: [
            .init(spec("u1"), idempotencyKey: "batch-1"),
            .init(spec("u1", prompt: String(repeating: "x", count: 4000))),  // over the payload limit
            .init(invalid),  // refused before it is sent
            .init(spec("u3"), delay: .seconds(60)),
            .init(spec("u1"), idempotencyKey: "batch-1"),  // the same key: the same job
        ])
        #expect(results.count == 5)
        let first = try results[0].get()
        #expect(first.created)
        #expect(throws: QueueError.self) { try results[1].get() }
        if case .failure(let error) = results[1] { #expect(error.code == .payloadTooLarge) }
        if case .failure(let error) = results[2] {
            #expect(error.code == .invalidJob)
        } else {
            Issue.record("n = 0 was accepted")
        }
        let delayed = try results[3].get()
        #expect(delayed.created && delayed.jobID != first.jobID)
        let again = try results[4].get()
        #expect(!again.created && again.jobID == first.jobID)
        let stats = try await fixture.queue.stats()
        #expect(stats.queuedByTier["standard"] == 1)
        #expect(stats.delayed == 1)
    }

    @Test("invalid and oversized jobs are refused with clear codes, and nothing is stored")
    func refusesBadJobs() async throws {
        var settings = QueueSettings()
        settings.maxPayloadBytes = 2048
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        await #expect(throws: QueueError(.invalidJob, "tier: must be one of pro, standard, free")) {
            try await fixture.queue.enqueue(
                json: Array(#"{"version":1,"user":"u","tier":"gold","kind":"generate","prompt":"x"}"#.utf8))
        }
        await #expect(throws: QueueError(.invalidJob, "the job is not valid JSON")) {
            try await fixture.queue.enqueue(json: Array("{not json".utf8))
        }
        do {
            _ = try await fixture.queue.enqueue(spec("u1", prompt: String(repeating: "x", count: 4000)))
            Issue.record("an oversized job was accepted")
        } catch let error as QueueError {
            #expect(error.code == .payloadTooLarge)
        }
        await #expect(throws: QueueError.self) {
            try await fixture.queue.enqueue(JobSpec(user: "bad user!", prompt: "x"))
        }
        #expect(try await fixture.keys().filter { $0.contains(":job:") }.isEmpty)
    }

    @Test("fair claim: 20 users with one job each all start within the first 25 claims behind a bulk user's 500")
    func fairnessAcrossUsers() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        for index in 0..<500 { _ = try await fixture.queue.enqueue(spec("bulk", prompt: "bulk \(index)")) }
        var small: Set<String> = []
        for index in 0..<20 { small.insert(try await fixture.queue.enqueue(spec("small-\(index)")).jobID) }
        var claimedSmall = 0
        for _ in 0..<25 {
            let result = try await fixture.queue.claim(workerID: "w", limit: 1)
            #expect(result.jobs.count == 1)
            if let job = result.jobs.first, small.contains(job.lease.jobID) { claimedSmall += 1 }
        }
        #expect(claimedSmall == 20)
    }

    @Test("tiers are served by weight and the lowest tier is never starved")
    func tierWeights() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        for index in 0..<40 {
            _ = try await fixture.queue.enqueue(spec("p\(index % 4)", tier: .pro))
            _ = try await fixture.queue.enqueue(spec("f\(index % 4)", tier: .free))
        }
        var byTier: [String: Int] = [:]
        for _ in 0..<35 {
            for job in try await fixture.queue.claim(workerID: "w", limit: 1).jobs {
                byTier[job.spec.tier.rawValue, default: 0] += 1
            }
        }
        // Weights 6:1 → 30 pro and 5 free in 35 claims.
        #expect(byTier["pro"] == 30)
        #expect(byTier["free"] == 5)
    }

    @Test("per-user and global in-flight caps hold inside claim")
    func caps() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 2
        settings.globalInFlightCap = 3
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        for _ in 0..<5 { _ = try await fixture.queue.enqueue(spec("heavy")) }
        let first = try await fixture.queue.claim(workerID: "w", limit: 10)
        #expect(first.jobs.count == 2)
        #expect(first.jobs.allSatisfy { $0.spec.user == "heavy" })
        // The capped user's jobs wait; another user's job is claimable at once.
        #expect(try await fixture.queue.claim(workerID: "w", limit: 10).jobs.isEmpty)
        _ = try await fixture.queue.enqueue(spec("light"))
        _ = try await fixture.queue.enqueue(spec("light"))
        let second = try await fixture.queue.claim(workerID: "w", limit: 10)
        #expect(second.jobs.map(\.spec.user) == ["light"])  // the global cap of 3 stops the second
        // Finishing one of heavy's jobs frees a place for heavy again (global cap now 2 of 3).
        try await fixture.queue.complete(first.jobs[0].lease, result: emptyResult)
        let third = try await fixture.queue.claim(workerID: "w", limit: 10)
        #expect(third.jobs.count == 1)
    }

    @Test("fencing: a worker whose lease expired can neither complete nor fail the job")
    func fencing() async throws {
        var settings = QueueSettings()
        settings.lease = .milliseconds(300)
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("u1")).jobID
        let stale = try #require(try await fixture.queue.claim(workerID: "w1", limit: 1).jobs.first)
        try await Task.sleep(for: .milliseconds(400))
        let fresh = try #require(try await fixture.queue.claim(workerID: "w2", limit: 1).jobs.first)
        #expect(fresh.lease.jobID == id)
        #expect(fresh.lease.recoveries == 1)
        #expect(fresh.lease.attempt == 1)  // a crash recovery is not an attempt
        #expect(fresh.lease.token != stale.lease.token)

        await #expect(throws: QueueError.self) { try await fixture.queue.complete(stale.lease, result: emptyResult) }
        await #expect(throws: QueueError.self) {
            try await fixture.queue.fail(
                stale.lease, failure: JobFailure(code: "x", message: "x", disposition: .terminal))
        }
        await #expect(throws: QueueError.self) {
            try await fixture.queue.progress(stale.lease, stage: "generating", detail: "")
        }
        #expect(try await fixture.queue.heartbeat(workerID: "w1", leases: [stale.lease]) == [id])
        #expect(try await fixture.queue.heartbeat(workerID: "w2", leases: [fresh.lease]) == [])
        try await fixture.queue.complete(fresh.lease, result: emptyResult)
        #expect(try await fixture.queue.status(jobID: id)?.state == .succeeded)
    }

    @Test("a job whose workers keep dying becomes dead as poisoned")
    func poisoned() async throws {
        var settings = QueueSettings()
        settings.lease = .milliseconds(100)
        settings.maxRecoveries = 1
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("u1")).jobID
        _ = try await fixture.queue.claim(workerID: "w", limit: 1)
        try await Task.sleep(for: .milliseconds(150))
        #expect(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.count == 1)  // recovered once
        try await Task.sleep(for: .milliseconds(150))
        #expect(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.isEmpty)  // second death: poisoned
        let record = try #require(try await fixture.queue.status(jobID: id))
        #expect(record.state == .dead)
        #expect(record.deadReason == "poisoned")
        #expect(record.recoveries == 2)
    }

    @Test("a dead worker's jobs come back when its heartbeat stops, before the lease ends")
    func workerTimeout() async throws {
        var settings = QueueSettings()
        settings.lease = .seconds(60)
        settings.workerTimeout = .milliseconds(300)
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("u1")).jobID
        _ = try await fixture.queue.claim(workerID: "dies", limit: 1)
        try await Task.sleep(for: .milliseconds(400))
        let again = try await fixture.queue.claim(workerID: "lives", limit: 1)
        #expect(again.jobs.map(\.lease.jobID) == [id])
    }

    @Test("retryable failures back off, then the job is dead after max attempts; dlq requeue and delete")
    func deadLettering() async throws {
        var settings = QueueSettings()
        settings.maxAttempts = 2
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("u1")).jobID
        // A second of backoff: the claim right after the failure comes well inside it, even on a
        // machine loaded by the rest of the suite.
        let retry = JobFailure(
            code: "timeout", message: "the backend timed out", disposition: .retry(after: .seconds(1)))

        let first = try #require(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.first)
        #expect(try await fixture.queue.fail(first.lease, failure: retry) == .delayed)
        let waiting = try await fixture.queue.claim(workerID: "w", limit: 1)
        #expect(waiting.jobs.isEmpty)
        #expect((waiting.nextDueIn ?? .zero) > .zero)
        try await Task.sleep(for: .milliseconds(1050))
        // Due now: the claim itself moves it back to the queue and takes it.
        let second = try #require(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.first)
        #expect(second.lease.attempt == 2)
        #expect(try await fixture.queue.fail(second.lease, failure: retry) == .dead)

        let dead = try await fixture.queue.deadJobs()
        #expect(dead.map(\.id) == [id])
        #expect(dead.first?.deadReason == "max_attempts")
        #expect(dead.first?.errorCode == "timeout")

        #expect(try await fixture.queue.requeueDead(jobID: id))
        let third = try #require(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.first)
        #expect(third.lease.attempt == 1)
        #expect(try await fixture.queue.fail(third.lease, failure: retry) == .delayed)
        #expect(try await fixture.queue.requeueDead(jobID: id) == false)  // not dead now

        let other = try await fixture.queue.enqueue(spec("u2")).jobID
        let job = try #require(
            try await fixture.queue.claim(workerID: "w", limit: 1).jobs.first { $0.lease.jobID == other })
        let terminal = JobFailure(code: "invalid_input", message: "bad", disposition: .terminal)
        #expect(try await fixture.queue.fail(job.lease, failure: terminal) == .failed)
        #expect(try await fixture.queue.deleteDead(jobID: other) == false)
    }

    @Test("a rate-limit requeue spends no attempt")
    func requeueSpendsNoAttempt() async throws {
        var settings = QueueSettings()
        settings.maxAttempts = 1
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("u1")).jobID
        for _ in 0..<3 {
            let job = try #require(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.first)
            let slowDown = JobFailure(code: "rate_limited", message: "slow down", disposition: .requeue(after: .zero))
            #expect(try await fixture.queue.fail(job.lease, failure: slowDown) == .delayed)
        }
        #expect(try await fixture.queue.status(jobID: id)?.attempts == 0)
    }

    @Test("delayed jobs become due inside claim")
    func delayedEnqueue() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        // Long enough that a busy machine still claims early before it falls due.
        let id = try await fixture.queue.enqueue(spec("u1"), delay: .milliseconds(2000)).jobID
        #expect(try await fixture.queue.status(jobID: id)?.state == .delayed)
        let early = try await fixture.queue.claim(workerID: "w", limit: 1)
        #expect(early.jobs.isEmpty)
        #expect(early.nextDueIn != nil && early.nextDueIn! <= .milliseconds(2000))
        try await Task.sleep(for: .milliseconds(2100))
        #expect(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.map(\.lease.jobID) == [id])
    }

    @Test("cancel: a queued or delayed job is removed; a running job is fenced out and its worker told")
    func cancel() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let queued = try await fixture.queue.enqueue(spec("u1")).jobID
        let delayed = try await fixture.queue.enqueue(spec("u2"), delay: .seconds(60)).jobID
        #expect(try await fixture.queue.cancel(jobID: queued) == "queued")
        #expect(try await fixture.queue.cancel(jobID: delayed) == "delayed")
        #expect(try await fixture.queue.cancel(jobID: queued) == "already_canceled")
        #expect(try await fixture.queue.cancel(jobID: "nope") == "missing")
        #expect(try await fixture.queue.claim(workerID: "w", limit: 10).jobs.isEmpty)

        let cancellations = fixture.queue.canceledJobs()
        var iterator = cancellations.makeAsyncIterator()
        try await Task.sleep(for: .milliseconds(200))  // let the subscription settle
        let running = try await fixture.queue.enqueue(spec("u3")).jobID
        let job = try #require(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.first)
        #expect(try await fixture.queue.cancel(jobID: running) == "active")
        #expect(await iterator.next() == running)
        await #expect(throws: QueueError.self) { try await fixture.queue.complete(job.lease, result: emptyResult) }
        #expect(try await fixture.queue.status(jobID: running)?.state == .canceled)
        #expect(try await fixture.queue.stats().active == 0)
    }

    @Test("waiting for work blocks until an enqueue wakes it")
    func blockingWake() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        _ = try await fixture.queue.claim(workerID: "w", limit: 1)  // clears stale wake-ups
        let started = ContinuousClock.now
        async let woke: Void = fixture.queue.waitForWork(timeout: .seconds(10))
        try await Task.sleep(for: .milliseconds(200))
        _ = try await fixture.queue.enqueue(spec("u1"))
        try await woke
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(150))
        #expect(waited < .seconds(5))
    }

    @Test("events: one per state change, in order, from the same script")
    func events() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("u1")).jobID
        let job = try #require(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.first)
        try await fixture.queue.progress(job.lease, stage: "generating", detail: "")
        try await fixture.queue.complete(job.lease, result: emptyResult)
        let events = try await fixture.events().filter { $0.jobID == id }
        #expect(events.map(\.type) == ["queued", "started", "progress", "succeeded"])
        #expect(events.allSatisfy { $0.user == "u1" && $0.tier == "standard" })
        #expect(events[2].fields["stage"] == "generating")
    }

    @Test("every key holding user content expires within the retention")
    func retention() async throws {
        var settings = QueueSettings()
        settings.retention = .seconds(3600)
        settings.maxAttempts = 1
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        for index in 0..<6 { _ = try await fixture.queue.enqueue(spec("u\(index % 3)"), idempotencyKey: "k\(index)") }
        _ = try await fixture.queue.enqueue(spec("later"), delay: .seconds(30))
        let jobs = try await fixture.queue.claim(workerID: "w", limit: 3).jobs
        try await fixture.queue.complete(jobs[0].lease, result: emptyResult)
        _ = try await fixture.queue.fail(
            jobs[1].lease, failure: JobFailure(code: "t", message: "t", disposition: .retry(after: .zero)))
        #expect(try await fixture.queue.stats().dead == 1)
        let bad = try await fixture.keysBreakingRetention(.seconds(3600))
        #expect(bad.isEmpty, "keys without a TTL within the retention: \(bad)")
    }
}

let emptyResult = JobResult(
    outputs: [], usage: .init(images: 0, size: "64x64", model: "test"),
    durations: .init(ingestMS: 0, backendMS: 0, storeMS: 0))

@Suite("Event stream")
struct EventStreamTests {
    @Test("following events resumes after a lost connection without losing or repeating any")
    func resumeAfterDisconnect() async throws {
        let server = try await RedisServerProcess.start()  // its own server: the test drops every connection
        defer { server.terminate() }
        let fixture = try await QueueFixture(configuration: server.configuration)
        defer { fixture.close() }
        /// Enqueues, trying again once when the pool's connection was one of those dropped.
        func enqueue(_ user: String) async throws {
            do {
                _ = try await fixture.queue.enqueue(spec(user))
            } catch let error as QueueError where error.isRetryable {
                _ = try await fixture.queue.enqueue(spec(user))
            }
        }
        let received = EventCollector()
        let follower = Task {
            for try await event in fixture.queue.followEvents(after: "0") { received.append(event.id) }
        }
        defer { follower.cancel() }
        for index in 0..<20 { try await enqueue("a\(index)") }
        #expect(try await eventually { received.count == 20 })
        // Drop every other client's connection, the follower's blocking read included.
        _ = try await fixture.pool.send("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        for index in 0..<20 { try await enqueue("b\(index)") }
        #expect(try await eventually(timeout: .seconds(15)) { received.count >= 40 })
        try await Task.sleep(for: .milliseconds(100))
        let stored = try await fixture.events().map(\.id)
        #expect(received.ids == stored)
    }
}

/// Event ids seen by a follower, in order.
final class EventCollector: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ id: String) { storage.withLock { $0.append(id) } }
    var ids: [String] { storage.withLock { $0 } }
    var count: Int { ids.count }
}

@Suite("Least-privilege Redis user")
struct ACLTests {
    @Test("a worker and a producer work as the ACL user of deploy/README.md")
    func restrictedUser() async throws {
        let admin = SharedRedis.pool()
        defer { admin.close() }
        let user = "imagegen-acl-\(UUID().uuidString.prefix(8))"
        _ = try await admin.send(
            [
                "ACL", "SETUSER", RedisArgument(user), "on", ">acl-secret", "~imagegen:*", "&imagegen:*", "+@read",
                "+@write",
                "+@stream", "+@pubsub", "+@scripting", "+@connection", "+@keyspace", "-@dangerous", "+function|load",
                "+info", "+time",
            ])
        var configuration = SharedRedis.configuration
        configuration.username = user
        configuration.password = "acl-secret"
        let fixture = try await QueueFixture(configuration: configuration)
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("acl")).jobID
        let job = try #require(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.first)
        #expect(try await fixture.queue.heartbeat(workerID: "w", leases: [job.lease]).isEmpty)
        try await fixture.blobs.put(BlobKey.output(jobID: id, index: 0), [1], ttl: .seconds(60))
        try await fixture.queue.complete(job.lease, result: emptyResult)
        #expect(try await fixture.queue.stats().queuedByTier["standard"] == 0)
        #expect(try await fixture.queue.purgeUser("acl").jobs == 1)
        #expect(try await fixture.queue.retentionAudit().isEmpty)
        // Keys outside the queue's namespace stay out of reach.
        await #expect(throws: (any Error).self) { try await fixture.pool.send("GET", "elsewhere") }
        _ = try await admin.send("ACL", "DELUSER", user)
    }
}
