import Synchronization
import Testing
import ThreadSupport

@Suite("Task loop timers")
struct TaskLoopTests {
    @Test("sleepers wake in the order of their deadlines, not of their calls")
    func order() async throws {
        let woke = try await withThrowingTaskGroup(of: Int.self) { group in
            for milliseconds in [600, 200, 400] {
                group.addTask {
                    try await TaskLoop.shared.sleep(for: .milliseconds(milliseconds))
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
        let sleeper = Task { try await TaskLoop.shared.sleep(for: .seconds(3600)) }
        try await Task.sleep(for: .milliseconds(20))
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        // A task canceled before it sleeps does not sleep at all.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await TaskLoop.shared.sleep(for: .seconds(3600))
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        // The loop still serves others.
        try await TaskLoop.shared.sleep(for: .milliseconds(1))
    }
}

@Suite("Task loop as an executor")
struct TaskLoopExecutorTests {
    @Test("a task that prefers the loop runs on its thread, and so do its children and resumptions")
    func runsOnItsThread() async throws {
        let loop = TaskLoop.shared
        let seen = try await withTaskExecutorPreference(loop) { () async throws -> [Bool] in
            var seen = [loop.isCurrentThread]
            try await loop.sleep(for: .milliseconds(2))  // resumed by the loop's own deadline
            seen.append(loop.isCurrentThread)
            try await Task.sleep(for: .milliseconds(2))  // resumed from Swift's timer thread
            seen.append(loop.isCurrentThread)
            async let child = loop.isCurrentThread
            seen.append(await child)
            // An unstructured task stays with its creator only when told to.
            seen.append(await Task(executorPreference: currentTaskExecutorPreference()) { loop.isCurrentThread }.value)
            return seen
        }
        #expect(seen == [true, true, true, true, true])
        #expect(!loop.isCurrentThread)
        #expect(currentTaskExecutorPreference() == nil)
    }

    @Test("work from another thread runs at once while the loop waits for a distant deadline", .timeLimit(.minutes(1)))
    func wakesForWork() async throws {
        let loop = TaskLoop.shared
        let distant = loop.schedule(at: ConditionLock.now() + 3_600_000_000_000) {}
        defer { loop.unschedule(distant) }
        try await Task.sleep(for: .milliseconds(20))  // the loop now waits for that deadline
        for _ in 0..<100 {
            // Enqueued from the global pool each time; a missed wake-up would wait an hour.
            let ran = await withTaskExecutorPreference(loop) { loop.isCurrentThread }
            #expect(ran)
        }
    }

    @Test("many tasks on the loop all finish, each step in its own order", .timeLimit(.minutes(1)))
    func manyTasks() async throws {
        let loop = TaskLoop.shared
        let steps = try await withThrowingTaskGroup(of: [Int].self) { group in
            for task in 0..<200 {
                group.addTask(executorPreference: loop) {
                    var steps: [Int] = []
                    for step in 0..<5 {
                        if step % 2 == 0 {
                            await Task.yield()
                        } else {
                            try await loop.sleep(for: .microseconds(task * 10))
                        }
                        steps.append(step)
                    }
                    return steps
                }
            }
            return try await group.reduce(into: [[Int]]()) { $0.append($1) }
        }
        #expect(steps.count == 200)
        #expect(steps.allSatisfy { $0 == [0, 1, 2, 3, 4] })
    }
}

@Suite("Task loop schedules")
struct TaskLoopScheduleTests {
    @Test("a scheduled body runs at its deadline; an unscheduled one never runs", .timeLimit(.minutes(1)))
    func scheduleAndUnschedule() async throws {
        let timer = TaskLoop.shared
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

    @Suite("Task loop thread")
    struct TaskLoopThreadTests {
        @Test("the loop's thread carries its name, for top -H and perf; names keep 15 bytes")
        func named() async throws {
            try await TaskLoop.shared.sleep(for: .milliseconds(1))
            let names = try threadNames()
            #expect(names.contains("task-loop"))
            // A thread of its own, named with a name too long for Linux; it stays until looked at
            // (under a loaded test run it may start late, so nothing here is timed).
            let named = DispatchSemaphore(value: 0)
            let looked = DispatchSemaphore(value: 0)
            let thread = Thread {
                nameCurrentThread("a-name-of-twenty-bytes")
                named.signal()
                looked.wait()
            }
            thread.start()
            while named.wait(timeout: .now()) == .timedOut { try await Task.sleep(for: .milliseconds(5)) }
            #expect(try threadNames().contains("a-name-of-twent"))
            looked.signal()
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

#if os(Linux)
    import Glibc

    @Suite("Task loop descriptors")
    struct TaskLoopDescriptorTests {
        /// Notes every call of the loop, and whether it came on the loop's thread.
        final class Recorder: LoopDescriptorHandler, @unchecked Sendable {
            let calls = Mutex<[String]>([])
            let fd: Int32
            init(fd: Int32) { self.fd = fd }

            func descriptorReady(readable: Bool, writable: Bool) {
                let onLoop = TaskLoop.shared.isCurrentThread
                var byte: UInt8 = 0
                if readable { _ = read(fd, &byte, 1) }
                calls.withLock { $0.append("\(readable ? "r" : "")\(writable ? "w" : "")\(byte) \(onLoop)") }
            }
        }

        func onLoop(_ body: @escaping @Sendable () -> Void) async {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                TaskLoop.shared.execute {
                    body()
                    done.resume()
                }
            }
        }

        func waitFor(_ recorder: Recorder, count: Int) async throws {
            while recorder.calls.withLock({ $0.count }) < count { try await Task.sleep(for: .milliseconds(2)) }
        }

        @Test(
            "a watched descriptor wakes the waiting loop, its handler runs there; writable only when asked; unwatched, silent",
            .timeLimit(.minutes(1)))
        func watchAndUnwatch() async throws {
            var pair: [Int32] = [-1, -1]
            #expect(pipe(&pair) == 0)
            let fds = pair
            defer {
                close(fds[0])
                close(fds[1])
            }
            let reader = Recorder(fd: fds[0])
            let loop = TaskLoop.shared
            // The loop waits for a distant deadline meanwhile: only the descriptor can wake it.
            let distant = loop.schedule(at: ConditionLock.now() + 3_600_000_000_000) {}
            defer { loop.unschedule(distant) }
            await onLoop { loop.watch(fds[0], reader) }
            try await Task.sleep(for: .milliseconds(20))
            for value: UInt8 in 1...3 {
                var byte = value
                #expect(write(fds[1], &byte, 1) == 1)
                try await waitFor(reader, count: Int(value))
            }
            #expect(reader.calls.withLock { $0 } == ["r1 true", "r2 true", "r3 true"])

            // The write end is writable at once, but reported only while asked for.
            let writer = Recorder(fd: fds[1])
            await onLoop {
                loop.watch(fds[1], writer)
                loop.setWritable(fds[1], true)
            }
            try await waitFor(writer, count: 1)
            await onLoop { loop.setWritable(fds[1], false) }
            let seen = writer.calls.withLock { $0.count }
            try await loop.sleep(for: .milliseconds(50))
            #expect(writer.calls.withLock { $0.count } == seen)
            #expect(writer.calls.withLock { $0.first } == "w0 true")

            await onLoop {
                loop.unwatch(fds[0])
                loop.unwatch(fds[1])
            }
            var byte: UInt8 = 9
            #expect(write(fds[1], &byte, 1) == 1)
            try await loop.sleep(for: .milliseconds(50))
            #expect(reader.calls.withLock { $0.count } == 3)
        }
    }
#endif
