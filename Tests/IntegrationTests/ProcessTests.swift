import Backends
import Foundation
import JobQueue
import RedisQueue
import Testing
import Webhooks

/// Tests with real processes: the `imagegen worker` binary, a Redis server restarted with its
/// append-only file, and the Python client.
@Suite("Processes", .serialized)
struct ProcessTests {
    @Test("a worker process killed mid-job: another worker completes the job exactly once")
    func crashRecovery() async throws {
        var settings = QueueSettings()
        settings.workerTimeout = .seconds(1)
        settings.lease = .seconds(20)
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("crash-user")).jobID

        let victim = try startWorkerProcess(
            queue: fixture.queue.name,
            arguments: ["--slots", "2", "--heartbeat-seconds", "0.2", "--sim-latency-ms", "60000"])
        try await fixture.waitForEvent(id, type: "started", timeout: .seconds(30))
        kill(victim.processIdentifier, SIGKILL)
        _ = try await offPool { victim.waitUntilExit() }
        #expect(try await fixture.queue.status(jobID: id)?.state == .active)

        let rescuer = RunningWorker(
            queue: fixture.queue, blobs: fixture.blobs,
            backend: SimulatedBackend(configuration: .init(latency: .milliseconds(20))))
        let record = try await fixture.waitUntilFinished(id, timeout: .seconds(30))
        try await rescuer.stop()

