import CPoll
import Foundation
import Synchronization

/// One thread that runs the jobs of the tasks that prefer it and resumes sleepers at their
/// deadlines: an event loop for Swift tasks.
///
/// As a `TaskExecutor` (`withTaskExecutorPreference(TaskLoop.shared)`, or
/// `group.addTask(executorPreference:)`) it runs the worker's slots. A job enqueued from the loop's
/// own thread (a child task, a continuation resumed by a deadline or by another job) runs after the
/// ones already queued, without waking any thread; one enqueued from another thread (a Redis
/// reply) wakes the loop only when it waits. On Swift's global pool each such hand-off is a
/// semaphore post to one of its threads, and its threads wake each other in turn: per job of a
/// slow backend that was most of the worker's CPU.
///
/// Its timers: `Task.sleep` arms a timer of the global executor for every call, which wakes its
/// timer thread both when the timer is armed and when it fires. Here a sleeper whose deadline is
/// not the earliest is only put in the heap; the thread wakes once per due deadline (once for
/// several due together) and resumes their tasks. Used by the simulated backend, whose hundreds of
/// concurrent calls stand in for a remote model's answers arriving over the network, and by the
/// completions' group commit, whose short lingers would otherwise each arm a timer of their own.
///
/// Its descriptors: it waits in `ppoll` on a wake-up descriptor and on the sockets of the Redis
/// connections that run on it (``watch(_:_:)``), and calls their handlers when they are ready. A
/// task on the loop that sends a command and awaits the reply then costs no thread hand-off at all:
/// the loop writes the request once the job that made it ends, and the reply resumes the task on
/// the loop.
///
/// Everything on the loop shares one thread: a job or a callback that blocks holds up every other
/// task of the loop and every deadline. Blocking work (codecs, files, connecting) belongs on the
/// blocking pool or a thread of its own, as it does on the cooperative pool.
package final class TaskLoop: @unchecked Sendable {
    /// The process' loop, started on first use.
    package static let shared = TaskLoop()

    private struct Sleeper {
        var deadline: UInt64
        var id: UInt64
        /// Runs on the loop's thread at the deadline (`nil`), or on the canceling thread at
        /// cancellation (the error).
        var finish: @Sendable ((any Error)?) -> Void
    }

    private let lock = ConditionLock()
    private let nextID = Atomic<UInt64>(0)
    // Guarded by `lock`.
    private var heap: [Sleeper] = []
    private var canceledEarly: Set<UInt64> = []
    /// Jobs of the tasks that prefer this loop, in the order they were enqueued.
    private var jobs: [UnownedJob] = []
    /// Closures to run on the loop's thread (``execute(_:)``), in order.
    private var callbacks: [@Sendable () -> Void] = []
    /// Whether `callbacks` may hold any: looked at after every job, without the lock.
    private let callbacksQueued = Atomic<Bool>(false)
    /// The deadline the thread waits for (`.max`: none, it waits for a signal; 0: it does not wait).
    private var waitingFor: UInt64 = 0
    private var thread: Thread?

    /// The wake-up descriptor: polled at `wakeFDs.0`, signaled at `wakeFDs.1` (the same eventfd on
    /// Linux).
    private let wakeFDs: (Int32, Int32)
    /// Descriptors polled with the wake-up one. Only the loop's thread touches them.
    private var watched: [Watch] = []

    private struct Watch {
        var fd: Int32
        var handler: any LoopDescriptorHandler
        var writable: Bool
    }

    private init() {
        var fds: [Int32] = [-1, -1]
        let created = ig_wakeup_create(&fds)
        precondition(created == 0, "the task loop's wake-up descriptor: errno \(errno)")
        wakeFDs = (fds[0], fds[1])
        // Nothing reaches the loop before `shared` is set, so `thread` is set before it is read.
        let thread = startThread(named: "task-loop") { [self] in run() }
        lock.withLock { self.thread = thread }
    }

    /// Runs `body` on the loop's thread soon: from the loop's own thread, once the job running now
    /// ends (before the next one, without waking anything).
    package func execute(_ body: @escaping @Sendable () -> Void) {
        lock.lock()
        callbacks.append(body)
        callbacksQueued.store(true, ordering: .relaxed)
        let wake = waitingFor != 0
        lock.unlock()
        if wake { ig_wakeup_signal(wakeFDs.1) }
    }

    /// Runs the closures queued so far (on the loop's thread, without the lock held).
    private func runCallbacks(_ closures: inout [@Sendable () -> Void]) {
        lock.lock()
        swap(&closures, &callbacks)
        callbacksQueued.store(false, ordering: .relaxed)
        lock.unlock()
        for closure in closures { closure() }
        closures.removeAll(keepingCapacity: true)
    }

    /// Polls `fd` for reading (and for writing while ``setWritable(_:_:)`` asks for it) and calls
    /// `handler` on the loop's thread when it is ready. Call on the loop's thread only.
    package func watch(_ fd: Int32, _ handler: any LoopDescriptorHandler) {
        watched.removeAll { $0.fd == fd }
        watched.append(Watch(fd: fd, handler: handler, writable: false))
    }

    /// Whether the loop also waits for `fd` to become writable. Call on the loop's thread only.
    package func setWritable(_ fd: Int32, _ writable: Bool) {
        if let index = watched.firstIndex(where: { $0.fd == fd }) { watched[index].writable = writable }
    }

    /// Stops polling `fd`. Call on the loop's thread only, before closing it.
    package func unwatch(_ fd: Int32) {
        watched.removeAll { $0.fd == fd }
    }

    /// Whether the caller runs on the loop's thread.
    package var isCurrentThread: Bool {
        let thread = lock.withLock { self.thread }
        return Thread.current === thread
    }

    /// Suspends the calling task for `duration`; throws `CancellationError` as soon as it is canceled.
    package func sleep(for duration: Duration) async throws {
        try await sleep(for: duration) {}
    }

    /// Suspends the calling task for `duration`, then runs `body` on the loop's thread and returns
    /// its result; throws `CancellationError` as soon as it is canceled (and `body` does not run).
    ///
    /// For small work that would otherwise wake another thread: it holds up every later deadline
    /// while it runs.
    package func sleep<T: Sendable>(
        for duration: Duration, then body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        let deadline = ConditionLock.now() + Self.nanoseconds(duration)
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                add(
                    Sleeper(deadline: deadline, id: id) { error in
                        if let error {
                            continuation.resume(throwing: error)
                        } else {
                            continuation.resume(with: Result { try body() })
                        }
                    })
            }
        } onCancel: {
            cancel(id)
        }
    }

    /// Runs `body` on the loop's thread at `deadline` (nanoseconds of ``ConditionLock/now()``),
    /// unless ``unschedule(_:)`` removes it first. Returns the id to remove it by.
    ///
    /// `body` holds up every later deadline while it runs: it should only hand work on.
    package func schedule(at deadline: UInt64, _ body: @escaping @Sendable () -> Void) -> UInt64 {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        add(
            Sleeper(deadline: deadline, id: id) { error in
                if error == nil { body() }
            })
        return id
    }

    /// Removes what ``schedule(at:_:)`` added, unless it already ran or is running. Returns
    /// whether it was removed (and then will not run).
    @discardableResult
    package func unschedule(_ id: UInt64) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let index = heap.firstIndex(where: { $0.id == id }) else { return false }
        _ = remove(at: index)
        return true
    }

    /// A duration as whole nanoseconds (negative ones as zero).
    package static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds) * 1_000_000_000 + max(0, attoseconds) / 1_000_000_000)
    }

    private func add(_ sleeper: Sleeper) {
        lock.lock()
        if canceledEarly.remove(sleeper.id) != nil {
            lock.unlock()
            sleeper.finish(CancellationError())
            return
        }
        push(sleeper)
        // The thread needs waking only when this deadline comes before the one it waits for.
        let wake = sleeper.deadline < waitingFor
        lock.unlock()
        if wake { ig_wakeup_signal(wakeFDs.1) }
    }

    private func cancel(_ id: UInt64) {
        lock.lock()
        guard let index = heap.firstIndex(where: { $0.id == id }) else {
            // Not added yet (or already resumed, and then the id is never looked at again).
            canceledEarly.insert(id)
            lock.unlock()
            return
        }
        let sleeper = remove(at: index)
        lock.unlock()
        sleeper.finish(CancellationError())
    }

    private func run() {
        var due: [Sleeper] = []
        var runnable: [UnownedJob] = []
        var closures: [@Sendable () -> Void] = []
        var polled: [pollfd] = []
        let executor = asUnownedTaskExecutor()
        lock.lock()
        while true {
            let now = ConditionLock.now()
            while let first = heap.first, first.deadline <= now { due.append(remove(at: 0)) }
            let anyDue = !due.isEmpty
            if anyDue {
                // Deadlines first: they resume tasks, whose jobs join the queue and run below.
                lock.unlock()
                for sleeper in due { sleeper.finish(nil) }
                due.removeAll(keepingCapacity: true)
                lock.lock()
            }
            if !jobs.isEmpty || !callbacks.isEmpty {
                // Every job queued so far, each followed by the closures it queued (a connection's
                // write of the requests it made goes out at once); the jobs they enqueue run in the
                // next round.
                swap(&runnable, &jobs)
                lock.unlock()
                for job in runnable {
                    job.runSynchronously(on: executor)
                    if callbacksQueued.load(ordering: .relaxed) { runCallbacks(&closures) }
                }
                runnable.removeAll(keepingCapacity: true)
                if callbacksQueued.load(ordering: .relaxed) { runCallbacks(&closures) }
                // A busy loop still reads its sockets between rounds.
                if !watched.isEmpty { poll(&polled, timeout: 0) }
                lock.lock()
                continue
            }
            if anyDue { continue }
            // Ids canceled after their sleeper was resumed are never looked up again.
            if (heap.isEmpty && !canceledEarly.isEmpty) || canceledEarly.count > 4096 { canceledEarly.removeAll() }
            waitingFor = heap.first?.deadline ?? .max
            let timeout = waitingFor == .max ? -1 : Int64(waitingFor &- min(waitingFor, ConditionLock.now()))
            lock.unlock()
            poll(&polled, timeout: timeout)
            lock.lock()
            waitingFor = 0
        }
    }

    /// Waits up to `timeout` ns (negative: without a limit) for the wake-up descriptor or a watched
    /// one, and calls the handlers of those that are ready.
    private func poll(_ polled: inout [pollfd], timeout: Int64) {
        polled.removeAll(keepingCapacity: true)
        polled.append(pollfd(fd: wakeFDs.0, events: Int16(POLLIN), revents: 0))
        for watch in watched {
            polled.append(pollfd(fd: watch.fd, events: Int16(watch.writable ? POLLIN | POLLOUT : POLLIN), revents: 0))
        }
        let ready = polled.withUnsafeMutableBufferPointer { ig_poll($0.baseAddress, UInt32($0.count), timeout) }
        guard ready > 0 else { return }
        if polled[0].revents != 0 { ig_wakeup_drain(wakeFDs.0) }
        for entry in polled.dropFirst() where entry.revents != 0 {
            // A handler may have stopped watching this descriptor (or another) meanwhile.
            guard let watch = watched.first(where: { $0.fd == entry.fd }) else { continue }
            let readable = entry.revents & Int16(POLLIN | POLLHUP | POLLERR | POLLNVAL) != 0
            let writable = entry.revents & Int16(POLLOUT) != 0
            watch.handler.descriptorReady(readable: readable, writable: writable)
        }
    }

    // A binary min-heap on the deadline.

    private func push(_ sleeper: Sleeper) {
        heap.append(sleeper)
        siftUp(heap.count - 1)
    }

    private func remove(at index: Int) -> Sleeper {
        heap.swapAt(index, heap.count - 1)
        let removed = heap.removeLast()
        if index < heap.count {
            siftUp(index)
            siftDown(index)
        }
        return removed
    }

    private func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            if heap[parent].deadline <= heap[child].deadline { return }
            heap.swapAt(parent, child)
            child = parent
        }
    }

    private func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].deadline < heap[smallest].deadline { smallest = left }
            if right < heap.count && heap[right].deadline < heap[smallest].deadline { smallest = right }
            if smallest == parent { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}

