import ArgumentParser
import Foundation
import JobQueue
import RedisClient
import RedisQueue
import Synchronization

/// Measures the queue's own cost against a running Redis: enqueue rate (one awaited call at a
/// time and many concurrent), and claim + complete rate in batches, with no image work.
///
///     swift run -c release imagegen-queue-bench redis://127.0.0.1:6379/0 [jobs]
@main
struct QueueBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imagegen-queue-bench",
        abstract:
            "The queue's own cost against a running Redis (its queues are new ones): enqueue, claim + complete, pickup."
    )

    @Argument(help: "The Redis to use (redis://host:port/db or unix:///path).")
    var redisURL = "redis://127.0.0.1:6379/0"

    @Argument(help: "Jobs to enqueue concurrently, then claim and complete (1–1,000,000).")
    var jobs = 20_000

    func validate() throws {
        guard (1...1_000_000).contains(jobs) else { throw ValidationError("jobs must be 1–1,000,000, not \(jobs)") }
        do {
            _ = try RedisConfiguration(url: redisURL)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() async throws {
        let jobs = self.jobs
        let pool = RedisPool(configuration: try RedisConfiguration(url: redisURL), size: 2)
        defer { pool.close() }
        let queue = try RedisJobQueue(pool: pool, name: "bench-\(UInt32.random(in: 0...UInt32.max))")
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        try await queue.configure(settings)
        let spec = JobSpec(user: "bench", prompt: "noop", size: "64x64")

        // The client's own round trip, to set the enqueue figures against. An awaiting caller on
        // the connections' executor (as a producer that awaits each call should run), and one on
        // Swift's global pool, alternating.
        let pings = 5_000
        let sequentialCount = min(jobs, 5_000) / 2
        let pingRound: @Sendable () async throws -> Void = {
            for _ in 0..<pings / 4 { _ = try await pool.send("PING") }
        }
        let enqueueRound: @Sendable () async throws -> Void = {
            for _ in 0..<sequentialCount / 2 { _ = try await queue.enqueue(spec) }
        }
        var onLoop: (ping: [Duration], enqueue: [Duration]) = ([], [])
        var onPool: (ping: [Duration], enqueue: [Duration]) = ([], [])
        for _ in 0..<2 {
            onLoop.ping.append(try await withTaskExecutorPreference(pool.executor) { try await Self.timed(pingRound) })
            onPool.ping.append(try await Self.timed(pingRound))
            onLoop.enqueue.append(
                try await withTaskExecutorPreference(pool.executor) { try await Self.timed(enqueueRound) })
            onPool.enqueue.append(try await Self.timed(enqueueRound))
        }
        let concurrent = try await Self.timed {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<64 {
                    group.addTask {
                        for index in stride(from: worker, to: jobs, by: 64) {
                            _ = try await queue.enqueue(JobSpec(user: "u\(index % 50)", prompt: "noop", size: "64x64"))
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        let result = JobResult(
            outputs: [], usage: .init(images: 0, size: "64x64", model: "none"),
            durations: .init(ingestMS: 0, backendMS: 0, storeMS: 0))
        var processed = 0
        let drain = try await Self.timed {
            while true {
                let claimed = try await queue.claim(workerID: "bench", limit: 64).jobs
                if claimed.isEmpty { break }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for job in claimed { group.addTask { try await queue.complete(job.lease, result: result) } }
                    try await group.waitForAll()
                }
                processed += claimed.count
            }
        }
        let pickups = try await Self.pickupLatencies(queue: queue, count: 500)
        print("one awaited call at a time, on the connections' executor / on the global pool:")
        print(
            "  PING                               \(Self.rate(pings / 2, onLoop.ping.reduce(.zero, +))) / \(Self.rate(pings / 2, onPool.ping.reduce(.zero, +))) calls/s"
        )
        print(
            "  enqueue                            \(Self.rate(sequentialCount, onLoop.enqueue.reduce(.zero, +))) / \(Self.rate(sequentialCount, onPool.enqueue.reduce(.zero, +))) jobs/s"
        )
        print("enqueue, 64 concurrent callers:      \(Self.rate(jobs, concurrent)) jobs/s")
        print("claim (batches of 64) + complete:    \(Self.rate(processed, drain)) jobs/s (\(processed) jobs)")
        print(
            "pickup, idle claimer blocked in BLPOP: p50 \(Self.percentile(pickups, 0.5)) ms, p99 \(Self.percentile(pickups, 0.99)) ms, "
                + "max \(Self.percentile(pickups, 1)) ms (\(pickups.count) jobs enqueued 2 ms apart)")
    }

    /// A claimer that waits like the worker (claim, else block on the wake-up list) while jobs are
    /// enqueued one at a time: the time from the enqueue call to the claim that returns the job.
    static func pickupLatencies(queue: RedisJobQueue, count: Int) async throws -> [Double] {
        // Each job's prompt carries its index; the start time is recorded before the enqueue call.
        let enqueuedAt = StartTimes()
        return try await withThrowingTaskGroup(of: [Double].self) { group in
            group.addTask {
                var latencies: [Double] = []
                while latencies.count < count {
                    let claimed = try await queue.claim(workerID: "pickup", limit: 16)
                    let now = ContinuousClock.now
                    for job in claimed.jobs {
                        let index = Int(job.spec.prompt.split(separator: " ").last ?? "") ?? -1
                        if let start = enqueuedAt.times.withLock({ $0[index] }) {
                            latencies.append(milliseconds(now - start))
                        }
                    }
                    if claimed.jobs.isEmpty { try await queue.waitForWork(timeout: .seconds(1)) }
                }
                return latencies
            }
            try await Task.sleep(for: .milliseconds(200))
            for index in 0..<count {
                enqueuedAt.times.withLock { $0[index] = ContinuousClock.now }
                _ = try await queue.enqueue(JobSpec(user: "pickup", prompt: "pickup \(index)", size: "64x64"))
                try await Task.sleep(for: .milliseconds(2))
            }
            return try await group.next() ?? []
        }
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }

    static func percentile(_ values: [Double], _ p: Double) -> String {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return "-" }
        return String(format: "%.2f", sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))])
    }

    @MainActor
    static func timed(_ body: () async throws -> Void) async throws -> Duration {
        let start = ContinuousClock.now
        try await body()
        return ContinuousClock.now - start
    }

    static func rate(_ count: Int, _ duration: Duration) -> String {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return String(format: "%.0f", Double(count) / seconds)
    }
}

/// Start times by job index, shared by the producer and the claimer.
final class StartTimes: Sendable {
    let times = Mutex<[Int: ContinuousClock.Instant]>([:])
}
