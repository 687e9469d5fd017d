import Backends
import Foundation
import JobQueue
import Storage
import Testing
import Worker

/// The worker's own logic on the in-memory queue: no Redis involved.
@Suite("Worker on the in-memory queue")
struct InMemoryWorkerTests {
    func blobStore() throws -> FileBlobStore {
        try FileBlobStore(
            directory: FileManager.default.temporaryDirectory.appendingPathComponent(
                "imagegen-mem-\(UUID().uuidString)"))
    }

    @Test("runs every job once, never more than its slots at a time")
    func runsAllJobs() async throws {
        let queue = InMemoryQueueDriver()
        let backend = CountingBackend(latency: .milliseconds(20))
        let ids = try (0..<30).map { try queue.enqueue(spec("u\($0 % 3)")) }
        let worker = RunningWorker(queue: queue, blobs: try blobStore(), backend: backend, configure: { $0.slots = 4 })
        #expect(try await eventually { ids.allSatisfy { queue.status(jobID: $0)?.state == .succeeded } })
        try await worker.stop()
        #expect(backend.calls == 30)
        #expect(backend.maxConcurrent <= 4)
    }

    @Test(
        "the worker's tasks run on the task loop (the default), or on the global pool when so configured",
        arguments: [JobExecutor.taskLoop, .globalPool])
    func executor(_ executor: JobExecutor) async throws {
        #expect(WorkerConfiguration(workerID: "w").jobExecutor == .taskLoop)
        let queue = InMemoryQueueDriver()
        let backend = CountingBackend(latency: .milliseconds(5))
        let ids = try (0..<8).map { try queue.enqueue(spec("u\($0 % 3)")) }
        let worker = RunningWorker(
            queue: queue, blobs: try blobStore(), backend: backend, configure: { $0.jobExecutor = executor })
        #expect(try await eventually { ids.allSatisfy { queue.status(jobID: $0)?.state == .succeeded } })
        try await worker.stop()
        // Every call, before and after its wait (resumed by Swift's own timer), on the loop or never.
        #expect(backend.ranOnTaskLoop == [executor == .taskLoop])
    }

    @Test("a job whose lease the queue took back is stopped and its result dropped")
    func leaseLost() async throws {
        var settings = InMemoryQueueDriver.Settings()
        settings.lease = .seconds(60)
        let queue = InMemoryQueueDriver(settings: settings)
        let backend = CountingBackend(latency: .seconds(30))
        let id = try queue.enqueue(spec("u"))
        let worker = RunningWorker(queue: queue, blobs: try blobStore(), backend: backend)
        #expect(try await eventually { backend.calls == 1 })
        queue.expireAllLeases()
        _ = try await queue.claim(workerID: "other", limit: 0)  // recovery happens inside claim
        #expect(try await eventually { backend.abortedAt != nil })  // the old run is stopped
        #expect(queue.status(jobID: id)?.recoveries == 1)
        try await worker.stop()
    }

    @Test("cancel stops the running job; shutdown hands the others back")
    func cancelAndDrain() async throws {
        let queue = InMemoryQueueDriver()
        let backend = CountingBackend(latency: .seconds(30))
        let first = try queue.enqueue(spec("a"))
        let second = try queue.enqueue(spec("b"))
        let worker = RunningWorker(
            queue: queue, blobs: try blobStore(), backend: backend,
            configure: { $0.drainGracePeriod = .milliseconds(100) })
        #expect(try await eventually { backend.calls == 2 })
        #expect(queue.cancel(jobID: first) == .active)
        #expect(try await eventually { backend.abortedAt != nil })
        try await worker.stop()
        #expect(queue.status(jobID: first)?.state == .canceled)
        #expect(queue.status(jobID: second)?.state == .queued)
        #expect(queue.status(jobID: second)?.attempts == 0)
    }
}
