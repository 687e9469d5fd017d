import JobQueue
import RedisClient
import RedisQueue
import Testing

/// The events of every lifecycle path, in order and complete, straight from the queue's functions.
@Suite("Event order per lifecycle path")
struct EventOrderTests {
    /// The job's events as `type` or `type(reason)`, in stream order.
    static func trail(_ fixture: QueueFixture, _ id: String) async throws -> [String] {
        let events = try await fixture.events().filter { $0.jobID == id }
        for event in events {
            #expect(!event.user.isEmpty && !event.tier.isEmpty && event.atMS > 0, "incomplete event \(event)")
        }
        return events.map { event in
            let detail = event.fields["reason"] ?? event.fields["was"]
            return detail.map { "\(event.type)(\($0))" } ?? event.type
        }
    }

    static func claimOnly(_ fixture: QueueFixture, _ id: String) async throws -> Lease {
        let jobs = try await fixture.queue.claim(workerID: "w", limit: 1).jobs
        let job = try #require(jobs.first)
        #expect(job.lease.jobID == id)
        return job.lease
    }

    @Test("success, terminal failure, retry then success, dead after attempts, release, and each kind of cancel")
    func paths() async throws {
        var settings = QueueSettings()
        settings.maxAttempts = 2
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let queue = fixture.queue
        let retryNow = JobFailure(code: "timeout", message: "t", disposition: .retry(after: .zero))

        let succeeded = try await queue.enqueue(spec("a")).jobID
        var lease = try await Self.claimOnly(fixture, succeeded)
        try await queue.progress(lease, stage: "generating", detail: "")
        try await queue.complete(lease, result: emptyResult)
        #expect(try await Self.trail(fixture, succeeded) == ["queued(enqueued)", "started", "progress", "succeeded"])
        #expect(try await fixture.events().last?.fields["result"]?.contains("\"usage\"") == true)

        let failed = try await queue.enqueue(spec("b")).jobID
        lease = try await Self.claimOnly(fixture, failed)
        _ = try await queue.fail(
            lease, failure: JobFailure(code: "invalid_input", message: "m", disposition: .terminal))
        #expect(try await Self.trail(fixture, failed) == ["queued(enqueued)", "started", "failed"])
        #expect(try await fixture.events().last?.fields["code"] == "invalid_input")

        let retried = try await queue.enqueue(spec("c")).jobID
        lease = try await Self.claimOnly(fixture, retried)
        #expect(try await queue.fail(lease, failure: retryNow) == .delayed)
        lease = try await Self.claimOnly(fixture, retried)
        try await queue.complete(lease, result: emptyResult)
        #expect(
            try await Self.trail(fixture, retried) == [
                "queued(enqueued)", "started", "retrying", "queued(due)", "started", "succeeded",
            ])

        let dead = try await queue.enqueue(spec("d")).jobID
        lease = try await Self.claimOnly(fixture, dead)
        _ = try await queue.fail(lease, failure: retryNow)
        lease = try await Self.claimOnly(fixture, dead)
        #expect(try await queue.fail(lease, failure: retryNow) == .dead)
        #expect(
            try await Self.trail(fixture, dead) == [
                "queued(enqueued)", "started", "retrying", "queued(due)", "started", "dead(max_attempts)",
            ])

        let released = try await queue.enqueue(spec("e")).jobID
        lease = try await Self.claimOnly(fixture, released)
        try await queue.release(lease)
        lease = try await Self.claimOnly(fixture, released)
        try await queue.complete(lease, result: emptyResult)
        #expect(
            try await Self.trail(fixture, released) == [
                "queued(enqueued)", "started", "queued(released)", "started", "succeeded",
            ])

        let canceledQueued = try await queue.enqueue(spec("f")).jobID
        _ = try await queue.cancel(jobID: canceledQueued)
        #expect(try await Self.trail(fixture, canceledQueued) == ["queued(enqueued)", "canceled(queued)"])

        let canceledDelayed = try await queue.enqueue(spec("g"), delay: .seconds(60)).jobID
        _ = try await queue.cancel(jobID: canceledDelayed)
        #expect(try await Self.trail(fixture, canceledDelayed) == ["queued(delayed)", "canceled(delayed)"])

        let canceledActive = try await queue.enqueue(spec("h")).jobID
        lease = try await Self.claimOnly(fixture, canceledActive)
        _ = try await queue.cancel(jobID: canceledActive)
        await #expect(throws: QueueError.self) { try await queue.complete(lease, result: emptyResult) }
        #expect(try await Self.trail(fixture, canceledActive) == ["queued(enqueued)", "started", "canceled(active)"])
        // Nothing after a terminal event: a second cancel changes nothing.
        #expect(try await queue.cancel(jobID: canceledActive) == "already_canceled")
        #expect(try await Self.trail(fixture, canceledActive).count == 3)
    }

    @Test("a worker's lease runs out: the job is queued again, then dead as poisoned when that keeps happening")
    func recoveries() async throws {
        var settings = QueueSettings()
        settings.lease = .milliseconds(150)
        settings.maxRecoveries = 1
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("r")).jobID
        _ = try await Self.claimOnly(fixture, id)
        try await Task.sleep(for: .milliseconds(300))  // the lease ends unrenewed
        _ = try await Self.claimOnly(fixture, id)  // recovered inside this claim, and claimed again
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.isEmpty)
        #expect(
            try await Self.trail(fixture, id) == [
                "queued(enqueued)", "started", "queued(lease_expired)", "started", "dead(poisoned)",
            ])
    }
}

@Suite("Nudges")
struct NudgeTests {
    @Test(
        "every event is also published on the queue's nudge channel as `<type> <job id>`, in order",
        .timeLimit(.minutes(1)))
    func everyEventIsNudged() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let queue = fixture.queue
        let subscriber = RedisSubscriber(configuration: SharedRedis.configuration, channels: [queue.keys.nudgeChannel])
        defer { subscriber.close() }
        var events = subscriber.events.makeAsyncIterator()
        #expect(await events.next() == .subscribed)

        let id = try await queue.enqueue(spec("nudged")).jobID
        let lease = try await EventOrderTests.claimOnly(fixture, id)
        try await queue.complete(lease, result: emptyResult)
        var nudges: [String] = []
        while nudges.count < 3, let event = await events.next() {
            if case .message(_, let payload) = event { nudges.append(String(decoding: payload, as: UTF8.self)) }
        }
        #expect(nudges == ["queued \(id)", "started \(id)", "succeeded \(id)"])
    }
}
