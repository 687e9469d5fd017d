import ArgumentParser

/// The `imagegen` command: one executable for workers, operators and the demo.
@main
struct Imagegen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imagegen",
        abstract: "Asynchronous image-generation job queue worker and tools.",
        discussion: """
            Redis comes from --redis or IMAGEGEN_REDIS_URL (default redis://127.0.0.1:6379/0); \
            ACL credentials from the URL, or IMAGEGEN_REDIS_USERNAME / IMAGEGEN_REDIS_PASSWORD, \
            or --redis-password-file. The queue is --queue or IMAGEGEN_QUEUE (default "default").
            """,
        subcommands: [
            WorkerCommand.self, EnqueueCommand.self, StatusCommand.self, WatchCommand.self, ResultCommand.self,
            CancelCommand.self, StatsCommand.self, DeadLetterCommand.self, HistoryCommand.self, PurgeUserCommand.self,
            DeleteJobCommand.self,
            RetentionCommand.self, IngestCommand.self, DemoCommand.self, FakeBackendCommand.self,
        ])
}
