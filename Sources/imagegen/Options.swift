import ArgumentParser
import Foundation
import JobQueue
import Logging
import RedisClient
import RedisQueue
import Storage

/// Where the queue is: shared by every command that talks to Redis.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Redis URL: redis://[user:password@]host:port/db or unix:///path. Env: IMAGEGEN_REDIS_URL.")
    var redis: String?

    @Option(help: "File holding the Redis password (overrides the URL's). Env: IMAGEGEN_REDIS_PASSWORD.")
    var redisPasswordFile: String?

    @Option(help: "Queue name (letters, digits, - and _). Env: IMAGEGEN_QUEUE. Default: default.")
    var queue: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error. Env: IMAGEGEN_LOG_LEVEL. Default: info.")
    var logLevel: String?

    @Option(
        help: """
            What runs the I/O of the pool's Redis connections: loop (the process' task loop polls \
            the sockets) or threads (a thread per connection). Default loop.
            """)
    var redisIo: RedisConfiguration.PoolIO = .taskLoop

    /// The Redis configuration from the flags and the environment.
    func redisConfiguration() throws -> RedisConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var configuration = try RedisConfiguration(
            url: redis ?? environment["IMAGEGEN_REDIS_URL"] ?? "redis://127.0.0.1:6379/0")
        if let user = environment["IMAGEGEN_REDIS_USERNAME"], !user.isEmpty { configuration.username = user }
        if let password = environment["IMAGEGEN_REDIS_PASSWORD"], !password.isEmpty {
            configuration.password = password
        }
        if let file = redisPasswordFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read the Redis password file \(file)")
            }
            configuration.password = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        configuration.poolIO = redisIo
        return configuration
    }

    var queueName: String {
        queue ?? ProcessInfo.processInfo.environment["IMAGEGEN_QUEUE"] ?? "default"
    }

    /// Sets up logging to standard error once per process.
    func bootstrapLogging(defaultLevel: Logger.Level = .info) -> Logger {
        let raw = logLevel ?? ProcessInfo.processInfo.environment["IMAGEGEN_LOG_LEVEL"] ?? defaultLevel.rawValue
        let level = Logger.Level(rawValue: raw.lowercased()) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "imagegen")
    }

    /// Sets up logging, connects, runs `body` with the queue, the Redis blob store and the logger,
    /// and closes the connections.
    func withQueue<T>(_ body: (RedisJobQueue, RedisBlobStore, Logger) async throws -> T) async throws -> T {
        let logger = bootstrapLogging()
        let (pool, queue, blobs) = try connect(logger: logger)
        defer {
            queue.close()
            pool.close()
        }
        return try await body(queue, blobs, logger)
    }

    /// The pool, queue and Redis blob store for these options.
    func connect(
        logger: Logger, poolSize: Int = 2, completionLinger: GroupCommitLinger = .none
    ) throws -> (RedisPool, RedisJobQueue, RedisBlobStore) {
        let pool = RedisPool(configuration: try redisConfiguration(), size: poolSize, logger: logger)
        let queue = try RedisJobQueue(
            pool: pool, name: queueName, logger: logger, completionLinger: completionLinger)
        let blobs = RedisBlobStore(pool: pool, prefix: queue.keys.blobPrefix)
        return (pool, queue, blobs)
    }
}

/// `--json` for scripts.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON (one object per line) instead of text.")
    var json = false
}

/// Prints one JSON object on a line.
func printJSON(_ object: [String: Any]) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) {
        print(String(decoding: data, as: UTF8.self))
    }
}

extension JobRecord {
    /// The record as a JSON-ready dictionary (no prompt: records never hold one outside `spec`).
    var jsonObject: [String: Any] {
        var object: [String: Any] = [
            "id": id, "state": state.rawValue, "user": user, "tier": tier, "kind": kind, "attempts": attempts,
            "recoveries": recoveries, "created_ms": createdMS, "updated_ms": updatedMS,
        ]
        if let startedMS { object["started_ms"] = startedMS }
        if let finishedMS { object["finished_ms"] = finishedMS }
        if let stage { object["stage"] = stage }
        if let errorCode { object["error_code"] = errorCode }
        if let errorMessage { object["error_message"] = errorMessage }
        if let deadReason { object["dead_reason"] = deadReason }
        if let result {
            object["outputs"] = result.outputs.map {
                ["key": $0.key, "format": $0.format, "width": $0.width, "height": $0.height, "bytes": $0.bytes]
                    as [String: Any]
            }
        }
        return object
    }
}

extension JobEvent {
    var jsonObject: [String: Any] {
        var object: [String: Any] = ["id": id, "type": type, "job": jobID, "user": user, "tier": tier, "at_ms": atMS]
        for (key, value) in fields { object[key] = value }
        return object
    }

    /// One line for people.
    var line: String {
        let time = Date(timeIntervalSince1970: Double(atMS) / 1000)
        let stamp = ISO8601DateFormatter().string(from: time)
        var extra = ""
        switch type {
        case "queued": extra = fields["reason"].map { " (\($0))" } ?? ""
        case "started": extra = " on \(fields["worker"] ?? "?") attempt \(fields["attempt"] ?? "?")"
        case "progress": extra = " \(fields["stage"] ?? "")"
        case "retrying": extra = " \(fields["code"] ?? ""): \(fields["message"] ?? "")"
        case "failed": extra = " \(fields["code"] ?? ""): \(fields["message"] ?? "")"
        case "dead": extra = " (\(fields["reason"] ?? ""))"
        case "canceled": extra = " (was \(fields["was"] ?? "?"))"
        default: break
        }
        return "\(stamp)  \(jobID)  \(user)  \(type)\(extra)"
    }
}

extension Duration {
    /// Parses seconds given as a decimal number ("1.5").
    static func seconds(parsing text: String) -> Duration? {
        Double(text).map { Duration.milliseconds(Int64($0 * 1000)) }
    }
}

extension RedisConfiguration.PoolIO: ExpressibleByArgument {}
