import Foundation
import JobQueue
import RedisQueue
import Testing

private func result() -> JobResult {
    JobResult(
        outputs: [], usage: .init(images: 0, size: "64x64", model: "m"),
        durations: .init(ingestMS: 0, backendMS: 0, storeMS: 0))
}

private func signalFailure(_ kind: BackendSignal.Kind, retryAfter: Duration?, retry: Bool = false) -> JobFailure {
    JobFailure(
        code: kind.rawValue, message: "the provider said \(kind.rawValue)",
        disposition: retry ? .retry(after: .milliseconds(10)) : .requeue(after: .seconds(1)),
        signal: BackendSignal(kind, retryAfter: retryAfter))
}

/// Claims until a job comes, sleeping through each wait hint (at most `rounds` times).
private func claimOne(_ fixture: QueueFixture, worker: String, rounds: Int = 50) async throws -> ClaimedJob {
    for _ in 0..<rounds {
        let claim = try await fixture.queue.claim(workerID: worker, limit: 1)
        if let job = claim.jobs.first { return job }
        try await Task.sleep(for: min(claim.nextDueIn ?? .milliseconds(50), .seconds(2)) + .milliseconds(5))
    }
    throw TestFailure("nothing became claimable")
}

@Suite("Backend throttling inside claim")
struct ThrottleTests {
    @Test("a rate-limit 429 spends no attempt, keeps the job's place, and pauses every worker's claim")
    func rateLimitPause() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        settings.pauseJitter = .zero
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let first = try await fixture.queue.enqueue(spec("ann")).jobID
        let second = try await fixture.queue.enqueue(spec("bob")).jobID
        let job = try #require(try await fixture.queue.claim(workerID: "a", limit: 1).jobs.first)
        #expect(job.lease.jobID == first)

        let state = try await fixture.queue.fail(
            job.lease, failure: signalFailure(.rateLimited, retryAfter: .seconds(30)))
        #expect(state == .queued)
        let record = try #require(try await fixture.queue.status(jobID: first))
        #expect(record.state == .queued)
        #expect(record.attempts == 0)
        #expect(record.errorCode == "rate_limit")

        // Another worker's claim obeys the pause and says when it ends.
        let other = try await fixture.queue.claim(workerID: "b", limit: 10)
        #expect(other.jobs.isEmpty)
        let hint = try #require(other.nextDueIn)
        #expect(hint > .seconds(20) && hint <= .seconds(30))
        let backend = try await fixture.queue.backendState()
        #expect(backend.pauseRemaining > .seconds(20))
        #expect(backend.rateLimits == 1)
        #expect(backend.factor < 1)
        #expect(try await fixture.queue.stats().queuedByTier["standard"] == 2)

