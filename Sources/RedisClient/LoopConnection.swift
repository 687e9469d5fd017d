import Foundation
import Logging
import Synchronization
import ThreadSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A connection's requests run by a ``TaskLoop``: a non-blocking socket that the loop polls.
///
/// Any thread may queue a request (the inbox, under a lock). The loop writes it as soon as the job
/// that made it ends, unless a batch is on the wire already; then it waits, with whatever else
/// arrives meanwhile, for that batch's last reply, and all of them go out together (as on a thread
/// of its own). Replies come back in order and complete the requests on the loop's thread. Connecting (a blocking hiredis call, with the
/// authentication and the database selection) runs on a short-lived thread of its own, after the
/// backoff when the last attempt failed; requests wait in the inbox meanwhile, and fail with the
/// attempt's error when it fails.
///
/// As on a connection's own thread: a blocking command goes alone on the wire (the requests after
/// it wait for its reply), a reply later than its timeout (the command timeout, plus a blocking
/// command's own) fails the requests on the wire and drops the connection, and any broken read or
/// write fails them as well. Nothing is ever sent twice.
final class LoopConnection: RequestRunner, LoopDescriptorHandler, @unchecked Sendable {
    private let configuration: RedisConfiguration
    private let loop: TaskLoop

    // Guarded by `lock`.
    private let lock = Mutex<Inbox>(Inbox())
    private struct Inbox {
        var requests: [Request] = []
        var closed = false
        /// Whether a ``flush()`` is queued on the loop already.
        var flushQueued = false
        var counter: UInt64 = 0
        /// Ids of blocking requests canceled while on the wire (the loop drops the connection).
        var interrupted: Set<UInt64> = []
    }

    private let unanswered = Atomic<Int>(0)

