import Synchronization
import Testing
import ThreadSupport

@testable import Worker

@Suite("Stop signals")
struct CancelSignalTests {
    final class Payload: Sendable {}

    @Test("a job's result is not kept after it is handed over, though its signal lives on")
    func resultIsNotRetained() async throws {
        let signal = CancelSignal()
        weak var seen: Payload?
        do {
            let payload = try await runUntilSignaled(signal) { Payload() }
            seen = payload
            #expect(seen != nil)
        }
        // The signal (and through its handler, the task) is still here; the payload is not.
        #expect(signal.reason == nil)
        #expect(seen == nil)
    }

    @Test("a fired signal cancels the job and throws, even for a body that ignores cancellation")
    func firedSignalStops() async throws {
        let signal = CancelSignal()
        let started = Mutex(false)
        let job = Task {
            try await runUntilSignaled(signal) {
                started.withLock { $0 = true }
                try await Task.sleep(for: .seconds(30))
                return 1
            }
        }
        while !started.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(1)) }
        signal.fire(.canceled)
        await #expect(throws: CancellationError.self) { try await job.value }
        #expect(signal.reason == .canceled)
        // Fired before the body ends: its result is refused too.
        let late = CancelSignal()
        late.fire(.shutdown)
        await #expect(throws: CancellationError.self) { try await runUntilSignaled(late) { 2 } }
    }

    @Test("the job's task runs where its caller runs: on the task loop for the worker's slots")
    func keepsTheCallersExecutor() async throws {
        let onLoop = try await withTaskExecutorPreference(TaskLoop.shared) {
            try await runUntilSignaled(CancelSignal()) { TaskLoop.shared.isCurrentThread }
        }
        #expect(onLoop)
        let elsewhere = try await runUntilSignaled(CancelSignal()) { TaskLoop.shared.isCurrentThread }
        #expect(!elsewhere)
    }
}
