import JobQueue
import RedisClient
import Synchronization
import Testing

@testable import RedisQueue

/// The batched calls of the hot path: enqueue_many, complete_many (with the slot's next claim), and
/// settings cached inside the functions by revision.
@Suite("Batched queue calls")
struct BatchingTests {
    @Test("a batch of 2,500 jobs goes in calls of at most 1,000; every job is created once, in order")
    func largeBatch() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let results = try await fixture.queue.enqueue(
            batch: (0..<2_500).map { .init(spec("u\($0 % 7)"), idempotencyKey: "big-\($0)") })
        let ids = try results.map { try $0.get().jobID }
        #expect(Set(ids).count == 2_500)
        #expect(ids == ids.sorted())
        #expect(try results.allSatisfy { try $0.get().created })
        #expect(try await fixture.queue.stats().queuedByTier["standard"] == 2_500)
        // Enqueueing the same keys again names the same jobs and creates nothing.
        let again = try await fixture.queue.enqueue(
            batch: (0..<2_500).map { .init(spec("u\($0 % 7)"), idempotencyKey: "big-\($0)") })
        #expect(try again.map { try $0.get().jobID } == ids)
        #expect(try again.allSatisfy { try !$0.get().created })
    }

    @Test("completing can claim the slot's next job in the same call, fairly across users")
    func completeThenClaim() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let queue = fixture.queue
        let a1 = try await queue.enqueue(spec("a")).jobID
        let a2 = try await queue.enqueue(spec("a")).jobID
        let b1 = try await queue.enqueue(spec("b")).jobID
        let first = try #require(try await queue.claim(workerID: "w", limit: 1).jobs.first)
        #expect(first.lease.jobID == a1)
        let next = try await queue.complete(first.lease, result: emptyResult, thenClaim: 1, workerID: "w")
        // b's turn comes before a's second job.
        let second = try #require(next.jobs.first)
        #expect(next.jobs.count == 1 && second.lease.jobID == b1)
        #expect(try await queue.status(of: a1) == .succeeded)
        #expect(try await queue.status(of: b1) == .active)
        let third = try await queue.complete(second.lease, result: emptyResult, thenClaim: 1, workerID: "w")
        #expect(third.jobs.map(\.lease.jobID) == [a2])
        let last = try #require(third.jobs.first)
        // Nothing left: the completion still goes through and claims nothing.
        let none = try await queue.complete(last.lease, result: emptyResult, thenClaim: 1, workerID: "w")
        #expect(none.jobs.isEmpty)
        let events = try await fixture.events().filter { [a1, a2, b1].contains($0.jobID) }.map(\.type)
        #expect(events.filter { $0 == "started" }.count == 3 && events.filter { $0 == "succeeded" }.count == 3)
    }

    @Test("completions sent together: a stale lease fails alone, the others complete and claim")
    func concurrentCompletions() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let queue = fixture.queue
        for index in 0..<40 { _ = try await queue.enqueue(spec("u\(index % 5)")) }
        let claimed = try await queue.claim(workerID: "w", limit: 20).jobs
        #expect(claimed.count == 20)
        var stale = claimed[7].lease
        stale.token = "0"
        let leases = claimed.map(\.lease).enumerated().map { $0.offset == 7 ? stale : $0.element }
        let outcomes = await withTaskGroup(of: (Int, Result<Int, QueueError>).self) { group in
            for (index, lease) in leases.enumerated() {
                group.addTask {
                    do {
                        let next = try await queue.complete(lease, result: emptyResult, thenClaim: 1, workerID: "w")
                        return (index, .success(next.jobs.count))
                    } catch let error as QueueError {
                        return (index, .failure(error))
                    } catch {
                        return (index, .failure(QueueError(.protocolError, "\(error)")))
                    }
                }
            }
            var outcomes: [Int: Result<Int, QueueError>] = [:]
            for await (index, outcome) in group { outcomes[index] = outcome }
            return outcomes
        }
        for (index, outcome) in outcomes {
            switch outcome {
            case .success(let next):
                #expect(index != 7)
                #expect(next == 1)
            case .failure(let error):
                #expect(index == 7)
                #expect(error.code == .fenced)
            }
        }
        #expect(try await queue.status(of: claimed[7].lease.jobID) == .active)
        #expect(try await queue.status(of: claimed[0].lease.jobID) == .succeeded)
        // 19 finished and 19 more claimed: the 20 still queued less those.
        let stats = try await queue.stats()
        #expect(stats.active == 20)
        #expect(stats.queuedByTier["standard"] == 1)
    }

    @Test("outputs go with the completion: written with their TTL while the lease holds, never after it is lost")
    func outputsWithTheCompletion() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let queue = fixture.queue
        let kept = try await queue.enqueue(spec("a")).jobID
        let lost = try await queue.enqueue(spec("b")).jobID
        let claimed = try await queue.claim(workerID: "w", limit: 2).jobs
        let leases = Dictionary(uniqueKeysWithValues: claimed.map { ($0.lease.jobID, $0.lease) })
        let image = [UInt8](repeating: 7, count: 300_000) + [0, 13, 10]
        let outputs = [
            JobOutput(key: "output:\(kept):0", bytes: image), JobOutput(key: "output:\(kept):1", bytes: [1, 2, 3]),
        ]
        _ = try await queue.complete(
            try #require(leases[kept]), result: emptyResult, outputs: outputs, ttl: .seconds(600), thenClaim: 0,
            workerID: "w")
        #expect(try await queue.status(of: kept) == .succeeded)
        #expect(try await fixture.blobs.get("output:\(kept):0") == image)
        #expect(try await fixture.blobs.get("output:\(kept):1") == [1, 2, 3])
        let ttl = try await fixture.pool.send("PTTL", "\(queue.keys.blobPrefix)output:\(kept):0").int ?? -1
        #expect((590_000...600_000).contains(ttl))

        // A lease that no longer holds writes nothing.
        var stale = try #require(leases[lost])
        stale.token = "0"
        await #expect(throws: QueueError.self) {
            _ = try await queue.complete(
                stale, result: emptyResult, outputs: [JobOutput(key: "output:\(lost):0", bytes: image)],
                ttl: .seconds(600), thenClaim: 0, workerID: "w")
        }
        #expect(try await fixture.blobs.get("output:\(lost):0") == nil)
        #expect(try await queue.status(of: lost) == .active)

        // Only the job's own output keys, in order, can be written; a malformed list is refused.
        let holder = try #require(leases[lost])
        for key in ["output:\(kept):0", "output:\(lost):1", "upload:x"] {
            let error = await #expect(throws: RedisError.self) {
                _ = try await fixture.pool.send(
                    "FCALL", "imagegen_v1_complete_stored", 1, queue.keys.prefix, "w", lost, holder.token, "{}", 0,
                    1000, 1, key, "bytes")
            }
            #expect(error?.message.contains("must be output:\(lost):0") == true)
        }
        await #expect(throws: RedisError.self) {
            _ = try await fixture.pool.send(
                "FCALL", "imagegen_v1_complete_stored", 1, queue.keys.prefix, "w", lost, holder.token, "{}", 0, 1000, 2,
                "output:\(lost):0", "bytes")
        }
        #expect(try await queue.status(of: lost) == .active)
        #expect(try await fixture.blobs.get("output:\(lost):0") == nil)
    }

    @Test("complete_many, kept for other clients, still completes and claims")
    func completeManyStillWorks() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let queue = fixture.queue
        let first = try await queue.enqueue(spec("a")).jobID
        let second = try await queue.enqueue(spec("a")).jobID
        let lease = try #require(try await queue.claim(workerID: "w", limit: 1).jobs.first).lease
        #expect(lease.jobID == first)
        let reply = try await fixture.pool.send(
            "FCALL", "imagegen_v1_complete_many", 1, queue.keys.prefix, "w", first, lease.token, "{}", 1)
        #expect(reply.array?.first?.array?.first?.int == 1)
        #expect(reply.array?.last?.array?.dropFirst().first?.string == second)
        #expect(try await queue.status(of: first) == .succeeded)
        #expect(try await queue.status(of: second) == .active)
    }

    @Test("settings written after calls were made apply to the next call")
    func settingsApplyAtOnce() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 1
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let queue = fixture.queue
        for _ in 0..<5 { _ = try await queue.enqueue(spec("solo")) }
        let running = try await queue.claim(workerID: "w", limit: 5).jobs
        #expect(running.count == 1)
        #expect(try await queue.claim(workerID: "w", limit: 5).jobs.isEmpty)
        settings.userInFlightCap = 3
        try await queue.configure(settings)
        let next = try await queue.complete(
            try #require(running.first).lease, result: emptyResult, thenClaim: 5, workerID: "w")
        #expect(next.jobs.count == 3)
        settings.userInFlightCap = 0
        settings.maxPayloadBytes = 300
        try await queue.configure(settings)
        await #expect(throws: QueueError.self) {
            try await queue.enqueue(spec("solo", prompt: String(repeating: "x", count: 400)))
        }
    }
}

