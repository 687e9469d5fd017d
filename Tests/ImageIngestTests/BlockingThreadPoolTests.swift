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

    @Test func startedWorkIsAwaitedLaterWhetherOrNotItHasFinished() async throws {
        let pool = BlockingThreadPool(threads: 1)
        let gate = Flag()
        // Awaited while it still runs: the caller suspends until it ends.
        let slow = pool.start { () -> Int in
            while !gate.isSet { usleep(1_000) }
            return 7
        }
        let waiter = Task { try await slow.value }
        try await Task.sleep(for: .milliseconds(20))
        gate.set()
        #expect(try await waiter.value == 7)
        // Awaited after it ended: the result is already there.
        let quick = pool.start { 6 * 7 }
        _ = try await pool.run { 0 }  // one thread runs in order: `quick` has finished
        #expect(try await quick.value == 42)
        let failing = pool.start { () throws -> Int in throw IngestError(.corrupt, "bad") }
        await #expect(throws: IngestError.self) { try await failing.value }
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
