import ArgumentParser
import Foundation
import JobQueue
import RedisQueue
import Storage

struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue", abstract: "Enqueue a generation job (an edit when --image is given) and print its id.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "User id (1-128 of letters, digits, . _ @ : -).") var user: String
    @Option(help: "Tier: pro, standard or free. Default standard.") var tier: String = "standard"
    @Option(help: "The prompt.") var prompt: String
    @Option(name: .customLong("image"), help: "An input image file (repeatable); makes the job an edit.")
    var images: [String] = []
    @Option(help: "A mask PNG for an edit.") var mask: String?
    @Option(help: "Output size WIDTHxHEIGHT or auto. Default 1024x1024.") var size: String = "1024x1024"
    @Option(help: "Images to produce, 1-10. Default 1.") var n: Int = 1
    @Option(help: "Model name. Default: the worker's default.") var model: String?
    @Option(help: "Idempotency key: enqueueing again with it returns the same job.") var idempotencyKey: String?
    @Option(help: "Webhook URL to notify when the job ends.") var webhookURL: String?

    func run() async throws {
        try await connection.withQueue { queue, blobs, _ in
            guard let tier = JobSpec.Tier(rawValue: tier) else {
                throw ValidationError("--tier: pro, standard or free")
            }
            let settings = QueueSettings(current: try await queue.configure(QueueSettings.none))
            var inputs: [String] = []
            for path in images { inputs.append(try await upload(path, to: blobs, ttl: settings.retention)) }
            let maskKey = try await mask.asyncMap { try await upload($0, to: blobs, ttl: settings.retention) }
            let spec = JobSpec(
                user: user, tier: tier, kind: inputs.isEmpty ? .generate : .edit, prompt: prompt, model: model,
                size: size,
                n: n, inputs: inputs.isEmpty ? nil : inputs, mask: maskKey, webhookURL: webhookURL)
            let result = try await queue.enqueue(spec, idempotencyKey: idempotencyKey)
            if output.json {
                printJSON(["job": result.jobID, "created": result.created])
            } else {
                print(result.created ? result.jobID : "\(result.jobID) (already enqueued with this idempotency key)")
            }
        }
    }
}

/// Stores a file as an upload and returns its blob key.
func upload(_ path: String, to blobs: any BlobStore, ttl: Duration) async throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
    let key = "upload:\(UUID().uuidString.lowercased())"
    try await blobs.put(key, Array(data), ttl: ttl)
    return key
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        switch self {
        case .none: return nil
        case .some(let value): return try await transform(value)
        }
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show a job's state, attempts, error, outputs and webhook delivery.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The job id.") var job: String

    func run() async throws {
        try await connection.withQueue { queue, _, _ in
            guard let record = try await queue.status(jobID: job) else {
                if output.json { printJSON(["id": job, "state": "missing"]) } else { print("\(job): no such job") }
                throw ExitCode(1)
            }
            // The webhook delivery, without its URL (it may carry a token) or payload.
            let webhook = try await queue.webhookDelivery(jobID: job).map { fields in
                fields.filter { ["status", "attempts", "last_status", "last_error", "msg"].contains($0.key) }
            }
            if output.json {
                var object = record.jsonObject
                if let webhook { object["webhook"] = webhook }
                printJSON(object)
                return
            }
            print("\(record.id)  \(record.state.rawValue)  user \(record.user)  tier \(record.tier)  \(record.kind)")
            print(
                "attempts \(record.attempts), recoveries \(record.recoveries)\(record.stage.map { ", stage \($0)" } ?? "")"
            )
            if let code = record.errorCode { print("error \(code): \(record.errorMessage ?? "")") }
            if let reason = record.deadReason { print("dead: \(reason)") }
            for output in record.result?.outputs ?? [] {
                print("output \(output.key)  \(output.width)x\(output.height) \(output.format) \(output.bytes) bytes")
            }
            if let webhook {
                print(
                    "webhook \(webhook["msg"] ?? "")  \(webhook["status"] ?? "")  attempts \(webhook["attempts"] ?? "0")"
                        + (webhook["last_status"].map { ", last answer \($0)" } ?? ""))
            }
        }
    }
}

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch", abstract: "Follow live events of a job or a user (Ctrl-C to stop).",
        discussion: "Text mode prints a line per event; --json prints one JSON object per line.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The job id to follow.") var job: String?
    @Option(help: "Follow every job of this user instead.") var user: String?
    @Option(help: "Start after this event id (0: every event still kept). Default: only new events.")
    var after: String = "$"

    func validate() throws {
        guard (job == nil) != (user == nil) else { throw ValidationError("give a job id or --user, not both") }
    }

    func run() async throws {
        try await connection.withQueue { queue, _, _ in
            if let job, after == "$", let record = try await queue.status(jobID: job), record.state.isFinished {
                if output.json {
                    printJSON(record.jsonObject)
                } else {
                    print("\(job) already \(record.state.rawValue)")
                }
                return
            }
            for try await event in queue.followEvents(after: after) {
                if let job, event.jobID != job { continue }
                if let user, event.user != user { continue }
                if output.json { printJSON(event.jsonObject) } else { print(event.line) }
                fflush(nil)
                if job != nil, ["succeeded", "failed", "canceled", "dead"].contains(event.type) { return }
            }
        }
    }
}