@Suite("Per-user cap switched on")
struct InFlightCountTests {
    @Test("a job claimed while the cap was off does not uncount one claimed after it was set")
    func countsOnlyCountedJobs() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let queue = fixture.queue
        for _ in 0..<4 { _ = try await queue.enqueue(spec("capped")) }
        let uncounted = try #require(try await queue.claim(workerID: "w", limit: 1).jobs.first)
        settings.userInFlightCap = 1
        try await queue.configure(settings)
        // One running job counts now; the one claimed before the cap does not.
        #expect(try await queue.claim(workerID: "w", limit: 5).jobs.count == 1)
        try await queue.complete(uncounted.lease, result: emptyResult)
        // Its end leaves the counted job's count alone: the user is still at its cap.
        #expect(try await queue.claim(workerID: "w", limit: 5).jobs.isEmpty)
    }
}

@Suite("Group commit")
struct GroupCommitTests {
    @Test("calls that arrive while a batch is on the wire go together in the next; errors reach their batch only")
    func batches() async throws {
        let sizes = Mutex<[Int]>([])
        let gate = Mutex<Bool>(true)
        let commit = GroupCommit<Int, Int>(maxBatch: 64) { batch in
            sizes.withLock { $0.append(batch.count) }
            // Hold the first batch until the others have queued behind it.
            while gate.withLock({ $0 }) && sizes.withLock({ $0.count }) == 1 {
                try await Task.sleep(for: .milliseconds(1))
            }
            if batch.contains(-1) { throw QueueError(.unavailable, "down") }
            return batch.map { $0 * 10 }
        }
        async let first = commit.submit(1)
        while sizes.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(1)) }
        let replies = try await withThrowingTaskGroup(of: Int.self) { group in
            for value in 2...9 { group.addTask { try await commit.submit(value) } }
            // Every one of them waits behind the first batch.
            while commit.waitingCount < 8 { try await Task.sleep(for: .milliseconds(1)) }
            gate.withLock { $0 = false }
            var replies: [Int] = []
            for try await reply in group { replies.append(reply) }
            return replies
        }
        #expect(try await first == 10)
        #expect(replies.sorted() == (2...9).map { $0 * 10 })
        #expect(sizes.withLock { $0 } == [1, 8])
        await #expect(throws: QueueError.self) { try await commit.submit(-1) }
        #expect(try await commit.submit(3) == 30)
    }
}

