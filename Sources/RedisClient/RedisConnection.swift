import Foundation
import Logging
import Synchronization
import ThreadSupport

/// One Redis connection, run by a thread of its own or by a task loop.
///
/// Its I/O never runs on Swift's cooperative pool. With a thread of its own (the default), hiredis
/// blocks on that thread: every call is queued to it and the caller's task suspends until the
/// reply comes back. On a ``TaskLoop`` (the pool's connections) the socket is non-blocking and
/// polled by the loop, which writes a request once the job that made it ends and resumes the
/// callers as the replies arrive: a caller on the loop then waits without any thread hand-off.
/// Either way, requests that arrive while others are on the wire are written together and their
/// replies read together (automatic pipelining), so many tasks sharing one connection cost few
/// round trips.
///
/// The connection is opened lazily and reopened after a failure, with exponential backoff and
/// full jitter between attempts. A command whose connection broke fails with a retryable
/// ``RedisError``; commands are never resent by themselves, because not all are idempotent.
public final class RedisConnection: Sendable {
    private let state: any RequestRunner
    private let configuration: RedisConfiguration

    /// Creates the connection and its thread. Nothing is sent until the first command.
    public init(configuration: RedisConfiguration, logger: Logger = Logger(label: "imagegen.redis")) {
        self.configuration = configuration
        let state = State(configuration: configuration, logger: logger)
        self.state = state
        startThread(named: "redis-conn") { state.runLoop() }
    }

    /// Creates a connection whose socket `loop` polls (connecting still happens on a short-lived
    /// thread of its own). Nothing is sent until the first command.
    package init(configuration: RedisConfiguration, logger: Logger, loop: TaskLoop) {
        self.configuration = configuration
        self.state = LoopConnection(configuration: configuration, logger: logger, loop: loop)
    }

    deinit { state.close() }

    /// Sends one command and returns its reply; an error reply is thrown as ``RedisError/Code/server``.
    public func send(_ command: RedisCommand) async throws -> RESPValue {
        let reply = try await submit([command], blockingTimeout: nil)[0]
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    /// Sends one command built from strings, integers and byte arrays.
    public func send(_ parts: any RedisArgumentConvertible...) async throws -> RESPValue {
        try await send(parts.map(\.redisArgument))
    }

    /// Sends several commands in one write and returns their replies in order.
    /// Error replies stay in the array as ``RESPValue/error(_:)``.
    public func pipeline(_ commands: [RedisCommand]) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        return try await submit(commands, blockingTimeout: nil)
    }

    /// Sends a blocking command (`BLPOP`, `BZPOPMIN`, `XREAD BLOCK` …) whose own timeout is `timeout`.
    ///
    /// Use a connection of its own for these: while it blocks, nothing else can use it.
    /// Canceling the calling task interrupts the wait at once (the connection is then reopened).
    public func sendBlocking(_ command: RedisCommand, timeout: Duration) async throws -> RESPValue {
        let reply = try await submit([command], blockingTimeout: timeout)[0]
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    /// Sends a blocking command followed by others in the same write, and returns every reply in
    /// order (error replies stay in the array). Redis runs the followers as soon as the blocking
    /// command returns, with no round trip in between. `timeout` is the blocking command's own.
    public func pipelineBlocking(_ commands: [RedisCommand], timeout: Duration) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        return try await submit(commands, blockingTimeout: timeout)
    }

    /// Fails queued commands and stops the thread. Idempotent.
    public func close() { state.close() }

    /// Requests sent and not answered yet (queued or on the wire).
    public var inFlight: Int { state.inFlight }

    /// Sends one command from a thread that is not part of Swift concurrency, waiting for the
    /// reply. For components that must keep running while the cooperative pool is saturated
    /// (the lease renewer). Never call it from an async context.
    public func sendAndWait(_ command: RedisCommand) throws -> RESPValue {
        // The thread that would do the I/O would wait for itself.
        precondition(!state.isIOThread, "sendAndWait on the thread that runs the connection")
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        state.enqueue(
            Request(id: state.nextRequestID(), commands: [command], blockingTimeout: nil) { result in
                box.result = result
                done.signal()
            })
        done.wait()
        let reply = try box.result!.get()[0]
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    private func submit(_ commands: [RedisCommand], blockingTimeout: Duration?) async throws -> [RESPValue] {
        let id = state.nextRequestID()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                state.enqueue(
                    Request(id: id, commands: commands, blockingTimeout: blockingTimeout) { result in
                        continuation.resume(with: result)
                    })
            }
        } onCancel: {
            state.cancel(id: id)
        }
    }
}

