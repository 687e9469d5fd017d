import Backends
import Foundation
import ImageIngest
import JobQueue
import Logging
import RedisQueue
import ServiceLifecycle
import Storage
import Worker

/// A worker service running in this process on a fixture's queue, stopped gracefully by `stop()`.
final class RunningWorker: Sendable {
    let group: ServiceGroup
    let task: Task<Void, Error>

    init(
        queue: any WorkerService.Queue, blobs: any BlobStore, backend: any ImageModelBackend,
        configure: (inout WorkerConfiguration) -> Void = { _ in }, logger: Logger = testLogger
    ) {
        var configuration = WorkerConfiguration()
        configuration.slots = 4
        configuration.heartbeatInterval = .milliseconds(200)
        configuration.retryPolicy = RetryPolicy(baseDelay: .milliseconds(50), maxDelay: .milliseconds(100))
        // As `imagegen worker --store redis` runs: a Redis queue writes the outputs with the
        // completion into the fixture's blob store (other queues ignore it).
        configuration.outputsWithCompletion = blobs is RedisBlobStore
        configure(&configuration)
        let service = WorkerService(
            configuration: configuration, queue: queue, backend: backend, ingestor: ImageIngestor(), blobs: blobs,
            logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: service)], gracefulShutdownSignals: [], logger: logger))
        self.group = group
        self.task = Task { try await group.run() }
    }

    /// Triggers graceful shutdown and waits for the worker to finish.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

extension QueueFixture {
    var blobs: RedisBlobStore { RedisBlobStore(pool: pool, prefix: queue.keys.blobPrefix) }

    /// Waits (following events, not polling) until `jobID` reaches a finished state.
    func waitUntilFinished(_ jobID: String, timeout: Duration = .seconds(30)) async throws -> JobRecord {
        if let record = try await queue.status(jobID: jobID), record.state.isFinished { return record }
        return try await withThrowingTaskGroup(of: JobRecord?.self) { group in
            group.addTask {
                for try await event in self.queue.followEvents(after: "0") where event.jobID == jobID {
                    if ["succeeded", "failed", "canceled", "dead"].contains(event.type) { break }
                }
                return try await self.queue.status(jobID: jobID)
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let record = try await group.next() ?? nil else {
                throw TestFailure("job \(jobID) did not finish within \(timeout)")
            }
            return record
        }
    }

    /// Waits until the job reaches `state` (following events).
    func waitForEvent(_ jobID: String, type: String, timeout: Duration = .seconds(10)) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for try await event in self.queue.followEvents(after: "0")
                where event.jobID == jobID && event.type == type {
                    return true
                }
                return false
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return false
            }
            defer { group.cancelAll() }
            guard try await group.next() == true else { throw TestFailure("no \(type) event for \(jobID)") }
        }
    }
}

/// A backend that fails every call with a given error after a delay.
struct FailingBackend: ImageModelBackend {
    let error: BackendError
    var name: String { "failing" }
    func generate(_ request: ImageRequest) async throws -> ImageResponse {
        try await Task.sleep(for: .milliseconds(10))
        throw error
    }
}