extension GroupCommitTests {
    @Test("a batch stops at its weight limit, but always takes one item")
    func weightLimit() async throws {
        let batches = Mutex<[[Int]]>([])
        let gate = Mutex<Bool>(true)
        let commit = GroupCommit<Int, Int>(maxBatch: 64, maxWeight: 10, weight: { $0 }) { batch in
            batches.withLock { $0.append(batch) }
            while gate.withLock({ $0 }) && batches.withLock({ $0.count }) == 1 {
                try await Task.sleep(for: .milliseconds(1))
            }
            return batch
        }
        async let first = commit.submit(1)
        while batches.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(1)) }
        let replies = try await withThrowingTaskGroup(of: Int.self) { group in
            for value in [4, 5, 3, 30, 2] {
                group.addTask { try await commit.submit(value) }
                while commit.waitingCount < [4, 5, 3, 30, 2].firstIndex(of: value)! + 1 {
                    try await Task.sleep(for: .milliseconds(1))
                }
            }
            gate.withLock { $0 = false }
            var replies: [Int] = []
            for try await reply in group { replies.append(reply) }
            return replies
        }
        #expect(try await first == 1)
        #expect(replies.sorted() == [2, 3, 4, 5, 30])
        // 4 + 5 fit in 10; 3 would not. 3 alone, then 30 alone (too heavy, but a batch takes one), then 2.
        #expect(batches.withLock { $0 } == [[1], [4, 5], [3], [30], [2]])
    }
}