/// Carries a result from the connection thread to a waiting thread; the semaphore orders the accesses.
private final class ResultBox: @unchecked Sendable {
    var result: Result<[RESPValue], Error>?
}

/// What runs a connection's requests: its own thread (``State``) or a task loop (``LoopConnection``).
protocol RequestRunner: Sendable {
    func nextRequestID() -> UInt64
    /// Queues a request; `complete` runs once, with the replies or the error.
    func enqueue(_ request: Request)
    /// Fails the request if it was not sent yet, or interrupts it if it is a blocking one on the wire.
    func cancel(id: UInt64)
    func close()
    var inFlight: Int { get }
    /// Whether the calling thread is the one that does the connection's I/O.
    var isIOThread: Bool { get }
}

struct Request {
    let id: UInt64
    let commands: [RedisCommand]
    let blockingTimeout: Duration?
    let complete: @Sendable (Result<[RESPValue], Error>) -> Void

    /// The same request, running `action` before its completion.
    func beforeCompletion(_ action: @escaping @Sendable () -> Void) -> Request {
        let complete = self.complete
        return Request(id: id, commands: commands, blockingTimeout: blockingTimeout) { result in
            action()
            complete(result)
        }
    }
}

extension Array where Element == Request {
    /// Removes and returns the requests to send together next: a blocking request alone (the
    /// requests after it wait for its reply), else up to `limit` requests before the first blocking
    /// one. Empty when the array is.
    mutating func takeBatch(limit: Int = .max) -> [Request] {
        guard let first = self.first else { return [] }
        if first.blockingTimeout != nil { return [removeFirst()] }
        var count = 1
        while count < self.count, count < limit, self[count].blockingTimeout == nil { count += 1 }
        let batch = Array(self[0..<count])
        removeFirst(count)
        return batch
    }
}

