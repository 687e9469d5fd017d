import CHiredis
import Foundation
import ThreadSupport

/// One hiredis context, used only from the thread that owns it.
///
/// Not `Sendable`: ``RedisConnection`` and ``RedisSubscriber`` keep it confined to their own
/// thread. The only cross-thread operation is ``interrupt(fd:)``, which works on a copy of the
/// file descriptor.
final class HiredisSocket {
    private var context: UnsafeMutablePointer<redisContext>
    let configuration: RedisConfiguration

    /// The socket's file descriptor, for ``interrupt(fd:)``.
    var fileDescriptor: Int32 { context.pointee.fd }

    /// Connects, authenticates and selects the database. Blocking: call on a dedicated thread.
    init(configuration: RedisConfiguration) throws {
        ignoreBrokenPipeSignal
        self.configuration = configuration
        let connectTimeout = timeval(configuration.connectTimeout)
        let maybeContext: UnsafeMutablePointer<redisContext>?
        switch configuration.endpoint {
        case .tcp(let host, let port):
            maybeContext = redisConnectWithTimeout(host, Int32(port), connectTimeout)
        case .unixSocket(let path):
            maybeContext = redisConnectUnixWithTimeout(path, connectTimeout)
        }
        guard let context = maybeContext else {
            throw RedisError(.connectionFailed, "could not allocate a connection")
        }
        if context.pointee.err != 0 {
            let message = HiredisSocket.errorString(context)
            redisFree(context)
            throw RedisError(.connectionFailed, "connect to \(configuration.redactedDescription): \(message)")
        }
        self.context = context
        if case .tcp = configuration.endpoint { _ = redisEnableKeepAlive(context) }
        setTimeout(configuration.commandTimeout)
        // From here on `deinit` frees the context, also when this initializer throws.
        if let password = configuration.password {
            var auth: RedisCommand = ["AUTH"]
            if let user = configuration.username { auth.append(RedisArgument(user)) }
            auth.append(RedisArgument(password))
            if case .error(let message) = try roundTrip(auth) {
                throw RedisError(.configuration, "authentication failed: \(message)")
            }
        }
        if configuration.database != 0,
            case .error(let message) = try roundTrip(["SELECT", RedisArgument(configuration.database)])
        {
            throw RedisError(.configuration, "SELECT \(configuration.database) failed: \(message)")
        }
        if let name = configuration.clientName {
            _ = try roundTrip(["CLIENT", "SETNAME", RedisArgument(name)])
        }
    }

    deinit { redisFree(context) }

    /// Sets the socket's read and write timeout; `nil` means wait forever.
    func setTimeout(_ duration: Duration?) {
        _ = redisSetTimeout(context, duration.map(timeval.init) ?? timeval(tv_sec: 0, tv_usec: 0))
    }

    /// Queues one command in hiredis' output buffer.
    ///
    /// The command goes in RESP, in pieces: the headers and small arguments gathered, a large
    /// argument straight from its own storage. A megabyte blob is therefore copied once on its
    /// way to the socket (into hiredis' buffer), never into a whole-command buffer first.
    func append(_ command: RedisCommand) {
        HiredisSocket.forEachPiece(of: command) { piece in
            piece.withMemoryRebound(to: CChar.self) { chars in
                _ = redisAppendFormattedCommand(context, chars.baseAddress, chars.count)
            }
        }
    }

    /// `command` as a RESP array of bulk strings, in one buffer.
    static func encode(_ command: RedisCommand) -> [UInt8] {
        var resp: [UInt8] = []
        append(command, to: &resp)
        return resp
    }

    /// Appends `command` as a RESP array of bulk strings to `buffer` (a loop connection's output),
    /// every argument copied once, straight into it.
    static func append(_ command: RedisCommand, to buffer: inout [UInt8]) {
        appendHeader(UInt8(ascii: "*"), command.count, to: &buffer)
        for argument in command {
            appendHeader(UInt8(ascii: "$"), argument.bytes.count, to: &buffer)
            buffer.append(contentsOf: argument.bytes)
            buffer.append(contentsOf: [UInt8(ascii: "\r"), UInt8(ascii: "\n")])
        }
    }

    /// Arguments up to this size are gathered with the headers; larger ones go by themselves.
    static let gatherLimit = 4096

    /// Calls `body` with consecutive pieces of `command` in RESP: together, a RESP array of bulk
    /// strings.
    static func forEachPiece(of command: RedisCommand, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        var gathered: [UInt8] = []
        gathered.reserveCapacity(
            command.reduce(16) { $0 + ($1.bytes.count <= gatherLimit ? $1.bytes.count : 0) + 16 })
        appendHeader(UInt8(ascii: "*"), command.count, to: &gathered)
        for argument in command {
            appendHeader(UInt8(ascii: "$"), argument.bytes.count, to: &gathered)
            if argument.bytes.count <= gatherLimit {
                gathered.append(contentsOf: argument.bytes)
            } else {
                gathered.withUnsafeBufferPointer(body)
                gathered.removeAll(keepingCapacity: true)
                argument.bytes.withUnsafeBufferPointer(body)
            }
            gathered.append(contentsOf: [UInt8(ascii: "\r"), UInt8(ascii: "\n")])
        }
        gathered.withUnsafeBufferPointer(body)
    }

