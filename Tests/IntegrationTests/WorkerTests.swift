import Backends
import Foundation
import ImageIngest
import JobQueue
import RedisQueue
import Storage
import Synchronization
import Testing
import ThreadSupport
import Worker

@Suite("Worker")
struct WorkerTests {
    /// Outputs go with the completion (up to the limit) or by a `SET` of their own first (limit 0).
    @Test(
        "generate and edit jobs run end to end; outputs are PNGs stored with a TTL",
        arguments: [WorkerConfiguration().completionOutputLimit, 0])
    func endToEnd(completionOutputLimit: Int) async throws {
        var settings = QueueSettings()
        settings.retention = .seconds(7200)
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let worker = RunningWorker(
            queue: fixture.queue, blobs: fixture.blobs,
            backend: SimulatedBackend(configuration: .init(latency: .milliseconds(20))),
            configure: {
                $0.outputTTL = .seconds(7200)
                $0.completionOutputLimit = completionOutputLimit
            })

        let photo = try Data(contentsOf: packageRoot.appendingPathComponent("samples/photo.png"))
        try await fixture.blobs.put("upload:photo", Array(photo), ttl: .seconds(7200))
        let generate = try await fixture.queue.enqueue(
            JobSpec(user: "ann", prompt: "a lighthouse", size: "128x96", n: 2)
        ).jobID
        let edit = try await fixture.queue.enqueue(
            JobSpec(user: "bob", kind: .edit, prompt: "poster", inputs: ["upload:photo"])
        ).jobID

        let generated = try await fixture.waitUntilFinished(generate)
        #expect(generated.state == .succeeded)
        let outputs = try #require(generated.result?.outputs)
        #expect(outputs.count == 2)
        for output in outputs {
            let bytes = try #require(try await fixture.blobs.get(output.key))
            #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]))
            #expect(try PNGCodec.decode(bytes).width == 128)
            let ttl = try await fixture.pool.send("PTTL", fixture.queue.keys.blobPrefix + output.key).int ?? -1
            #expect(ttl > 0 && ttl <= 7_200_000)
        }
        #expect(generated.result?.usage.images == 2)

        let edited = try await fixture.waitUntilFinished(edit)
        #expect(edited.state == .succeeded)
        #expect(edited.result?.outputs.first?.width == 227)  // the photo's size

        let types = try await fixture.events().filter { $0.jobID == generate }.map(\.type)
        #expect(types == ["queued", "started", "progress", "progress", "succeeded"])
        try await worker.stop()
        #expect(try await fixture.keysBreakingRetention(.seconds(7200)).isEmpty)
    }

    @Test("a bad upload fails the job at once as terminal, with the ingest code")
    func badUploadIsTerminal() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let backend = CountingBackend()
        let worker = RunningWorker(queue: fixture.queue, blobs: fixture.blobs, backend: backend)
        try await fixture.blobs.put("upload:gif", Array("GIF89a\u{1}\u{0}\u{1}\u{0}".utf8), ttl: .seconds(60))
        let gif = try await fixture.queue.enqueue(JobSpec(user: "u", kind: .edit, prompt: "x", inputs: ["upload:gif"]))
            .jobID
        let missing = try await fixture.queue.enqueue(
            JobSpec(user: "u", kind: .edit, prompt: "x", inputs: ["upload:gone"])
        ).jobID