/// The connection's shared state. `@unchecked Sendable`: the mutable queue is guarded by
/// `condition`; `socket` and `attempts` are touched only by the connection's own thread.
private final class State: RequestRunner, @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [Request] = []
    private var closed = false
    private var requestCounter: UInt64 = 0
    /// The request running on the thread now, and its socket, for cancellation of blocking calls.
    private var runningBlockingID: UInt64?
    private var runningFD: Int32 = -1
    private var interruptedID: UInt64?

    /// Requests queued and not completed yet.
    private let unanswered = Atomic<Int>(0)

    private var socket: HiredisSocket?
    private var attempts: ConnectAttempts
    private let configuration: RedisConfiguration
    private static let maxBatch = 512

    init(configuration: RedisConfiguration, logger: Logger) {
        self.configuration = configuration
        self.attempts = ConnectAttempts(configuration: configuration, logger: logger)
    }

    func nextRequestID() -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        requestCounter += 1
        return requestCounter
    }

    func enqueue(_ request: Request) {
        condition.lock()
        if closed {
            condition.unlock()
            request.complete(.failure(RedisError(.closed, "connection closed")))
            return
        }
        unanswered.add(1, ordering: .relaxed)
        queue.append(request.beforeCompletion { [self] in unanswered.subtract(1, ordering: .relaxed) })
        condition.unlock()
        // Signaled after unlocking: a thread woken while the lock is still held would only block
        // on it again.
        condition.signal()
    }

    /// Requests queued and not completed yet.
    var inFlight: Int { unanswered.load(ordering: .relaxed) }

    /// Its own thread runs only the connection's loop, which never calls back into it.
    var isIOThread: Bool { false }

    func cancel(id: UInt64) {
        condition.lock()
        if let index = queue.firstIndex(where: { $0.id == id }) {
            let request = queue.remove(at: index)
            condition.unlock()
            request.complete(.failure(RedisError(.canceled, "canceled before it was sent")))
            return
        }
        if runningBlockingID == id {
            interruptedID = id
            HiredisSocket.interrupt(fd: runningFD)
        }
        condition.unlock()
    }

    func close() {
        condition.lock()
        if closed {
            condition.unlock()
            return
        }
        closed = true
        let pending = queue
        queue.removeAll()
        HiredisSocket.interrupt(fd: runningFD)
        condition.broadcast()
        condition.unlock()
        for request in pending {
            request.complete(.failure(RedisError(.closed, "connection closed")))
        }
    }

    func runLoop() {
        while let batch = nextBatch() {
            run(batch)
        }
        socket = nil
    }

    /// Waits for work; a blocking command always runs alone.
    private func nextBatch() -> [Request]? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty && !closed { condition.wait() }
        if closed { return nil }
        let batch = queue.takeBatch(limit: State.maxBatch)
        // From here until it ends, a cancel of a blocking request interrupts the socket.
        if let request = batch.first, request.blockingTimeout != nil { runningBlockingID = request.id }
        return batch
    }

    private func connectedSocket() throws -> HiredisSocket {
        if let socket { return socket }
        let wait = attempts.wait
        if wait > .zero { Thread.sleep(forTimeInterval: wait.seconds) }
        do {
            let socket = try HiredisSocket(configuration: configuration)
            attempts.succeeded()
            self.socket = socket
            return socket
        } catch let error as RedisError {
            attempts.failed(error)
            throw error
        }
    }

    private func run(_ batch: [Request]) {
        let blocking = batch.count == 1 ? batch[0].blockingTimeout : nil
        let socket: HiredisSocket
        do {
            socket = try connectedSocket()
        } catch {
            if blocking != nil { clearRunningBlocking() }
            for request in batch { request.complete(.failure(error)) }
            return
        }
        if let blocking {
            condition.lock()
            let canceledAlready = interruptedID == batch[0].id
            runningFD = socket.fileDescriptor
            condition.unlock()
            if canceledAlready {
                clearRunningBlocking()
                batch[0].complete(.failure(RedisError(.canceled, "canceled before it was sent")))
                return
            }
            socket.setTimeout(blocking + configuration.commandTimeout)
        }
        defer {
            if blocking != nil {
                clearRunningBlocking()
                self.socket?.setTimeout(configuration.commandTimeout)
            }
        }
        for request in batch {
            for command in request.commands { socket.append(command) }
        }
        var index = 0
        while index < batch.count {
            let request = batch[index]
            var replies: [RESPValue] = []
            replies.reserveCapacity(request.commands.count)
            do {
                for _ in request.commands { replies.append(try socket.readReply()) }
            } catch {
                // The connection is unusable after any read failure: drop it and fail the rest.
                self.socket = nil
                let interrupted = blocking != nil && isClosedOrCanceled(request.id)
                let failure = interrupted ? RedisError(.canceled, "interrupted") : error
                for rest in batch[index...] { rest.complete(.failure(failure)) }
                return
            }
            request.complete(.success(replies))
            index += 1
        }
    }

    private func clearRunningBlocking() {
        condition.lock()
        runningBlockingID = nil
        runningFD = -1
        interruptedID = nil
        condition.unlock()
    }

    private func isClosedOrCanceled(_ id: UInt64) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return closed || interruptedID == id
    }
}

/// A connection's connect attempts: the backoff after failed ones, and their log lines (the first
/// failure and every twentieth, and the reconnect).
struct ConnectAttempts {
    private var backoff: ReconnectBackoff
    private var next: ContinuousClock.Instant = .now
    private let endpoint: String
    private let logger: Logger

    init(configuration: RedisConfiguration, logger: Logger) {
        self.backoff = ReconnectBackoff(
            base: configuration.reconnectBaseDelay, maximum: configuration.reconnectMaxDelay)
        self.endpoint = configuration.redactedDescription
        self.logger = logger
    }

    /// How long to wait before the next attempt (zero or less: none).
    var wait: Duration { next - .now }

    mutating func succeeded() {
        if backoff.failures > 0 { logger.info("redis reconnected", metadata: ["redis.endpoint": "\(endpoint)"]) }
        backoff.reset()
    }

    /// Only a failure to connect backs off; a refused login or database does not.
    mutating func failed(_ error: RedisError) {
        guard error.code == .connectionFailed else { return }
        next = .now + backoff.nextDelay()
        if backoff.failures == 1 || backoff.failures % 20 == 0 {
            logger.warning(
                "redis connect failed",
                metadata: ["error": "\(error.message)", "redis.attempts": "\(backoff.failures)"])
        }
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
