import Foundation
import JobQueue
import Logging
import RedisClient
import RedisQueue
import ServiceLifecycle
import Storage
import Synchronization
import Testing
import Webhooks

/// A webhook dispatcher running in this process on a fixture's queue, stopped gracefully by `stop()`.
final class RunningDispatcher: Sendable {
    let group: ServiceGroup
    let task: Task<Void, Error>

    init(
        queue: RedisJobQueue, secrets: [WebhookSecret], allowPrivate: Bool = true,
        configure: (inout WebhookDispatcher.Configuration) -> Void = { _ in }
    ) {
        var configuration = WebhookDispatcher.Configuration()
        configuration.policy = WebhookTargetPolicy(allowPrivateTargets: allowPrivate)
        configuration.requestTimeout = .seconds(2)
        configuration.schedule = WebhookRetrySchedule(
            delays: [.milliseconds(50), .milliseconds(50), .milliseconds(50)], jitter: 0)
        configure(&configuration)
        let dispatcher = WebhookDispatcher(
            configuration: configuration, queue: queue, signer: WebhookSigner(secrets: secrets), logger: testLogger)
        group = ServiceGroup(
            configuration: .init(
                services: [.init(service: dispatcher)], gracefulShutdownSignals: [], logger: testLogger))
        let group = self.group
        task = Task { try await group.run() }
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

extension QueueFixture {
    /// Runs one job to `state` through the queue's own functions: claim, then complete, fail or cancel.
    func finish(_ spec: JobSpec, as state: JobState = .succeeded) async throws -> String {
        let id = try await queue.enqueue(spec).jobID
        if state == .canceled {
            _ = try await queue.cancel(jobID: id)
            return id
        }
        let claimed = try await queue.claim(workerID: "w-\(id)", limit: 10).jobs
        let job = try #require(claimed.first { $0.lease.jobID == id })
        switch state {
        case .failed:
            _ = try await queue.fail(
                job.lease, failure: JobFailure(code: "moderation_blocked", message: "refused", disposition: .terminal))
        default:
            let result = JobResult(
                outputs: [
                    OutputReference(
                        key: BlobKey.output(jobID: id, index: 0), format: "png", width: 8, height: 8, bytes: 99)
                ],
                usage: .init(images: 1, size: "8x8", model: "test"),
                durations: .init(ingestMS: 0, backendMS: 1, storeMS: 1))
            try await queue.complete(job.lease, result: result)
        }
        return id
    }

    /// Waits until the job's delivery has `status` (`delivered`, `failed`, `disabled`, `refused`).
    func waitForDelivery(_ jobID: String, status: String, timeout: Duration = .seconds(15)) async throws -> [String:
        String]
    {
        var last: [String: String]?
        let reached = try await eventually(timeout: timeout) {
            last = try await queue.webhookDelivery(jobID: jobID)
            return last?["status"] == status
        }
        guard reached, let last else {
            throw TestFailure("delivery of \(jobID) never reached \(status): \(String(describing: last))")
        }
        return last
    }
}

@Suite("Webhooks")
struct WebhookTests {
    @Test("a finished job's webhook is signed per Standard Webhooks, verified by an independent Python implementation")
    func signatureVerifiedByPython() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let receiver = WebhookReceiver()
        let root = try await receiver.start()
        defer { Task { await receiver.stop() } }
        let (newSecret, oldSecret) = (WebhookSecret.generate(), WebhookSecret.generate())
        let dispatcher = RunningDispatcher(
            queue: fixture.queue, secrets: [try WebhookSecret(newSecret), try WebhookSecret(oldSecret)])
        let prompt = "PROMPT-\(UUID().uuidString)"
        let id = try await fixture.finish(
            JobSpec(user: "ann", prompt: prompt, webhookURL: root + "/hooks/a", metadata: ["order": "o-1"]))
        _ = try await fixture.waitForDelivery(id, status: "delivered")
        try await dispatcher.stop()

        let request = try #require(receiver.requests.first)
        #expect(receiver.requests.count == 1)
        #expect(request.path == "/hooks/a")
        let messageID = try #require(request.headers["webhook-id"])
        let timestamp = try #require(request.headers["webhook-timestamp"])
        let signature = try #require(request.headers["webhook-signature"])
        #expect(signature.split(separator: " ").count == 2)  // one per secret during rotation
        #expect(request.headers["content-type"] == "application/json")
        let body = String(decoding: request.body, as: UTF8.self)
        #expect(!body.contains(prompt))
        let payload = try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
        #expect(payload["type"] as? String == "job.succeeded")
        let data = try #require(payload["data"] as? [String: Any])
        #expect(data["job_id"] as? String == id)
        #expect((data["metadata"] as? [String: String]) == ["order": "o-1"])
        #expect((data["outputs"] as? [[String: Any]])?.first?["key"] as? String == BlobKey.output(jobID: id, index: 0))

        // Each secret alone verifies (a receiver may hold either during rotation); a changed body does not.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("webhook-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        func python(_ secret: String, body: [UInt8]) async throws -> String {
            try Data(body).write(to: file)
            let script = packageRoot.appendingPathComponent("docs/webhook_verify.py").path
            return try await offPool {
                try runTool(
                    "env",
                    [
                        "python3", script, "--id", messageID, "--timestamp", timestamp, "--signature", signature,
                        "--secret", secret, file.path,
                    ])
            }.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try await python(newSecret, body: request.body) == "valid")
        #expect(try await python(oldSecret, body: request.body) == "valid")
        #expect(try await python(WebhookSecret.generate(), body: request.body).hasPrefix("invalid"))
        var tampered = request.body
        tampered[tampered.count / 2] ^= 0x01
        #expect(try await python(newSecret, body: tampered).hasPrefix("invalid"))
    }

