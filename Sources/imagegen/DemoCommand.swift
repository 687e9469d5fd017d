import ArgumentParser
import Backends
import Foundation
import ImageIngest
import JobQueue
import Logging
import RedisQueue
import ServiceLifecycle
import Storage
import Worker

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract:
            "Run a worker with the simulated backend, enqueue jobs for several users, show progress, save images.",
        discussion: """
            Enqueues a bulk user's batch first, then a few users with one or two jobs each and one \
            edit of the bundled sample photo, on a fresh queue. Prints each job as it starts and \
            ends, writes every image to --out, and reports jobs per second and pickup latency \
            (enqueue to start).
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Folder for the images. Default ./demo-output.") var out: String = "demo-output"
    @Option(help: "Jobs of the bulk user. Default 24.") var bulkJobs: Int = 24
    @Option(help: "Worker slots. Default 8.") var slots: Int = 8
    @Option(help: "Simulated latency in milliseconds. Default 400.") var simLatencyMs: Int = 400
    @Option(help: "Photo to edit. Default samples/photo.png.") var image: String = "samples/photo.png"

    func run() async throws {
        let logger = connection.bootstrapLogging(defaultLevel: .warning)
        var options = connection
        if options.queue == nil { options.queue = "demo-\(UInt32.random(in: 0...UInt32.max))" }
        let (pool, queue, blobs) = try options.connect(
            logger: logger, poolSize: 2, completionLinger: .worker(slots: slots))
        defer {
            queue.close()
            pool.close()
        }
        var settings = QueueSettings()
        settings.userInFlightCap = 3
        try await queue.configure(settings)

        var workerConfiguration = WorkerConfiguration()
        workerConfiguration.slots = slots
        workerConfiguration.outputsWithCompletion = true  // the queue's own Redis blob store
        let service = WorkerService(
            configuration: workerConfiguration, queue: queue,
            backend: SimulatedBackend(configuration: .init(latency: .milliseconds(Int64(simLatencyMs)))),
            ingestor: ImageIngestor(), blobs: blobs, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: service)], gracefulShutdownSignals: [.sigint], logger: logger))

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            defer { tasks.cancelAll() }
            let events = queue.followEvents(after: "$")
            try await Task.sleep(for: .milliseconds(100))

            // The jobs: a bulk user first, then small users who must not wait behind it.
            let prompts = [
                "a lighthouse at dusk", "a red fox in snow", "a city of glass", "a bowl of lemons",
                "a sailing boat at dawn", "mountains under stars", "a cat reading a book", "a forest of blue trees",
            ]
            var specs: [(JobSpec, String)] = []
            for index in 0..<bulkJobs {
                specs.append(
                    (
                        JobSpec(
                            user: "bulk-user", tier: .free, prompt: "\(prompts[index % prompts.count]) #\(index)",
                            size: "512x512"), "bulk"
                    ))
            }
            for (index, user) in ["alice", "bob", "carol", "dave", "erin"].enumerated() {
                specs.append(
                    (
                        JobSpec(
                            user: user, tier: .standard, prompt: prompts[(index + 3) % prompts.count], size: "512x512"),
                        user
                    ))
            }
            specs.append((JobSpec(user: "frank", tier: .pro, prompt: prompts[7], size: "512x512", n: 2), "frank"))
            guard let photo = FileManager.default.contents(atPath: image) else {
                throw ValidationError("cannot read the sample photo \(image); run from the repository root")
            }
            let uploadKey = "upload:demo-\(UUID().uuidString.lowercased())"
            try await blobs.put(uploadKey, Array(photo), ttl: settings.retention)
            specs.append(
                (
                    JobSpec(
                        user: "grace", tier: .standard, kind: .edit, prompt: "make it look like a poster",
                        inputs: [uploadKey]), "grace"
                ))

            let started = ContinuousClock.now
            var ids: [String: String] = [:]
            for (spec, _) in specs {
                let result = try await queue.enqueue(spec)
                ids[result.jobID] = spec.user
            }
            print(
                "enqueued \(specs.count) jobs on queue \(queue.name): \(bulkJobs) for bulk-user, then 5 small users, 1 pro user, 1 edit"
            )

            var queuedAt: [String: Int64] = [:]
            var bulkPickups: [Double] = []
            var otherPickups: [Double] = []
            var finished = 0
            var outcomes: [String: String] = [:]
            for try await event in events where ids[event.jobID] != nil {
                switch event.type {
                case "queued": if queuedAt[event.jobID] == nil { queuedAt[event.jobID] = event.atMS }
                case "started":
                    if let queued = queuedAt[event.jobID] {
                        let wait = Double(event.atMS - queued)
                        if event.user == "bulk-user" { bulkPickups.append(wait) } else { otherPickups.append(wait) }
                    }
                    print(String(format: "[%3d/%d] started   %@  %@", finished, specs.count, event.jobID, event.user))
                    fflush(nil)
                case "succeeded", "failed", "canceled", "dead":
                    finished += 1
                    outcomes[event.jobID] = event.type
                    print(
                        String(
                            format: "[%3d/%d] %-9@ %@  %@", finished, specs.count, event.type, event.jobID, event.user))
                default: break
                }
                if finished == specs.count { break }
            }
            let elapsed = ContinuousClock.now - started
            var files: [String] = []
            for (id, user) in ids.sorted(by: { $0.key < $1.key }) where outcomes[id] == "succeeded" {
                if let record = try await queue.status(jobID: id), let result = record.result {
                    files += try await writeOutputs(result, jobID: id, prefix: "\(user)-", to: out, blobs: blobs)
                }
            }
            let seconds = Double(elapsed.milliseconds) / 1000
            func percentile(_ values: [Double], _ p: Double) -> Int {
                let sorted = values.sorted()
                guard !sorted.isEmpty else { return 0 }
                return Int(sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))])
            }
            print("")
            print(
                "done: \(outcomes.values.filter { $0 == "succeeded" }.count)/\(specs.count) succeeded in \(String(format: "%.2f", seconds)) s (\(String(format: "%.1f", Double(specs.count) / seconds)) jobs/s with \(slots) slots and \(simLatencyMs) ms simulated latency)"
            )
            print(
                "wait from enqueue to start (server clock): the other users' jobs p50 \(percentile(otherPickups, 0.5)) ms, "
                    + "max \(percentile(otherPickups, 1)) ms; the bulk user's \(bulkJobs) jobs p50 "
                    + "\(percentile(bulkPickups, 0.5)) ms, max \(percentile(bulkPickups, 1)) ms (enqueued first but "
                    + "capped at 3 running, so the others pass it)")
            print("wrote \(files.count) images to \(URL(fileURLWithPath: out).standardizedFileURL.path)")
            await group.triggerGracefulShutdown()
            try await tasks.next()
        }
    }
}
