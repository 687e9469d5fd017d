import Foundation
import JobQueue
import RedisClient
import RedisQueue

/// A fresh queue on the shared Redis (or a given server), with its own name.
struct QueueFixture {
    let pool: RedisPool
    let queue: RedisJobQueue

    init(settings: QueueSettings = QueueSettings(), configuration: RedisConfiguration = SharedRedis.configuration)
        async throws
    {
        pool = RedisPool(configuration: configuration, size: 2, logger: testLogger)
        queue = try RedisJobQueue(pool: pool, name: uniqueQueueName(), logger: testLogger)
        try await queue.configure(settings)
    }

    func close() {
        queue.close()
        pool.close()
    }

    /// Every key of this queue.
    func keys() async throws -> [String] {
        var cursor = "0"
        var keys: [String] = []
        repeat {
            let reply = try await pool.send("SCAN", cursor, "MATCH", "\(queue.keys.prefix)*", "COUNT", 1000)
            guard let parts = reply.array, parts.count == 2 else { break }
            cursor = parts[0].string ?? "0"
            keys += parts[1].array?.compactMap(\.string) ?? []
        } while cursor != "0"
        return keys
    }

    /// The keys whose TTL is missing or longer than `retention` (counters and settings, which hold no
    /// user content, are listed in `exempt`).
    func keysBreakingRetention(_ retention: Duration) async throws -> [String] {
        let exempt: Set<String> = [
            "\(queue.keys.prefix):seq", "\(queue.keys.prefix):fence", "\(queue.keys.prefix):config",
            "\(queue.keys.prefix):sched", "\(queue.keys.prefix):wake", queue.keys.webhookDefaultURL,
        ]
        var bad: [String] = []
        for key in try await keys() where !exempt.contains(key) {
            let ttl = try await pool.send("PTTL", key).int ?? -1
            if ttl < 0 || ttl > Int(retention.milliseconds) { bad.append("\(key) (pttl \(ttl))") }
        }
        return bad
    }

    /// Every event of this queue's stream.
    func events() async throws -> [JobEvent] {
        try await queue.readEvents(after: "0", count: 100_000)
    }
}

func spec(_ user: String, tier: JobSpec.Tier = .standard, prompt: String = "a test picture", size: String = "64x64")
    -> JobSpec
{
    JobSpec(user: user, tier: tier, prompt: prompt, size: size)
}