        let gifRecord = try await fixture.waitUntilFinished(gif)
        #expect(gifRecord.state == .failed)
        #expect(gifRecord.errorCode == "unsupported_format")
        #expect(gifRecord.attempts == 1)
        let missingRecord = try await fixture.waitUntilFinished(missing)
        #expect(missingRecord.state == .failed)
        #expect(missingRecord.errorCode == "input_missing")
        #expect(backend.calls == 0)  // nothing reached the paid backend
        try await worker.stop()
    }

    @Test("retryable backend errors retry with backoff and end dead after max attempts")
    func retriesThenDead() async throws {
        var settings = QueueSettings()
        settings.maxAttempts = 3
        let fixture = try await QueueFixture(settings: settings)
        defer { fixture.close() }
        let worker = RunningWorker(
            queue: fixture.queue, blobs: fixture.blobs,
            backend: FailingBackend(error: BackendError(.unavailable, "503")))
        let id = try await fixture.queue.enqueue(spec("u")).jobID
        let record = try await fixture.waitUntilFinished(id)
        #expect(record.state == .dead)
        #expect(record.deadReason == "max_attempts")
        #expect(record.attempts == 3)
        let types = try await fixture.events().filter { $0.jobID == id }.map(\.type)
        #expect(types.filter { $0 == "retrying" }.count == 2)
        try await worker.stop()
    }

    @Test("moderation refusals are terminal and never retried")
    func moderationIsTerminal() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let worker = RunningWorker(
            queue: fixture.queue, blobs: fixture.blobs,
            backend: FailingBackend(error: BackendError(.moderationBlocked, "refused by moderation")))
        let id = try await fixture.queue.enqueue(spec("u")).jobID
        let record = try await fixture.waitUntilFinished(id)
        #expect(record.state == .failed)
        #expect(record.errorCode == "moderation_blocked")
        #expect(try await fixture.events().filter { $0.jobID == id && $0.type == "started" }.count == 1)
        try await worker.stop()
    }

    @Test("canceling a running job aborts its backend call within a second")
    func cancelRunningJob() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let backend = CountingBackend(latency: .seconds(30))
        let worker = RunningWorker(queue: fixture.queue, blobs: fixture.blobs, backend: backend)
        let id = try await fixture.queue.enqueue(spec("u")).jobID
        try await fixture.waitForEvent(id, type: "progress")
        try await Task.sleep(for: .milliseconds(100))
        let canceledAt = ContinuousClock.now
        #expect(try await fixture.queue.cancel(jobID: id) == "active")
        let aborted = try await eventually(timeout: .seconds(5)) { backend.abortedAt != nil }
        #expect(aborted)
        if let abortedAt = backend.abortedAt { #expect(abortedAt - canceledAt < .seconds(1)) }
        #expect(try await fixture.queue.status(jobID: id)?.state == .canceled)
        try await worker.stop()
    }

    @Test("graceful drain: running jobs past the grace period are handed back at once, without spending an attempt")
    func drainHandsJobsBack() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let slow = CountingBackend(latency: .seconds(60))
        let worker = RunningWorker(
            queue: fixture.queue, blobs: fixture.blobs, backend: slow,
            configure: { $0.drainGracePeriod = .milliseconds(200) })
        let first = try await fixture.queue.enqueue(spec("a")).jobID
        let second = try await fixture.queue.enqueue(spec("b")).jobID
        try await fixture.waitForEvent(first, type: "progress")
        try await fixture.waitForEvent(second, type: "progress")
        let stopping = ContinuousClock.now
        try await worker.stop()
        #expect(ContinuousClock.now - stopping < .seconds(5))
        for id in [first, second] {
            let record = try #require(try await fixture.queue.status(jobID: id))
            #expect(record.state == .queued)
            #expect(record.attempts == 0)
            #expect(record.recoveries == 0)
        }
        // Another worker takes them straight away (no lease expiry to wait for).
        let next = try await fixture.queue.claim(workerID: "next", limit: 10)
        #expect(Set(next.jobs.map(\.lease.jobID)) == [first, second])
    }

    @Test("graceful drain lets short jobs finish")
    func drainFinishesShortJobs() async throws {
        let fixture = try await QueueFixture()
        defer { fixture.close() }
        let backend = CountingBackend(latency: .milliseconds(500))
        let worker = RunningWorker(
            queue: fixture.queue, blobs: fixture.blobs, backend: backend,
            configure: { $0.drainGracePeriod = .seconds(10) })
        let id = try await fixture.queue.enqueue(spec("a")).jobID
        try await fixture.waitForEvent(id, type: "progress")
        try await worker.stop()
        #expect(try await fixture.queue.status(jobID: id)?.state == .succeeded)
    }
}

/// A backend that counts calls, waits `latency`, and records when it was canceled.
final class CountingBackend: ImageModelBackend, Sendable {
    private let state = Mutex<(calls: Int, running: Int, maxConcurrent: Int, abortedAt: ContinuousClock.Instant?)>(
        (0, 0, 0, nil))
    /// Whether each call ran on the task loop's thread, before and after its wait.
    private let loopThread = Mutex<Set<Bool>>([])
    let latency: Duration
    var name: String { "counting" }

    init(latency: Duration = .milliseconds(10)) { self.latency = latency }

    var calls: Int { state.withLock { $0.calls } }
    var abortedAt: ContinuousClock.Instant? { state.withLock { $0.abortedAt } }
    var maxConcurrent: Int { state.withLock { $0.maxConcurrent } }
    var ranOnTaskLoop: Set<Bool> { loopThread.withLock { $0 } }

    func generate(_ request: ImageRequest) async throws -> ImageResponse {
        state.withLock {
            $0.calls += 1
            $0.running += 1
            $0.maxConcurrent = max($0.maxConcurrent, $0.running)
        }
        defer { state.withLock { $0.running -= 1 } }
        loopThread.withLock { _ = $0.insert(TaskLoop.shared.isCurrentThread) }
        do {
            try await Task.sleep(for: latency)
            loopThread.withLock { _ = $0.insert(TaskLoop.shared.isCurrentThread) }
        } catch {
            state.withLock { $0.abortedAt = .now }
            throw BackendError(.canceled, "canceled")
        }
        let png = try PNGCodec.encode(RGBAImage(width: 8, height: 8, red: 200))
        return ImageResponse(images: [GeneratedImage(bytes: png, format: "png", width: 8, height: 8)])
    }
}
