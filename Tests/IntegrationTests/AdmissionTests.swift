import Foundation
import JobQueue
import RedisQueue
import Testing

@Suite("Backend admission inside claim")
struct AdmissionTests {
    @Test("requests per minute: a burst, then one call per interval; the claim says how long to wait")
    func requestBudget() async throws {
        var settings = QueueSettings()
        settings.windowMargin = .zero  // budgets over exactly one minute
        settings.userInFlightCap = 0
        settings.requestsPerMinute = 120  // one every 500 ms
        settings.burst = 2
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        for index in 0..<10 { _ = try await fixture.queue.enqueue(spec("u\(index)")) }
        let first = try await fixture.queue.claim(workerID: "w", limit: 10)
        #expect(first.jobs.count == 2)  // the burst
        let hint = try #require(first.nextDueIn)
        #expect(hint > .milliseconds(300) && hint <= .milliseconds(1000))
        #expect(try await fixture.queue.claim(workerID: "w", limit: 10).jobs.isEmpty)
        try await Task.sleep(for: hint + .milliseconds(20))
        // Due after the hint (asking for one: a slow machine may have slept past more intervals).
        #expect(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.count == 1)
        // Nothing was lost: the rest are still queued, in order.
        #expect(try await fixture.queue.stats().queuedByTier["standard"] == 7)
    }

    @Test("images per minute: a job costs its n, and a refused job keeps its place")
    func imageBudget() async throws {
        var settings = QueueSettings()
        settings.windowMargin = .zero  // budgets over exactly one minute
        settings.userInFlightCap = 0
        settings.imagesPerMinute = 240  // one image every 250 ms
        settings.burst = 1
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let big = try await fixture.queue.enqueue(JobSpec(user: "a", prompt: "four", n: 4)).jobID
        let small = try await fixture.queue.enqueue(JobSpec(user: "b", prompt: "one", n: 1)).jobID
        #expect(try await fixture.queue.claim(workerID: "w", limit: 10).jobs.map(\.lease.jobID) == [big])
        let refused = try await fixture.queue.claim(workerID: "w", limit: 10)
        #expect(refused.jobs.isEmpty)
        let hint = try #require(refused.nextDueIn)
        #expect(hint > .milliseconds(800) && hint <= .milliseconds(1000))  // four images' worth
        try await Task.sleep(for: hint + .milliseconds(20))
        #expect(try await fixture.queue.claim(workerID: "w", limit: 10).jobs.map(\.lease.jobID) == [small])
    }

    @Test("a burst counts against its minute: no sliding minute admits more than the budget")
    func burstWithinTheMinute() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        settings.requestsPerMinute = 4
        settings.burst = 4
        settings.lease = .seconds(300)  // so that the hint is the budget's, not a lease's end
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        for index in 0..<6 { _ = try await fixture.queue.enqueue(spec("u\(index)")) }
        #expect(try await fixture.queue.claim(workerID: "w", limit: 10).jobs.count == 4)
        // The fifth call waits a whole minute from the burst, not a quarter of one.
        let refused = try await fixture.queue.claim(workerID: "w", limit: 10)
        #expect(refused.jobs.isEmpty)
        #expect(try #require(refused.nextDueIn) > .seconds(55))
    }

    /// A queue with a budget of 6,000 tokens a minute (10 ms per token) and 1,000 tokens charged per
    /// image, three jobs queued and one claimed: the next claim must wait about 10 s.
    static func tokenBudgetWithOneJobClaimed() async throws -> (QueueFixture, ClaimedJob) {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        settings.tokensPerMinute = 6000
        settings.tokensPerImage = 1000
        settings.burst = 1
        settings.windowMargin = .zero
        settings.lease = .seconds(300)  // so that the hint is the budget's, not a lease's end
        let fixture = try await QueueFixture(settings: settings)
        for index in 0..<3 { _ = try await fixture.queue.enqueue(spec("u\(index)")) }
        let job = try #require(try await fixture.queue.claim(workerID: "w", limit: 10).jobs.first)
        let estimated = try #require(try await fixture.queue.claim(workerID: "w", limit: 10).nextDueIn)
        #expect(estimated > .seconds(9) && estimated <= .seconds(10))  // 1,000 tokens charged
        return (fixture, job)
    }

    @Test("tokens per minute: a job is charged an estimate, and the provider's usage corrects it")
    func tokenBudget() async throws {
        let (fixture, job) = try await Self.tokenBudgetWithOneJobClaimed()
        defer { fixture.close() }
        // The call used 3,000 tokens: 2,000 more are charged, 20 s more to wait.
        try await fixture.queue.recordUsage(job.lease, tokens: 3000)
        let corrected = try await fixture.queue.claim(workerID: "w", limit: 10)
        #expect(corrected.jobs.isEmpty)
        #expect(try #require(corrected.nextDueIn) > .seconds(28))
    }

    @Test("tokens per minute: completing a job corrects the budget by the usage in its result")
    func tokenBudgetCorrectedByComplete() async throws {
        let (fixture, job) = try await Self.tokenBudgetWithOneJobClaimed()
        defer { fixture.close() }
        // 500 in, 2,500 out: 3,000 tokens, 2,000 more than charged, 20 s more to wait.
        let result = JobResult(
            outputs: [], usage: .init(images: 1, size: "64x64", model: "m", inputTokens: 500, outputTokens: 2500),
            durations: .init(ingestMS: 0, backendMS: 0, storeMS: 0))
        try await fixture.queue.complete(job.lease, result: result)
        let corrected = try await fixture.queue.claim(workerID: "w", limit: 10)
        #expect(corrected.jobs.isEmpty)
        #expect(try #require(corrected.nextDueIn) > .seconds(28))
    }

    @Test("without budgets, claims are not throttled")
    func noBudget() async throws {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        for index in 0..<50 { _ = try await fixture.queue.enqueue(spec("u\(index % 5)")) }
        #expect(try await fixture.queue.claim(workerID: "w", limit: 50).jobs.count == 50)
    }
}
