import ArgumentParser
import Foundation
import JobQueue
import RedisQueue

struct PurgeUserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge-user",
        abstract: "Delete all of a user's data: jobs in every state, uploads, outputs, history, events.",
        discussion: """
            A running job is fenced out at once and its worker told to abort; anything it would \
            still write is deleted when it notices. Safe to run again: a second purge finds nothing. \
            Writes an audit line (hashed user id and counts, no content) to the log.
            """)
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The user id.") var user: String

    func run() async throws {
        try await connection.withQueue { queue, _, logger in
            let report = try await queue.purgeUser(user)
            let salt = ProcessInfo.processInfo.environment["IMAGEGEN_USER_HASH_SALT"] ?? ""
            logger.notice(
                "user data purged",
                metadata: [
                    "audit": "purge_user", "user.hash": "\(UserHasher(salt: salt).hash(user))",
                    "purge.jobs": "\(report.jobs)",
                    "purge.keys": "\(report.keys)", "purge.events": "\(report.events)",
                ])
            if output.json {
                printJSON(["jobs": report.jobs, "keys": report.keys, "events": report.events])
            } else {
                print("deleted \(report.jobs) jobs (\(report.keys) keys) and \(report.events) events")
            }
        }
    }
}

struct DeleteJobCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete-job",
        abstract: "Delete one job with its uploads and outputs; a running job is aborted.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The job id.") var job: String

    func run() async throws {
        try await connection.withQueue { queue, _, logger in
            let deleted = try await queue.deleteJob(jobID: job)
            logger.notice(
                "job deleted", metadata: ["audit": "delete_job", "job.id": "\(job)", "found": "\(deleted != nil)"])
            if output.json {
                printJSON(["job": job, "deleted": deleted != nil, "keys": deleted ?? 0])
            } else {
                print(deleted.map { "\(job) deleted (\($0) keys)" } ?? "\(job): no such job")
            }
            if deleted == nil { throw ExitCode(1) }
        }
    }
}

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "A user's recent jobs, newest first, as long as the retention keeps them.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The user id.") var user: String
    @Option(help: "At most this many. Default 50.") var limit: Int = 50

    func run() async throws {
        try await connection.withQueue { queue, _, _ in
            for record in try await queue.history(user: user, limit: limit) {
                if output.json {
                    printJSON(record.jsonObject)
                } else {
                    let created = ISO8601DateFormatter().string(
                        from: Date(timeIntervalSince1970: Double(record.createdMS) / 1000))
                    print(
                        "\(created)  \(record.id)  \(record.kind)  \(record.state.rawValue)\(record.errorCode.map { " (\($0))" } ?? "")"
                    )
                }
            }
        }
    }
}

struct RetentionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retention", abstract: "Check that user content expires within the retention.",
        subcommands: [Audit.self])

    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Scan the queue's keys; list every key without a TTL or with one longer than the retention.",
            discussion: "Exits 1 when any key breaks the retention.")
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Option(help: "The retention to check against, in days. Default: the queue's setting.") var days: Double?

        func run() async throws {
            try await connection.withQueue { queue, _, _ in
                let retention = days.map { Duration.milliseconds(Int64($0 * 86_400_000)) }
                let findings = try await queue.retentionAudit(retention: retention)
                if output.json {
                    printJSON([
                        "clean": findings.isEmpty, "findings": findings.map { ["key": $0.key, "ttl_ms": $0.ttlMS] },
                    ])
                } else if findings.isEmpty {
                    print("clean: every key holding user content expires within the retention")
                } else {
                    for finding in findings {
                        print("\(finding.key): \(finding.ttlMS < 0 ? "no TTL" : "TTL \(finding.ttlMS / 1000) s")")
                    }
                }
                if !findings.isEmpty { throw ExitCode(1) }
            }
        }
    }
}