    /// `<kind><count>\r\n`.
    private static func appendHeader(_ kind: UInt8, _ count: Int, to resp: inout [UInt8]) {
        resp.append(kind)
        var divisor = 1
        while divisor <= count / 10 { divisor *= 10 }
        var rest = count
        while divisor > 0 {
            resp.append(UInt8(ascii: "0") + UInt8(rest / divisor))
            rest %= divisor
            divisor /= 10
        }
        resp.append(contentsOf: [UInt8(ascii: "\r"), UInt8(ascii: "\n")])
    }

    /// Makes the socket non-blocking, for a connection that polls it on a task loop: from here on
    /// only ``feed(_:)`` and ``bufferedReply()`` read, and the caller writes the descriptor itself.
    func makeNonBlocking() -> Bool {
        setNonBlocking(context.pointee.fd)
    }

    /// Hands bytes read from the socket to hiredis' reply parser.
    func feed(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if redisReaderFeed(context.pointee.reader, base.assumingMemoryBound(to: CChar.self), bytes.count) != REDIS_OK {
            throw RedisError(.protocolError, HiredisSocket.errorString(context))
        }
    }

    /// The next whole reply among the bytes fed so far, or nil when more are needed.
    func bufferedReply() throws -> RESPValue? {
        var raw: UnsafeMutableRawPointer?
        guard redisGetReplyFromReader(context, &raw) == REDIS_OK else {
            throw RedisError(.protocolError, HiredisSocket.errorString(context))
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return HiredisSocket.convert(raw.assumingMemoryBound(to: redisReply.self))
    }

    /// Flushes pending output and reads the next reply.
    func readReply() throws -> RESPValue {
        var raw: UnsafeMutableRawPointer?
        guard redisGetReply(context, &raw) == REDIS_OK, let raw else {
            let error = errno
            let message = HiredisSocket.errorString(context)
            if context.pointee.err == REDIS_ERR_IO && (error == EAGAIN || error == EWOULDBLOCK) {
                throw RedisError(.timeout, "no reply within the timeout")
            }
            if context.pointee.err == REDIS_ERR_PROTOCOL {
                throw RedisError(.protocolError, message)
            }
            throw RedisError(.connectionFailed, message.isEmpty ? "connection lost" : message)
        }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return HiredisSocket.convert(reply)
    }

    /// Sends one command and waits for its reply.
    func roundTrip(_ command: RedisCommand) throws -> RESPValue {
        append(command)
        return try readReply()
    }

    /// Wakes a thread blocked reading this socket: it sees a lost connection.
    static func interrupt(fd: Int32) {
        if fd >= 0 { _ = shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private static func errorString(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let r = reply.pointee
        func bytes() -> [UInt8] {
            guard let str = r.str, r.len > 0 else { return [] }
            return Array(UnsafeRawBufferPointer(start: str, count: Int(r.len)))
        }
        switch r.type {
        case REDIS_REPLY_STRING: return .bulk(bytes())
        case REDIS_REPLY_STATUS: return .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: return .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: return .integer(Int64(r.integer))
        case REDIS_REPLY_NIL: return .null
        case REDIS_REPLY_ARRAY:
            var items: [RESPValue] = []
            items.reserveCapacity(Int(r.elements))
            for index in 0..<Int(r.elements) {
                if let element = r.element[index] { items.append(convert(element)) } else { items.append(.null) }
            }
            return .array(items)
        default: return .null
        }
    }
}

/// hiredis writes with `write(2)`: a server that went away would raise SIGPIPE and kill the
/// process. Ignoring it turns that into an `EPIPE` error on the connection, which reconnects.
private let ignoreBrokenPipeSignal: Void = {
    _ = signal(SIGPIPE, SIG_IGN)
}()

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}

/// Exponential backoff with full jitter, shared by every reconnecting component.
struct ReconnectBackoff {
    let base: Duration
    let maximum: Duration
    private(set) var failures = 0

    init(base: Duration, maximum: Duration) {
        self.base = base
        self.maximum = maximum
    }

    /// The delay to wait after one more failure.
    mutating func nextDelay() -> Duration {
        failures += 1
        let exponent = min(failures - 1, 20)
        let ceiling = min(maximum, base * (1 << exponent))
        let ceilingNanos = Double(ceiling.components.seconds) * 1e9 + Double(ceiling.components.attoseconds) / 1e9
        return .nanoseconds(Int64(Double.random(in: 0...max(ceilingNanos, 1))))
    }

    mutating func reset() { failures = 0 }
}