    @Test(
        "each terminal path is notified: failed, canceled, dead; the deployment's default URL serves jobs without one")
    func terminalPathsAndDefaultURL() async throws {
        var settings = QueueSettings()
        settings.maxAttempts = 1
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let receiver = WebhookReceiver()
        let root = try await receiver.start()
        defer { Task { await receiver.stop() } }
        try await fixture.queue.setWebhookDefaultURL(root + "/default")
        let dispatcher = RunningDispatcher(queue: fixture.queue, secrets: [try WebhookSecret(WebhookSecret.generate())])
        let failed = try await fixture.finish(JobSpec(user: "u", prompt: "x", webhookURL: root + "/own"), as: .failed)
        let canceled = try await fixture.finish(JobSpec(user: "u", prompt: "x"), as: .canceled)
        let dead = try await fixture.queue.enqueue(JobSpec(user: "u", prompt: "x")).jobID
        let lease = try #require(try await fixture.queue.claim(workerID: "w", limit: 1).jobs.first).lease
        _ = try await fixture.queue.fail(
            lease, failure: JobFailure(code: "timeout", message: "t", disposition: .retry(after: .zero)))
        for id in [failed, canceled, dead] { _ = try await fixture.waitForDelivery(id, status: "delivered") }
        try await dispatcher.stop()
        var byJob: [String: (path: String, payload: [String: Any])] = [:]
        for request in receiver.requests {
            let payload = try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
            let data = try #require(payload["data"] as? [String: Any])
            byJob[data["job_id"] as? String ?? ""] = (request.path, payload)
        }
        #expect(byJob[failed]?.path == "/own")
        #expect(byJob[failed]?.payload["type"] as? String == "job.failed")
        #expect((byJob[failed]?.payload["data"] as? [String: Any])?["error_code"] as? String == "moderation_blocked")
        #expect(byJob[canceled]?.path == "/default")
        #expect(byJob[canceled]?.payload["type"] as? String == "job.canceled")
        #expect(byJob[dead]?.payload["type"] as? String == "job.dead")
        #expect((byJob[dead]?.payload["data"] as? [String: Any])?["error_code"] as? String == "max_attempts")
        #expect(receiver.requests.count == 3)
        // Every webhook key expires within the retention.
        #expect(try await fixture.keysBreakingRetention(settings.retention).isEmpty)
    }