struct ResultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "result", abstract: "Write a finished job's images to a folder.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The job id.") var job: String
    @Option(help: "The folder to write to (created if missing).") var out: String

    func run() async throws {
        try await connection.withQueue { queue, blobs, _ in
            guard let record = try await queue.status(jobID: job) else { throw ValidationError("no such job \(job)") }
            guard record.state == .succeeded, let result = record.result else {
                throw ValidationError("job \(job) is \(record.state.rawValue), not succeeded")
            }
            let paths = try await writeOutputs(result, jobID: job, to: out, blobs: blobs)
            if output.json { printJSON(["job": job, "files": paths]) } else { paths.forEach { print($0) } }
        }
    }
}

/// Fetches a job's outputs and writes them as `<job>-<index>.<format>` files; returns the paths.
func writeOutputs(_ result: JobResult, jobID: String, prefix: String = "", to folder: String, blobs: any BlobStore)
    async throws -> [String]
{
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    var paths: [String] = []
    for (index, output) in result.outputs.enumerated() {
        guard let bytes = try await blobs.get(output.key) else {
            throw ValidationError("output \(output.key) has expired or was deleted")
        }
        let path = (folder as NSString).appendingPathComponent("\(prefix)\(jobID)-\(index).\(output.format)")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        paths.append(path)
    }
    return paths
}

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel a job: a queued job is removed; a running job is stopped within a second.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The job id.") var job: String

    func run() async throws {
        try await connection.withQueue { queue, _, _ in
            let was = try await queue.cancel(jobID: job)
            if output.json {
                printJSON(["job": job, "was": was])
            } else {
                switch was {
                case "missing": print("\(job): no such job")
                case let s where s.hasPrefix("already_"): print("\(job) had already ended (\(s.dropFirst(8)))")
                default: print("\(job) canceled (was \(was))")
                }
            }
            if was == "missing" { throw ExitCode(1) }
        }
    }
}

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract:
            "Queue depth per tier, delayed, in flight, dead, live workers, oldest queued job's age, and the backend's pause, quota breaker and budget factor."
    )
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        try await connection.withQueue { queue, _, _ in
            let stats = try await queue.stats()
            let backend = try await queue.backendState()
            if output.json {
                var object: [String: Any] = [
                    "delayed": stats.delayed, "active": stats.active, "dead": stats.dead,
                    "live_workers": stats.liveWorkers,
                    "oldest_queued_age_ms": stats.oldestQueuedAgeMS,
                ]
                object["queued_by_tier"] = stats.queuedByTier
                object["backend"] = [
                    "pause_remaining_ms": Int(backend.pauseRemaining.milliseconds), "breaker": backend.breaker.rawValue,
                    "breaker_remaining_ms": Int(backend.breakerRemaining.milliseconds), "factor": backend.factor,
                    "rate_limits": backend.rateLimits, "unavailable": backend.unavailable,
                    "quota_answers": backend.quotaAnswers,
                ]
                printJSON(object)
                return
            }
            for tier in JobSpec.Tier.allCases {
                print("queued \(tier.rawValue): \(stats.queuedByTier[tier.rawValue] ?? 0)")
            }
            print("delayed: \(stats.delayed)")
            print("in flight: \(stats.active)")
            print("dead: \(stats.dead)")
            print("live workers: \(stats.liveWorkers)")
            print("oldest queued job: \(Double(stats.oldestQueuedAgeMS) / 1000) s")
            print("backend pause: \(Double(backend.pauseRemaining.milliseconds) / 1000) s left")
            print(
                "backend quota breaker: \(backend.breaker.rawValue)"
                    + (backend.breaker == .open
                        ? ", \(Double(backend.breakerRemaining.milliseconds) / 1000) s left" : ""))
            print(String(format: "backend budget factor: %.2f", backend.factor))
            print(
                "backend signals: \(backend.rateLimits) rate limits, \(backend.unavailable) unavailable, "
                    + "\(backend.quotaAnswers) quota")
        }
    }
}

struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "List, requeue or delete dead jobs.",
        subcommands: [List.self, Requeue.self, Delete.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead jobs, newest first.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Option(help: "At most this many. Default 100.") var limit: Int = 100

        func run() async throws {
            try await connection.withQueue { queue, _, _ in
                for record in try await queue.deadJobs(limit: limit) {
                    if output.json {
                        printJSON(record.jsonObject)
                    } else {
                        print("\(record.id)  \(record.user)  \(record.deadReason ?? "?")  \(record.errorMessage ?? "")")
                    }
                }
            }
        }
    }

    struct Requeue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Give dead jobs a fresh set of attempts.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Job ids.") var jobs: [String]

        func run() async throws {
            try await connection.withQueue { queue, _, _ in
                var missing = 0
                for job in jobs {
                    if try await queue.requeueDead(jobID: job) {
                        print("\(job) requeued")
                    } else {
                        print("\(job) is not dead")
                        missing += 1
                    }
                }
                if missing > 0 { throw ExitCode(1) }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead jobs and their records.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Job ids.") var jobs: [String]

        func run() async throws {
            try await connection.withQueue { queue, _, _ in
                for job in jobs {
                    let deleted = try await queue.deleteDead(jobID: job)
                    if output.json {
                        printJSON(["job": job, "deleted": deleted])
                    } else {
                        print(deleted ? "\(job) deleted" : "\(job) is not dead")
                    }
                }
            }
        }
    }
}
