import Synchronization
import ThreadSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A fixed set of threads for blocking or CPU-heavy synchronous work (C codecs), kept off Swift's
/// cooperative thread pool.
///
/// Work runs in submission order on the first free thread. The threads live as long as the pool:
/// when the last reference goes away they finish any queued work and exit.
public final class BlockingThreadPool: Sendable {
    /// The number of threads.
    public let threadCount: Int
    private let core: Core

    /// Starts `threads` threads (at least one).
    public init(threads: Int) {
        let count = max(1, threads)
        self.threadCount = count
        self.core = Core()
        for _ in 0..<count {
            Self.spawn(core: core)
        }
    }

    deinit {
        core.shutdown()
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    ///
    /// If the calling task is canceled while `body` is still queued, `body` is skipped and this
    /// throws `CancellationError`; once `body` has started it runs to completion.
    public func run<T: Sendable>(_ body: @Sendable @escaping () throws -> T) async throws -> T {
        let call = PendingCall<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                guard call.install(continuation) else {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                core.submit {
                    guard let continuation = call.take() else { return }
                    continuation.resume(with: Result { try body() })
                }
            }
        } onCancel: {
            call.cancel()
        }
    }

    private static func spawn(core: Core) {
        let context = Unmanaged.passRetained(ThreadContext(core: core)).toOpaque()
        #if canImport(Darwin)
            var thread: pthread_t? = nil
            let result = pthread_create(
                &thread, nil,
                { argument in
                    Unmanaged<ThreadContext>.fromOpaque(argument).takeRetainedValue().main()
                    return nil
                }, context)
            precondition(result == 0, "pthread_create failed: \(result)")
            pthread_detach(thread!)
        #else
            var thread = pthread_t()
            let result = pthread_create(
                &thread, nil,
                { argument in
                    Unmanaged<ThreadContext>.fromOpaque(argument!).takeRetainedValue().main()
                    return nil
                }, context)
            precondition(result == 0, "pthread_create failed: \(result)")
            pthread_detach(thread)
        #endif
    }
}

extension BlockingThreadPool {
    /// The queue shared by the pool and its threads.
    final class Core: @unchecked Sendable {
        private let lock = ConditionLock()
        // Guarded by `lock`.
        private var queue: [@Sendable () -> Void] = []
        private var head = 0
        private var isShuttingDown = false

        func submit(_ work: @escaping @Sendable () -> Void) {
            lock.withLock {
                precondition(!isShuttingDown, "work submitted to a BlockingThreadPool that is shutting down")
                queue.append(work)
            }
            lock.signal()
        }

        func shutdown() {
            lock.withLock { isShuttingDown = true }
            lock.broadcast()
        }

        /// Runs queued work until the pool shuts down and the queue is empty.
        func workerLoop() {
            while true {
                lock.lock()
                while head == queue.count && !isShuttingDown {
                    lock.wait()
                }
                if head == queue.count {
                    lock.unlock()
                    return
                }
                let work = queue[head]
                head += 1
                if head == queue.count {
                    queue.removeAll(keepingCapacity: true)
                    head = 0
                } else if head >= 64 && head * 2 >= queue.count {
                    queue.removeFirst(head)
                    head = 0
                }
                lock.unlock()
                work()
            }
        }
    }

    /// What a new thread needs: the queue to serve.
    final class ThreadContext {
        let core: Core

        init(core: Core) {
            self.core = core
        }

        func main() {
            nameCurrentThread("blocking-pool")
            core.workerLoop()
        }
    }

    /// Starts `body` on one of the pool's threads and returns at once; its result is awaited later
    /// through ``Started/value``, without suspending when it is already there. For short work
    /// that overlaps with a wait of the caller: it always runs to completion.
    public func start<T: Sendable>(_ body: @Sendable @escaping () throws -> T) -> Started<T> {
        let started = Started<T>()
        core.submit { started.finish(Result { try body() }) }
        return started
    }

    /// Work begun by ``BlockingThreadPool/start(_:)``. Await ``value`` once.
    public final class Started<T: Sendable>: Sendable {
        private enum State {
            case running
            case waiting(CheckedContinuation<T, any Error>)
            case done(Result<T, any Error>)
        }

        private let state = Mutex<State>(.running)

        fileprivate init() {}

        fileprivate func finish(_ result: Result<T, any Error>) {
            let waiter = state.withLock { state -> CheckedContinuation<T, any Error>? in
                defer { state = .done(result) }
                if case .waiting(let continuation) = state { return continuation }
                return nil
            }
            waiter?.resume(with: result)
        }

        /// The work's result, or what it threw; returns at once when the work is done.
        public var value: T {
            get async throws {
                let ready = state.withLock { state -> Result<T, any Error>? in
                    if case .done(let result) = state { return result }
                    return nil
                }
                if let ready { return try ready.get() }
                return try await withCheckedThrowingContinuation { continuation in
                    let ready = state.withLock { state -> Result<T, any Error>? in
                        if case .done(let result) = state { return result }
                        state = .waiting(continuation)
                        return nil
                    }
                    if let ready { continuation.resume(with: ready) }
                }
            }
        }
    }

    /// The continuation of one ``BlockingThreadPool/run(_:)`` call, taken exactly once: by the
    /// thread that runs the work or by cancellation while the work is still queued.
    final class PendingCall<T: Sendable>: Sendable {
        private enum State {
            case created
            case waiting(CheckedContinuation<T, any Error>)
            case taken
            case canceled
        }

        private let state = Mutex<State>(.created)

        /// Stores the continuation; `false` if the task was canceled before it got here.
        func install(_ continuation: CheckedContinuation<T, any Error>) -> Bool {
            state.withLock { state in
                if case .canceled = state { return false }
                state = .waiting(continuation)
                return true
            }
        }

        /// Claims the continuation to run the work; `nil` if the call was canceled while queued.
        func take() -> CheckedContinuation<T, any Error>? {
            state.withLock { state in
                guard case .waiting(let continuation) = state else { return nil }
                state = .taken
                return continuation
            }
        }

        /// Resumes the call with `CancellationError` unless its work has already started.
        func cancel() {
            let continuation: CheckedContinuation<T, any Error>? = state.withLock { state in
                switch state {
                case .created:
                    state = .canceled
                    return nil
                case .waiting(let continuation):
                    state = .canceled
                    return continuation
                case .taken, .canceled:
                    return nil
                }
            }
            continuation?.resume(throwing: CancellationError())
        }
    }
}