extension TaskLoop: TaskExecutor {
    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        lock.lock()
        jobs.append(job)
        // The thread needs waking only when it waits (then `jobs` was empty).
        let wake = waitingFor != 0
        lock.unlock()
        if wake { ig_wakeup_signal(wakeFDs.1) }
    }
}

/// Sets `O_NONBLOCK` on a descriptor (a socket the loop polls). Returns whether it could.
package func setNonBlocking(_ fd: Int32) -> Bool {
    ig_set_nonblocking(fd) == 0
}

/// What a descriptor the loop polls (``TaskLoop/watch(_:_:)``) calls when it is ready.
package protocol LoopDescriptorHandler: AnyObject {
    /// Runs on the loop's thread. `readable` also when the descriptor hung up or failed (a read
    /// then says how); `writable` only while the loop was asked to wait for it.
    func descriptorReady(readable: Bool, writable: Bool)
}

/// The executor the current task prefers (``TaskLoop/shared`` for the worker's slots), or nil for
/// Swift's global pool: for unstructured tasks (`Task(executorPreference:)`) that should run where
/// their creator runs, as child tasks do by themselves.
package func currentTaskExecutorPreference() -> (any TaskExecutor)? {
    withUnsafeCurrentTask { $0?.unownedTaskExecutor?.asTaskExecutor() }
}