    @Test(
        "retries against a real server: no answer, a redirect (not followed), 500, then 429 with Retry-After; same webhook-id"
    )
    func retriesAndRetryAfter() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let receiver = WebhookReceiver(script: [
            .hang, .status(302, headers: [("Location", "/elsewhere")]), .status(500),
            .status(429, headers: [("Retry-After", "3600")]),
        ])
        let root = try await receiver.start()
        defer { Task { await receiver.stop() } }
        let dispatcher = RunningDispatcher(queue: fixture.queue, secrets: [try WebhookSecret(WebhookSecret.generate())])
        {
            $0.requestTimeout = .milliseconds(500)
            $0.schedule = WebhookRetrySchedule(delays: Array(repeating: .milliseconds(50), count: 6), jitter: 0)
        }
        let id = try await fixture.finish(JobSpec(user: "u", prompt: "x", webhookURL: root + "/hook"))
        #expect(
            try await eventually(timeout: .seconds(15)) {
                (try await fixture.queue.webhookDelivery(jobID: id))?["last_status"] == "429"
            })
        try await dispatcher.stop()
        let requests = receiver.requests
        #expect(requests.count == 4)
        #expect(requests.allSatisfy { $0.path == "/hook" })  // the redirect was not followed
        #expect(Set(requests.compactMap { $0.headers["webhook-id"] }).count == 1)
        let delivery = try #require(try await fixture.queue.webhookDelivery(jobID: id))
        #expect(delivery["status"] == "pending")
        #expect(delivery["attempts"] == "4")
        // Retry-After (an hour) pushed the next attempt far past the schedule's 50 ms.
        let due = try #require(try await fixture.pool.send("ZSCORE", fixture.queue.keys.webhooksDue, id).string)
        let time = try #require(try await fixture.pool.send("TIME").array)
        let nowMS = (Int(time[0].string ?? "0") ?? 0) * 1000
        #expect((Int(Double(due) ?? 0) - nowMS) > 30 * 60 * 1000)
    }

    @Test(
        "the last attempt gives up; a 410 disables the endpoint for later jobs while other endpoints still get theirs")
    func givesUpAndGone() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let failing = WebhookReceiver(script: Array(repeating: .status(503), count: 10))
        let failingRoot = try await failing.start()
        let gone = WebhookReceiver(script: [.status(410)])
        let goneRoot = try await gone.start()
        let healthy = WebhookReceiver()
        let healthyRoot = try await healthy.start()
        defer { Task { for receiver in [failing, gone, healthy] { await receiver.stop() } } }
        let dispatcher = RunningDispatcher(queue: fixture.queue, secrets: [try WebhookSecret(WebhookSecret.generate())])

        let doomed = try await fixture.finish(JobSpec(user: "u", prompt: "x", webhookURL: failingRoot + "/h"))
        let failed = try await fixture.waitForDelivery(doomed, status: "failed")
        #expect(failed["attempts"] == "4")  // the schedule's 3 waits: 4 attempts
        #expect(failing.requests.count == 4)

        let first = try await fixture.finish(JobSpec(user: "u", prompt: "x", webhookURL: goneRoot + "/h"))
        _ = try await fixture.waitForDelivery(first, status: "disabled")
        let later = try await fixture.finish(JobSpec(user: "u", prompt: "x", webhookURL: goneRoot + "/h"))
        let other = try await fixture.finish(JobSpec(user: "u", prompt: "x", webhookURL: healthyRoot + "/h"))
        _ = try await fixture.waitForDelivery(other, status: "delivered")
        try await dispatcher.stop()
        #expect(try await fixture.queue.webhookDelivery(jobID: later) == nil)  // never recorded
        #expect(gone.requests.count == 1)
        #expect(healthy.requests.count == 1)
    }

    @Test("SSRF: a dispatcher not configured for private targets refuses a loopback URL without sending anything")
    func refusesLoopback() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let receiver = WebhookReceiver()
        let root = try await receiver.start()
        defer { Task { await receiver.stop() } }
        let dispatcher = RunningDispatcher(
            queue: fixture.queue, secrets: [try WebhookSecret(WebhookSecret.generate())], allowPrivate: false)
        let id = try await fixture.finish(JobSpec(user: "u", prompt: "x", webhookURL: root + "/h"))
        let localhost = try await fixture.finish(
            JobSpec(user: "u", prompt: "x", webhookURL: root.replacingOccurrences(of: "127.0.0.1", with: "localhost")))
        let refused = try await fixture.waitForDelivery(id, status: "refused")
        #expect(refused["last_error"]?.contains("loopback") == true)
        _ = try await fixture.waitForDelivery(localhost, status: "refused")
        try await dispatcher.stop()
        #expect(receiver.requests.isEmpty)
    }

    @Test(
        "a delivery survives a dispatcher that dies mid-delivery: after its lease it is sent with the same webhook-id")
    func leaseExpiryRedelivers() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let receiver = WebhookReceiver()
        let root = try await receiver.start()
        defer { Task { await receiver.stop() } }
        let id = try await fixture.finish(JobSpec(user: "u", prompt: "x", webhookURL: root + "/h"))
        // A dispatcher claims the delivery and dies before sending or reporting anything.
        let claim = try await fixture.queue.claimWebhooks(dispatcherID: "doomed", limit: 10, lease: .milliseconds(400))
        let lost = try #require(claim.deliveries.first)
        #expect(lost.jobID == id && lost.attempt == 1)
        // While its lease holds, nobody else may take it.
        #expect(
            try await fixture.queue.claimWebhooks(dispatcherID: "other", limit: 10, lease: .seconds(5)).deliveries
                .isEmpty)

        let dispatcher = RunningDispatcher(queue: fixture.queue, secrets: [try WebhookSecret(WebhookSecret.generate())])
        _ = try await fixture.waitForDelivery(id, status: "delivered")
        try await dispatcher.stop()
        #expect(receiver.requests.count == 1)
        #expect(receiver.requests.first?.headers["webhook-id"] == lost.messageID)
        // The dead dispatcher's late report changes nothing.
        await #expect(throws: QueueError.self) {
            try await fixture.queue.reportWebhook(lost, outcome: .failed(status: 0, reason: "late"))
        }
        #expect(try await fixture.queue.webhookDelivery(jobID: id)?["status"] == "delivered")
    }

    @Test("graceful shutdown lets a request in flight end and reports it: nothing is left leased")
    func gracefulShutdown() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let receiver = WebhookReceiver(script: [.hang])
        let root = try await receiver.start()
        defer { Task { await receiver.stop() } }
        let dispatcher = RunningDispatcher(queue: fixture.queue, secrets: [try WebhookSecret(WebhookSecret.generate())])
        {
            $0.requestTimeout = .milliseconds(500)
        }
        let id = try await fixture.finish(JobSpec(user: "u", prompt: "x", webhookURL: root + "/h"))
        #expect(try await eventually { receiver.requests.count == 1 })
        try await dispatcher.stop()
        let delivery = try #require(try await fixture.queue.webhookDelivery(jobID: id))
        #expect(delivery["attempts"] == "1")  // the attempt ended (timed out) and was reported
        #expect(delivery["token"] == "")  // no lease left behind
        #expect(delivery["status"] == "pending")  // to be retried by the schedule
    }

    @Test("purge-user deletes the user's webhook deliveries; other users' remain")
    func purgeRemovesDeliveries() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let url = "https://hooks.example.com/imagegen"  // no dispatcher runs: deliveries stay pending
        let victim = "victim-\(UUID().uuidString.prefix(8))"
        let victimJobs = [
            try await fixture.finish(JobSpec(user: victim, prompt: "x", webhookURL: url)),
            try await fixture.finish(JobSpec(user: victim, prompt: "y", webhookURL: url), as: .failed),
        ]
        let bystander = try await fixture.finish(JobSpec(user: "bystander", prompt: "z", webhookURL: url))
        for id in victimJobs + [bystander] { #expect(try await fixture.queue.webhookDelivery(jobID: id) != nil) }

        _ = try await fixture.queue.purgeUser(victim)
        for id in victimJobs {
            #expect(try await fixture.queue.webhookDelivery(jobID: id) == nil)
            #expect(try await fixture.pool.send("ZSCORE", fixture.queue.keys.webhooksDue, id).isNull)
        }
        #expect(!(try await PrivacyTests.dump(fixture)).contains(victim))
        #expect(try await fixture.queue.webhookDelivery(jobID: bystander)?["user"] == "bystander")
        #expect(try await fixture.pool.send("ZSCORE", fixture.queue.keys.webhooksDue, bystander).isNull == false)
        // delete-job too.
        #expect(try await fixture.queue.deleteJob(jobID: bystander) != nil)
        #expect(try await fixture.queue.webhookDelivery(jobID: bystander) == nil)
    }
}