@Suite("Queue layout upgrade")
struct QueueLayoutUpgradeTests {
    @Test(
        "jobs queued in the sorted sets of revisions before 16 move to the users' lists, in order, ahead of newer ones")
    func migratesSortedSetQueues() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let queue = fixture.queue
        let prefix = queue.keys.prefix
        var old: [String] = []
        for _ in 0..<3 { old.append(try await queue.enqueue(spec("early")).jobID) }
        // Put them back the way revisions before 16 kept them: one sorted set per tier.
        _ = try await fixture.pool.send("DEL", "\(prefix):t:standard:q:early")
        for id in old { _ = try await fixture.pool.send("ZADD", "\(prefix):t:standard:jobs", 0, "early\t\(id)") }
        // New settings make the functions read them again, and move the old queue over.
        try await queue.configure(settings)
        let newer = try await queue.enqueue(spec("early")).jobID
        #expect(try await fixture.pool.send("EXISTS", "\(prefix):t:standard:jobs").int == 0)
        #expect(try await queue.stats().queuedByTier["standard"] == 4)
        let claimed = try await queue.claim(workerID: "w", limit: 10).jobs.map(\.lease.jobID)
        #expect(claimed == old + [newer])
        #expect(try await fixture.keysBreakingRetention(.seconds(14 * 24 * 3600)).isEmpty)
    }
}

extension GroupCommitTests {
    /// The batches a commit sent.
    final class BatchLog: Sendable {
        let batches = Mutex<[[Int]]>([])
        let times = Mutex<[ContinuousClock.Instant]>([])
        var sent: [[Int]] { batches.withLock { $0 } }
    }

    /// A commit that records its batches and answers at once.
    static func recording(linger: GroupCommitLinger) -> (GroupCommit<Int, Int>, BatchLog) {
        let log = BatchLog()
        let commit = GroupCommit<Int, Int>(maxBatch: 64, linger: linger) { batch in
            log.batches.withLock { $0.append(batch.sorted()) }
            log.times.withLock { $0.append(.now) }
            return batch
        }
        return (commit, log)
    }

    @Test("a lone call right after a batch waits until the linger's interval has passed")
    func lingerWaits() async throws {
        let (commit, batches) = Self.recording(linger: GroupCommitLinger(interval: .milliseconds(300), below: 10))
        #expect(try await commit.submit(1) == 1)
        #expect(try await commit.submit(2) == 2)
        #expect(batches.sent == [[1], [2]])
        let times = batches.times.withLock { $0 }
        #expect(times[1] - times[0] >= .milliseconds(300))
    }

    @Test(
        "calls that come while one lingers join it; the linger ends once enough are ready; a call after a big batch does not linger",
        .timeLimit(.minutes(1)))
    func lingerEndsEarly() async throws {
        let (commit, batches) = Self.recording(linger: GroupCommitLinger(interval: .seconds(3600), below: 3))
        #expect(try await commit.submit(1) == 1)
        try await withThrowingTaskGroup(of: Int.self) { group in
            for value in 2...4 { group.addTask { try await commit.submit(value) } }
            try await group.waitForAll()
        }
        #expect(batches.sent == [[1], [2, 3, 4]])
        // After a big batch a lone call goes at once.
        #expect(try await commit.submit(5) == 5)
        #expect(batches.sent == [[1], [2, 3, 4], [5]])
    }

    @Test("a canceled caller does not wait for the linger", .timeLimit(.minutes(1)))
    func lingerCanceled() async throws {
        let (commit, batches) = Self.recording(linger: GroupCommitLinger(interval: .seconds(3600), below: 10))
        #expect(try await commit.submit(1) == 1)
        let second = Task { try await commit.submit(2) }
        try await Task.sleep(for: .milliseconds(20))
        second.cancel()
        #expect(try await second.value == 2)
        #expect(batches.sent == [[1], [2]])
    }

    @Test("the worker's linger: 2 ms, off for fewer than 8 slots")
    func workerLinger() {
        #expect(GroupCommitLinger.worker(slots: 64).interval == .milliseconds(2))
        #expect(GroupCommitLinger.worker(slots: 64).below == 16)
        #expect(GroupCommitLinger.worker(slots: 8).below == 2)
        #expect(GroupCommitLinger.worker(slots: 7).below < 2)
        #expect(GroupCommitLinger.none.below < 2)
    }
}