    // Only the loop's thread touches these.
    private var socket: HiredisSocket?
    private var connecting = false
    private var attempts: ConnectAttempts
    /// Requests written (or being written), oldest first from `onWireHead`; their replies arrive
    /// in this order.
    private var onWire: [Sent] = []
    private var onWireHead = 0
    /// Bytes to write, from `outputOffset`.
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var waitsForWritable = false
    /// The timer that checks the oldest request on the wire against its deadline, if armed.
    private var timeoutTimer: UInt64?
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)

    private struct Sent {
        var request: Request
        var replies: [RESPValue]
        /// When the request fails unanswered (nanoseconds of ``ConditionLock/now()``).
        var deadline: UInt64
    }

    init(configuration: RedisConfiguration, logger: Logger, loop: TaskLoop) {
        self.configuration = configuration
        self.loop = loop
        self.attempts = ConnectAttempts(configuration: configuration, logger: logger)
    }

    // MARK: Any thread

    func nextRequestID() -> UInt64 {
        lock.withLock { inbox in
            inbox.counter += 1
            return inbox.counter
        }
    }

    var inFlight: Int { unanswered.load(ordering: .relaxed) }

    var isIOThread: Bool { loop.isCurrentThread }

    func enqueue(_ request: Request) {
        let counted = request.beforeCompletion { [self] in unanswered.subtract(1, ordering: .relaxed) }
        unanswered.add(1, ordering: .relaxed)
        let (accepted, queueFlush) = lock.withLock { inbox -> (Bool, Bool) in
            if inbox.closed { return (false, false) }
            inbox.requests.append(counted)
            let queue = !inbox.flushQueued
            inbox.flushQueued = true
            return (true, queue)
        }
        guard accepted else {
            counted.complete(.failure(RedisError(.closed, "connection closed")))
            return
        }
        if queueFlush { loop.execute { [self] in flush() } }
    }

    func cancel(id: UInt64) {
        let removed = lock.withLock { inbox -> Request? in
            if let index = inbox.requests.firstIndex(where: { $0.id == id }) {
                return inbox.requests.remove(at: index)
            }
            if inbox.closed { return nil }
            inbox.interrupted.insert(id)
            return nil
        }
        if let removed {
            removed.complete(.failure(RedisError(.canceled, "canceled before it was sent")))
            return
        }
        loop.execute { [self] in interruptIfBlocking(id) }
    }

    func close() {
        let pending = lock.withLock { inbox -> [Request]? in
            if inbox.closed { return nil }
            inbox.closed = true
            let requests = inbox.requests
            inbox.requests.removeAll()
            return requests
        }
        guard let pending else { return }
        for request in pending { request.complete(.failure(RedisError(.closed, "connection closed"))) }
        loop.execute { [self] in drop(RedisError(.closed, "connection closed")) }
    }

    // MARK: The loop's thread

    /// Takes what the inbox holds and writes it, unless a batch is on the wire: every request up to
    /// the first blocking one, or a blocking one alone.
    private func flush() {
        guard let socket else {
            lock.withLock { $0.flushQueued = false }
            if !connecting && hasInbox() { connect() }
            return
        }
        let now = ConditionLock.now()
        let timeout = TaskLoop.nanoseconds(configuration.commandTimeout)
        let taken = lock.withLock { inbox -> [Request] in
            inbox.flushQueued = false
            // One batch on the wire at a time: what arrives meanwhile goes out together when its
            // last reply is in.
            if onWireHead < onWire.count { return [] }
            return inbox.requests.takeBatch()
        }
        guard !taken.isEmpty else { return }
        onWire.removeAll(keepingCapacity: true)
        onWireHead = 0
        for request in taken {
            for command in request.commands { HiredisSocket.append(command, to: &output) }
            let limit = request.blockingTimeout.map { TaskLoop.nanoseconds($0) + timeout } ?? timeout
            onWire.append(Sent(request: request, replies: [], deadline: now + limit))
        }
        armTimeout()
        writeOutput(socket)
    }

    private func hasInbox() -> Bool {
        lock.withLock { !$0.requests.isEmpty }
    }

    func descriptorReady(readable: Bool, writable: Bool) {
        guard let socket else { return }
        if writable { writeOutput(socket) }
        if readable, self.socket === socket { readReplies(socket) }
    }

    /// Writes as much of the output as the socket takes; waits for it to become writable for the rest.
    private func writeOutput(_ socket: HiredisSocket) {
        let fd = socket.fileDescriptor
        while outputOffset < output.count {
            let written = output.withUnsafeBytes { bytes in
                send(fd, bytes.baseAddress! + outputOffset, bytes.count - outputOffset, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                outputOffset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else if written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if !waitsForWritable {
                    waitsForWritable = true
                    loop.setWritable(fd, true)
                }
                return
            } else {
                drop(RedisError(.connectionFailed, "write: \(String(cString: strerror(errno)))"))
                return
            }
        }
        if output.capacity > 1 << 20 {
            output = []
        } else {
            output.removeAll(keepingCapacity: true)
        }
        outputOffset = 0
        if waitsForWritable {
            waitsForWritable = false
            loop.setWritable(fd, false)
        }
    }

    /// Reads what arrived and completes the requests whose replies are all in.
    private func readReplies(_ socket: HiredisSocket) {
        let fd = socket.fileDescriptor
        while true {
            let count = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                do {
                    try readBuffer.withUnsafeBytes { try socket.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
                    while let reply = try socket.bufferedReply() {
                        guard deliver(reply) else {
                            drop(RedisError(.protocolError, "a reply that no request waits for"))
                            return
                        }
                    }
                } catch {
                    drop(error as? RedisError ?? RedisError(.protocolError, "\(error)"))
                    return
                }
                if count < readBuffer.count { break }
            } else if count == 0 {
                drop(RedisError(.connectionFailed, "connection lost"))
                return
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                break
            } else {
                drop(RedisError(.connectionFailed, "read: \(String(cString: strerror(errno)))"))
                return
            }
        }
        if onWireHead == onWire.count && hasInbox() { flush() }
    }

    /// Adds a reply to the oldest request on the wire, completing it with its last. False when no
    /// request waits for one.
    private func deliver(_ reply: RESPValue) -> Bool {
        guard onWireHead < onWire.count else { return false }
        onWire[onWireHead].replies.append(reply)
        guard onWire[onWireHead].replies.count == onWire[onWireHead].request.commands.count else { return true }
        let sent = onWire[onWireHead]
        onWireHead += 1
        if onWireHead == onWire.count {
            // The batch is in: nothing keeps its replies alive.
            onWire.removeAll(keepingCapacity: true)
            onWireHead = 0
        } else {
            onWire[onWireHead - 1].replies = []
        }
        if sent.request.blockingTimeout != nil { lock.withLock { _ = $0.interrupted.remove(sent.request.id) } }
        sent.request.complete(.success(sent.replies))
        return true
    }

    /// Fails every request on the wire with `error` (a canceled blocking one as canceled) and
    /// closes the socket. The next request connects again.
    private func drop(_ error: RedisError) {
        if let socket {
            loop.unwatch(socket.fileDescriptor)
            self.socket = nil
        }
        output = []
        outputOffset = 0
        waitsForWritable = false
        if let timeoutTimer { loop.unschedule(timeoutTimer) }
        timeoutTimer = nil
        let failed = onWire[onWireHead...]
        onWire = []
        onWireHead = 0
        let interrupted = lock.withLock { inbox -> Set<UInt64> in
            defer { inbox.interrupted.removeAll() }
            return inbox.interrupted
        }
        for sent in failed {
            let canceled = sent.request.blockingTimeout != nil && interrupted.contains(sent.request.id)
            sent.request.complete(.failure(canceled ? RedisError(.canceled, "interrupted") : error))
        }
        if hasInbox() { flush() }
    }

    /// A cancel that found nothing in the inbox: a blocking request on the wire is interrupted by
    /// dropping the connection, as a blocking read on a connection's own thread is.
    private func interruptIfBlocking(_ id: UInt64) {
        let running = onWire[onWireHead...].contains { $0.request.id == id && $0.request.blockingTimeout != nil }
        if running {
            drop(RedisError(.canceled, "interrupted"))
        } else {
            lock.withLock { _ = $0.interrupted.remove(id) }
        }
    }

    /// Arms the timer for the oldest request on the wire, unless it is armed.
    private func armTimeout() {
        guard timeoutTimer == nil, onWireHead < onWire.count else { return }
        timeoutTimer = loop.schedule(at: onWire[onWireHead].deadline) { [self] in
            timeoutTimer = nil
            guard onWireHead < onWire.count else { return }
            if onWire[onWireHead].deadline <= ConditionLock.now() {
                drop(RedisError(.timeout, "no reply within the timeout"))
            } else {
                armTimeout()
            }
        }
    }

    /// Connects on a thread of its own (after the backoff), then hands the socket to the loop.
    private func connect() {
        connecting = true
        let wait = attempts.wait
        let configuration = configuration
        startThread(named: "redis-connect") { [self] in
            if wait > .zero { Thread.sleep(forTimeInterval: wait.seconds) }
            let result = Result { try HiredisSocket(configuration: configuration) }.mapError {
                $0 as? RedisError ?? RedisError(.connectionFailed, "\($0)")
            }
            let handed = SocketHandOff(result)
            loop.execute { [self] in connected(handed.result) }
        }
    }

    private func connected(_ result: Result<HiredisSocket, RedisError>) {
        connecting = false
        switch result {
        case .success(let socket):
            if lock.withLock({ $0.closed }) { return }
            guard socket.makeNonBlocking() else {
                failInbox(RedisError(.connectionFailed, "could not make the socket non-blocking"))
                return
            }
            attempts.succeeded()
            self.socket = socket
            loop.watch(socket.fileDescriptor, self)
            flush()
        case .failure(let error):
            attempts.failed(error)
            failInbox(error)
        }
    }

    private func failInbox(_ error: RedisError) {
        let failed = lock.withLock { inbox -> [Request] in
            defer { inbox.requests.removeAll() }
            return inbox.requests
        }
        for request in failed { request.complete(.failure(error)) }
    }
}

/// Carries a freshly connected socket from its connecting thread to the loop, which alone uses it
/// from then on.
private final class SocketHandOff: @unchecked Sendable {
    let result: Result<HiredisSocket, RedisError>
    init(_ result: Result<HiredisSocket, RedisError>) { self.result = result }
}
