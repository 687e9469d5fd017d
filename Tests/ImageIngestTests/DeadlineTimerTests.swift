import Testing

@testable import Backends

@Suite("Deadline timer")
struct DeadlineTimerTests {
    @Test("sleepers wake in the order of their deadlines, not of their calls")
    func order() async throws {
        let woke = try await withThrowingTaskGroup(of: Int.self) { group in
            for milliseconds in [600, 200, 400] {
                group.addTask {
                    try await DeadlineTimer.shared.sleep(for: .milliseconds(milliseconds))
                    return milliseconds
                }
            }
            var woke: [Int] = []
            for try await milliseconds in group { woke.append(milliseconds) }
            return woke
        }
        #expect(woke == [200, 400, 600])
    }

    @Test("a canceled sleeper wakes at once with CancellationError", .timeLimit(.minutes(1)))
    func cancel() async throws {
        let sleeper = Task { try await DeadlineTimer.shared.sleep(for: .seconds(3600)) }
        try await Task.sleep(for: .milliseconds(20))
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        // A task canceled before it sleeps does not sleep at all.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await DeadlineTimer.shared.sleep(for: .seconds(3600))
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        // The timer still serves others.
        try await DeadlineTimer.shared.sleep(for: .milliseconds(1))
    }
}
