import Synchronization
import Testing
import ThreadSupport

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

@Suite("Deadline timer schedules")
struct DeadlineTimerScheduleTests {
    @Test("a scheduled body runs at its deadline; an unscheduled one never runs", .timeLimit(.minutes(1)))
    func scheduleAndUnschedule() async throws {
        let timer = DeadlineTimer.shared
        let ran = Mutex<[String]>([])
        let start = ConditionLock.now()
        let removed = timer.schedule(at: start + 30_000_000) { ran.withLock { $0.append("removed") } }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            _ = timer.schedule(at: start + 60_000_000) {
                ran.withLock { $0.append("kept at \(ConditionLock.now() >= start + 60_000_000)") }
                continuation.resume()
            }
            #expect(timer.unschedule(removed))
        }
        #expect(ran.withLock { $0 } == ["kept at true"])
        // Once it ran (or was removed), unscheduling finds nothing.
        #expect(!timer.unschedule(removed))
        let late = timer.schedule(at: ConditionLock.now()) {}
        try await timer.sleep(for: .milliseconds(5))
        #expect(!timer.unschedule(late))
    }
}

#if os(Linux)
    import Foundation

    @Suite("Deadline timer thread")
    struct DeadlineTimerThreadTests {
        @Test("the timer's thread carries its name, for top -H and perf; names keep 15 bytes")
        func named() async throws {
            try await DeadlineTimer.shared.sleep(for: .milliseconds(1))
            let names = try threadNames()
            #expect(names.contains("deadline-timer"))
            // A thread of its own, named with a name too long for Linux.
            let thread = Thread {
                nameCurrentThread("a-name-of-twenty-bytes")
                Thread.sleep(forTimeInterval: 2)
            }
            thread.start()
            try await Task.sleep(for: .milliseconds(200))
            #expect(try threadNames().contains("a-name-of-twent"))
        }

        func threadNames() throws -> [String] {
            let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
            return tasks.compactMap {
                try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8)
                    .trimmingCharacters(in: .newlines)
            }
        }
    }
#endif
