import Foundation
import ImageIngest
import Synchronization
import Testing

@Suite("Blocking thread pool")
struct BlockingThreadPoolTests {
    @Test func runsWorkAndReturnsResults() async throws {
        let pool = BlockingThreadPool(threads: 2)
        let sum = try await pool.run { (1...100).reduce(0, +) }
        #expect(sum == 5050)
    }

    @Test func propagatesErrors() async {
        let pool = BlockingThreadPool(threads: 1)
        await #expect(throws: IngestError(.corrupt, "boom")) {
            try await pool.run { throw IngestError(.corrupt, "boom") }
        }
    }

    @Test func runsOnItsOwnThreads() async throws {
        let pool = BlockingThreadPool(threads: 2)
        // Blocking both pool threads must not stop other async work from running.
        let release = Flag()
        let blockers = (0..<2).map { _ in
            Task {
                try await pool.run {
                    while !release.isSet { usleep(1_000) }
                }
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        let other = Task { 42 }
        #expect(await other.value == 42)
        release.set()
        for blocker in blockers { try await blocker.value }
    }

    @Test func cancellationSkipsQueuedWork() async throws {
        let pool = BlockingThreadPool(threads: 1)
        let release = Flag()
        let ran = Flag()
        let blocker = Task {
            try await pool.run {
                while !release.isSet { usleep(1_000) }
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        let queued = Task { try await pool.run { ran.set() } }
        try await Task.sleep(for: .milliseconds(20))
        queued.cancel()
        await #expect(throws: CancellationError.self) { try await queued.value }
        release.set()
        try await blocker.value
        _ = try await pool.run { 0 }  // drains the queue past the skipped item
        #expect(!ran.isSet)
    }
}

/// A flag shared between threads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