        #expect(record.state == .succeeded)
        #expect(record.recoveries == 1)
        #expect(record.attempts == 0)
        let events = try await fixture.events().filter { $0.jobID == id }
        #expect(events.filter { $0.type == "succeeded" }.count == 1)
        #expect(events.filter { $0.type == "started" }.count == 2)
        #expect(events.contains { $0.type == "queued" && $0.fields["reason"] == "worker_lost" })
    }

    @Test("a worker process killed while its webhook request is in flight: the delivery is sent again, same webhook-id")
    func webhookSurvivesKill() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let receiver = WebhookReceiver(script: [.hang])
        let root = try await receiver.start()
        defer { Task { await receiver.stop() } }
        let secret = WebhookSecret.generate()
        let victim = try startWorkerProcess(
            queue: fixture.queue.name,
            arguments: ["--sim-latency-ms", "10", "--webhook-allow-private-targets", "--webhook-timeout-seconds", "3"],
            environment: ["IMAGEGEN_WEBHOOK_SECRET": secret])
        let id = try await fixture.queue.enqueue(
            JobSpec(user: "hook-user", prompt: "x", size: "64x64", webhookURL: root + "/h")
        ).jobID
        #expect(try await eventually(timeout: .seconds(30)) { receiver.requests.count == 1 })
        kill(victim.processIdentifier, SIGKILL)  // while its request waits for an answer
        _ = try await offPool { victim.waitUntilExit() }
        #expect(try await fixture.queue.webhookDelivery(jobID: id)?["status"] == "pending")

        let rescuer = RunningDispatcher(queue: fixture.queue, secrets: [try WebhookSecret(secret)])
        let delivery = try await fixture.waitForDelivery(id, status: "delivered", timeout: .seconds(40))
        try await rescuer.stop()
        let requests = receiver.requests
        #expect(requests.count == 2)
        #expect(requests.count == 2 && requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"])
        #expect(delivery["attempts"] == "1")  // the dead process's attempt was never reported
        let status = try await cli(["status", id, "--json", "--redis", SharedRedis.url, "--queue", fixture.queue.name])
        #expect((status["webhook"] as? [String: String])?["status"] == "delivered")
        #expect((status["webhook"] as? [String: String])?["url"] == nil)
        let last = try #require(requests.last)
        #expect(
            WebhookSigner.verify(
                messageID: last.headers["webhook-id"] ?? "",
                timestamp: Int64(last.headers["webhook-timestamp"] ?? "") ?? 0,
                body: last.body, header: last.headers["webhook-signature"] ?? "", secrets: [try WebhookSecret(secret)]))
    }

    @Test("SIGTERM drains a worker process: the running job is handed back at once")
    func processDrain() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let id = try await fixture.queue.enqueue(spec("drain-user")).jobID
        let worker = try startWorkerProcess(
            queue: fixture.queue.name, arguments: ["--sim-latency-ms", "60000", "--drain-grace-seconds", "0.3"])
        try await fixture.waitForEvent(id, type: "started", timeout: .seconds(30))
        let stopping = ContinuousClock.now
        kill(worker.processIdentifier, SIGTERM)
        _ = try await offPool { worker.waitUntilExit() }
        #expect(ContinuousClock.now - stopping < .seconds(10))
        #expect(worker.terminationStatus == 0)
        let record = try #require(try await fixture.queue.status(jobID: id))
        #expect(record.state == .queued)
        #expect(record.attempts == 0 && record.recoveries == 0)
        #expect(try await fixture.events().contains { $0.jobID == id && $0.fields["reason"] == "released" })
    }

    @Test("Redis with append-only persistence restarts mid-run: the worker resumes by itself, no job is lost")
    func redisRestart() async throws {
        let server = try await RedisServerProcess.start(extraArguments: [
            "--appendonly", "yes", "--appendfsync", "always",
        ])
        defer { server.terminate() }
        var settings = QueueSettings()
        settings.lease = .seconds(2)
        settings.workerTimeout = .seconds(2)
        let fixture = try await QueueFixture(settings: settings, configuration: server.configuration)
        defer { fixture.close() }
        let worker = RunningWorker(
            queue: fixture.queue, blobs: fixture.blobs,
            backend: SimulatedBackend(configuration: .init(latency: .milliseconds(100))))
        var ids: [String] = []
        for index in 0..<40 { ids.append(try await fixture.queue.enqueue(spec("user-\(index % 5)")).jobID) }

        #expect(try await eventually(timeout: .seconds(30)) { try await succeeded(ids, fixture) >= 8 })
        try await server.restart()
        let allDone = try await eventually(timeout: .seconds(90)) {
            (try? await succeeded(ids, fixture)) == ids.count
        }
        let done = try await succeeded(ids, fixture)
        #expect(allDone, "\(done) of \(ids.count) jobs succeeded after the restart")
        try await worker.stop()
    }

    @Test("the CLI: enqueue, status, stats, cancel, watch and result, with --json")
    func commandLine() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let common = ["--redis", SharedRedis.url, "--queue", fixture.queue.name]
        let enqueued = try await cli(
            [
                "enqueue", "--user", "cli-user", "--prompt", "a quiet harbour", "--size", "64x64",
                "--idempotency-key", "cli-1", "--json",
            ] + common)
        let job = try #require(enqueued["job"] as? String)
        #expect(enqueued["created"] as? Bool == true)
        let again = try await cli(
            ["enqueue", "--user", "cli-user", "--prompt", "x", "--idempotency-key", "cli-1", "--json"] + common)
        #expect(again["job"] as? String == job)
        #expect(again["created"] as? Bool == false)
        #expect(try await cli(["status", job, "--json"] + common)["state"] as? String == "queued")
        let stats = try await cli(["stats", "--json"] + common)
        #expect((stats["queued_by_tier"] as? [String: Int])?["standard"] == 1)
        #expect((stats["backend"] as? [String: Any])?["breaker"] as? String == "closed")

        let other = try #require(
            try await cli(["enqueue", "--user", "cli-user", "--prompt", "p", "--json"] + common)["job"] as? String)
        #expect(try await cli(["cancel", other, "--json"] + common)["was"] as? String == "queued")
        #expect(try await cli(["status", other, "--json"] + common)["state"] as? String == "canceled")

        let worker = RunningWorker(
            queue: fixture.queue, blobs: fixture.blobs,
            backend: SimulatedBackend(configuration: .init(latency: .milliseconds(20))))
        let watched = try await cli(["watch", job, "--after", "0", "--json"] + common)  // returns at the job's end
        #expect(watched["type"] as? String == "succeeded" || watched["state"] as? String == "succeeded")
        try await worker.stop()
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("imagegen-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let files = try #require(
            try await cli(["result", job, "--out", out.path, "--json"] + common)["files"] as? [String])
        #expect(files.count == 1)
        #expect(FileManager.default.contents(atPath: files[0])?.starts(with: [0x89, 0x50, 0x4E, 0x47]) == true)
        await #expect(throws: (any Error).self) {
            try await cli(["enqueue", "--user", "bad user", "--prompt", "x"] + common)
        }
    }

    @Test("imagegen worker refuses settings out of range before it connects", .timeLimit(.minutes(1)))
    func workerRefusesBadSettings() async throws {
        for bad in [
            ["--completion-linger-ms", "5000"], ["--completion-linger-ms", "-1"],
            ["--openai-answer-memory-mb", "0"], ["--openai-answer-memory-mb", "9000000000000"],
        ] {
            await #expect(throws: (any Error).self, "\(bad)") {
                try await cli(["worker", "--redis", "redis://127.0.0.1:1/0"] + bad)
            }
        }
    }

    @Test("imagegen ingest: a verdict per file, codes for refusals, exit 1 when any is refused")
    func ingestCommand() async throws {
        let corpus = packageRoot.appendingPathComponent("Tests/Corpus/jpeg")
        let photo = packageRoot.appendingPathComponent("samples/photo.png").path
        let process = Process()
        process.executableURL = packageRoot.appendingPathComponent(".build/debug/imagegen")
        process.arguments = [
            "ingest", "--json", "--fit", "100x100", photo, corpus.appendingPathComponent("shira_bird8.bmp").path,
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = try await offPool {
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return data
        }
        #expect(process.terminationStatus == 1)
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(lines.count == 2)
        #expect(lines.first?["verdict"] as? String == "accepted")
        let normalized = lines.first?["normalized"] as? [String: Any]
        #expect(normalized?["width"] as? Int == 100)
        #expect(lines.last?["verdict"] as? String == "refused")
        #expect(lines.last?["code"] as? String == "unsupported_format")
    }

    @Test("the Python client enqueues (idempotently, and many at once) and a Swift worker completes its jobs")
    func pythonClient() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let worker = RunningWorker(
            queue: fixture.queue, blobs: fixture.blobs,
            backend: SimulatedBackend(configuration: .init(latency: .milliseconds(20))))
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("imagegen-py-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let script = packageRoot.appendingPathComponent("clients/python/example_enqueue.py").path
        let output = try await runToolAsync(
            "python3",
            [
                script, "--redis", SharedRedis.url, "--queue", fixture.queue.name, "--image",
                packageRoot.appendingPathComponent("samples/photo.png").path, "--out", out.path,
            ])
        try await worker.stop()
        let line = try #require(output.split(separator: "\n").last)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(report["ok"] as? Bool == true)
        let generate = try #require(report["generate"] as? String)
        let edit = try #require(report["edit"] as? String)
        #expect(try await fixture.queue.status(jobID: generate)?.state == .succeeded)
        #expect(try await fixture.queue.status(jobID: edit)?.state == .succeeded)
        #expect((report["outputs"] as? [String])?.count == 2)
        let batch = try #require(report["batch"] as? [String])
        #expect(batch.count == 2)
        for id in batch { #expect(try await fixture.queue.status(jobID: id)?.state == .succeeded) }
    }
}

private func succeeded(_ ids: [String], _ fixture: QueueFixture) async throws -> Int {
    var count = 0
    for id in ids where try await fixture.queue.status(jobID: id)?.state == .succeeded { count += 1 }
    return count
}

/// Starts `imagegen worker` from this build on the shared Redis, with `environment` added to this
/// process's.
private func startWorkerProcess(queue: String, arguments: [String], environment: [String: String] = [:]) throws
    -> Process
{
    let binary = packageRoot.appendingPathComponent(".build/debug/imagegen")
    guard FileManager.default.isExecutableFile(atPath: binary.path) else {
        throw TestFailure("\(binary.path) is missing: build it first (swift build)")
    }
    let process = Process()
    process.executableURL = binary
    process.arguments = ["worker", "--redis", SharedRedis.url, "--queue", queue, "--log-level", "warning"] + arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
}

/// Runs `imagegen` with `arguments` and returns the last JSON object it printed; throws when it
/// exits non-zero.
@discardableResult
private func cli(_ arguments: [String]) async throws -> [String: Any] {
    let last = try await offPool { try cliBlocking(arguments) }
    return (try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]) ?? [:]
}

/// Runs `imagegen` to completion; returns its last line of output.
private func cliBlocking(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = packageRoot.appendingPathComponent(".build/debug/imagegen")
    process.arguments = arguments + ["--log-level", "error"]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw TestFailure("imagegen \(arguments.first ?? "") exited with \(process.terminationStatus)")
    }
    return String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? "{}"
}

/// Runs a tool off the cooperative pool and returns its standard output.
private func runToolAsync(_ tool: String, _ arguments: [String]) async throws -> String {
    try await offPool { try runTool(tool, arguments) }
}