        // A short pause: once it is over, the requeued job comes first, ahead of bob's.
        let again = try await claimOneAfterShortPause(fixture, blocking: second)
        #expect(again.lease.jobID == first)
        #expect(again.lease.attempt == 1)
        let events = try await fixture.events().filter { $0.jobID == first && $0.type == "queued" }
        #expect(events.last?.fields["reason"] == "rate_limit")
    }

    /// Replaces the 30 s pause by one of 50 ms (a fresh signal on a fresh fixture would lose the
    /// ordering under test), then claims.
    private func claimOneAfterShortPause(_ fixture: QueueFixture, blocking: String) async throws -> ClaimedJob {
        // Clear the long pause directly: the state is the function library's, but a test may reset it.
        _ = try await fixture.pool.send("HDEL", "\(fixture.queue.keys.prefix):throttle", "pause_until")
        try await fixture.queue.throttle(BackendSignal(.unavailable, retryAfter: .milliseconds(50)))
        return try await claimOne(fixture, worker: "b")
    }

    @Test("a 503 pauses every worker and retries the job with its attempt spent; the budgets keep their size")
    func unavailablePause() async throws {
        var settings = QueueSettings()
        settings.pauseJitter = .zero
        settings.pauseDefault = .seconds(40)
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("ann")).jobID
        _ = try await fixture.queue.enqueue(spec("bob"))
        let job = try #require(try await fixture.queue.claim(workerID: "a", limit: 1).jobs.first)
        #expect(
            try await fixture.queue.fail(job.lease, failure: signalFailure(.unavailable, retryAfter: nil, retry: true))
                == .delayed)
        #expect(try await fixture.queue.status(jobID: id)?.attempts == 1)
        let other = try await fixture.queue.claim(workerID: "b", limit: 10)
        #expect(other.jobs.isEmpty)
        #expect(try #require(other.nextDueIn) > .seconds(30))  // the default pause, no Retry-After
        let backend = try await fixture.queue.backendState()
        #expect(backend.unavailable == 1)
        #expect(backend.factor == 1)
    }

    @Test(
        "a quota 429 stops claiming and fails nothing; after the breaker time one probe goes, and its success closes it"
    )
    func quotaBreaker() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        settings.quotaBreaker = .seconds(60)
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        var ids: [String] = []
        for index in 0..<4 { ids.append(try await fixture.queue.enqueue(spec("u\(index)")).jobID) }
        let job = try #require(try await fixture.queue.claim(workerID: "a", limit: 1).jobs.first)
        #expect(
            try await fixture.queue.fail(job.lease, failure: signalFailure(.quotaExhausted, retryAfter: nil)) == .queued
        )

        let refused = try await fixture.queue.claim(workerID: "b", limit: 10)
        #expect(refused.jobs.isEmpty)
        #expect(try #require(refused.nextDueIn) > .seconds(50))
        var backend = try await fixture.queue.backendState()
        #expect(backend.breaker == .open)
        #expect(backend.quotaAnswers == 1)
        for id in ids {
            let record = try #require(try await fixture.queue.status(jobID: id))
            #expect(record.state == .queued)
            #expect(record.attempts == 0)
        }
        #expect(try await fixture.events().allSatisfy { $0.type != "failed" && $0.type != "dead" })

        // A breaker time of 1 ms from now on: the next claim takes exactly one probe job.
        settings.quotaBreaker = .milliseconds(1)
        try await fixture.queue.configure(settings)
        try await fixture.queue.throttle(BackendSignal(.quotaExhausted))
        try await Task.sleep(for: .milliseconds(20))
        let probe = try await fixture.queue.claim(workerID: "b", limit: 10)
        #expect(probe.jobs.count == 1)
        backend = try await fixture.queue.backendState()
        #expect(backend.breaker == .halfOpen)
        #expect(backend.probeJobID == probe.jobs.first?.lease.jobID)
        // Nothing more while the probe runs.
        #expect(try await fixture.queue.claim(workerID: "c", limit: 10).jobs.isEmpty)

        // Another quota answer on the probe opens the breaker again.
        let probeJob = try #require(probe.jobs.first)
        _ = try await fixture.queue.fail(probeJob.lease, failure: signalFailure(.quotaExhausted, retryAfter: nil))
        let reopened = try await fixture.queue.backendState()
        #expect(reopened.probeJobID == nil)  // open again (for 1 ms), waiting for a new probe
        #expect(reopened.quotaAnswers == 3)
        try await Task.sleep(for: .milliseconds(20))
        let secondProbe = try #require(try await fixture.queue.claim(workerID: "b", limit: 10).jobs.first)
        try await fixture.queue.complete(secondProbe.lease, result: result())

        // The probe succeeded: the breaker closes and the rest are claimed.
        let rest = try await fixture.queue.claim(workerID: "b", limit: 10)
        #expect(rest.jobs.count == 3)
        #expect(try await fixture.queue.backendState().breaker == .closed)
    }

    @Test("the adaptive factor shrinks the budgets once per pause, down to its floor, and recovers after clean periods")
    func adaptiveFactor() async throws {
        var settings = QueueSettings()
        settings.windowMargin = .zero  // budgets over exactly one minute
        settings.userInFlightCap = 0
        settings.requestsPerMinute = 60  // one a second at full budget
        settings.burst = 1
        settings.pauseJitter = .zero
        settings.adaptiveShrink = 0.5
        settings.adaptiveFloor = 0.2
        settings.adaptiveRecovery = 0.1
        settings.adaptivePeriod = .seconds(3600)
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        for index in 0..<3 { _ = try await fixture.queue.enqueue(spec("u\(index)")) }

        // A rate limit without a pause (Retry-After 0) halves the budget: one call per 2 s.
        #expect(try await fixture.queue.throttle(BackendSignal(.rateLimited, retryAfter: .zero)).factor == 0.5)
        #expect(try await fixture.queue.claim(workerID: "w", limit: 10).jobs.count == 1)
        let spaced = try await fixture.queue.claim(workerID: "w", limit: 10)
        #expect(spaced.jobs.isEmpty)
        let hint = try #require(spaced.nextDueIn)
        #expect(hint > .seconds(1) && hint <= .seconds(2))

        // The first 429 of a pause shrinks; the ones arriving during the pause do not.
        #expect(try await fixture.queue.throttle(BackendSignal(.rateLimited, retryAfter: .seconds(30))).factor == 0.25)
        #expect(try await fixture.queue.throttle(BackendSignal(.rateLimited, retryAfter: .seconds(30))).factor == 0.25)
        _ = try await fixture.pool.send("HDEL", "\(fixture.queue.keys.prefix):throttle", "pause_until")
        // The floor: 0.25 × 0.5 would be 0.125.
        #expect(try await fixture.queue.throttle(BackendSignal(.rateLimited, retryAfter: .zero)).factor == 0.2)
        #expect(try await fixture.queue.backendState().rateLimits == 4)

        // Clean periods give back adaptive_recovery each (a 20 ms period here), up to 1.
        settings.adaptivePeriod = .milliseconds(20)
        try await fixture.queue.configure(settings)
        try await Task.sleep(for: .milliseconds(50))
        let recovered = try await fixture.queue.backendState().factor
        #expect(recovered > 0.2 && recovered <= 1)
        let steps = (recovered - 0.2) / 0.1
        #expect(recovered == 1 || abs(steps - steps.rounded()) < 0.01)
        try await Task.sleep(for: .milliseconds(200))
        #expect(try await fixture.queue.backendState().factor == 1)
    }

    @Test("a user over its request budget keeps its place and is passed over")
    func userRequestBudget() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        settings.userRequestsPerMinute = 20  // one every 3 s
        settings.userBurst = 1
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let ann1 = try await fixture.queue.enqueue(spec("ann")).jobID
        let ann2 = try await fixture.queue.enqueue(spec("ann")).jobID
        let ann3 = try await fixture.queue.enqueue(spec("ann")).jobID
        let bob = try await fixture.queue.enqueue(spec("bob")).jobID
        let cat = try await fixture.queue.enqueue(spec("cat")).jobID

        let first = try await fixture.queue.claim(workerID: "w", limit: 10)
        #expect(Set(first.jobs.map(\.lease.jobID)) == [ann1, bob, cat])
        let hint = try #require(try await fixture.queue.claim(workerID: "w", limit: 10).nextDueIn)
        #expect(hint > .zero && hint <= .seconds(3))
        // A later user is not held back by ann, and ann keeps her place ahead of it.
        let dan = try await fixture.queue.enqueue(spec("dan")).jobID
        #expect(try await fixture.queue.claim(workerID: "w", limit: 10).jobs.map(\.lease.jobID) == [dan])
        let next = try await claimOne(fixture, worker: "w")
        #expect(next.lease.jobID == ann2)
        #expect(try await fixture.queue.status(jobID: ann3)?.state == .queued)
        // The budget's key names the user, so it expires by itself.
        let ttl = try await fixture.pool.send("PTTL", "\(fixture.queue.keys.prefix):u:ann:rate").int ?? -1
        #expect(ttl > 0 && ttl <= 3001)
    }
}
