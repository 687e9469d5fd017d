import Foundation
import Logging
import ThreadSupport

/// What a ``RedisSubscriber`` delivers.
public enum RedisSubscriberEvent: Sendable, Equatable {
    /// The subscription is (again) in place. Messages published while it was not are lost:
    /// treat pub/sub as a nudge and re-read the authoritative state on this event.
    case subscribed
    /// A message on one of the channels.
    case message(channel: String, payload: [UInt8])
}

/// A pub/sub subscription on a connection and thread of its own, resubscribing by itself after
/// the connection is lost.
public final class RedisSubscriber: Sendable {
    /// The events, in order. Finishes after ``close()``.
    public let events: AsyncStream<RedisSubscriberEvent>
    private let state: SubscriberState

    /// Subscribes to `channels` (exact names) and starts delivering events.
    public init(configuration: RedisConfiguration, channels: [String], logger: Logger = Logger(label: "imagegen.redis"))
    {
        let (stream, continuation) = AsyncStream.makeStream(
            of: RedisSubscriberEvent.self, bufferingPolicy: .bufferingNewest(4096))
        self.events = stream
        let state = SubscriberState(
            configuration: configuration, channels: channels, continuation: continuation, logger: logger)
        self.state = state
        startThread(named: "redis-sub") { state.runLoop() }
    }

    deinit { state.close() }

    /// Stops the subscription and finishes ``events``. Idempotent.
    public func close() { state.close() }
}

/// `@unchecked Sendable`: `closed` and `fd` are guarded by `lock`; the socket lives on the thread.
private final class SubscriberState: @unchecked Sendable {
    private let lock = NSLock()
    private var closed = false
    private var fd: Int32 = -1
    private let configuration: RedisConfiguration
    private let channels: [String]
    private let continuation: AsyncStream<RedisSubscriberEvent>.Continuation
    private let logger: Logger

    init(
        configuration: RedisConfiguration, channels: [String],
        continuation: AsyncStream<RedisSubscriberEvent>.Continuation, logger: Logger
    ) {
        self.configuration = configuration
        self.channels = channels
        self.continuation = continuation
        self.logger = logger
    }

    var isClosed: Bool {
        lock.lock()
        defer { lock.unlock() }
        return closed
    }

    func close() {
        lock.lock()
        let wasClosed = closed
        closed = true
        HiredisSocket.interrupt(fd: fd)
        lock.unlock()
        if !wasClosed { continuation.finish() }
    }

    func runLoop() {
        var backoff = ReconnectBackoff(base: configuration.reconnectBaseDelay, maximum: configuration.reconnectMaxDelay)
        while !isClosed {
            do {
                let socket = try HiredisSocket(configuration: configuration)
                lock.lock()
                if closed {
                    lock.unlock()
                    return
                }
                fd = socket.fileDescriptor
                lock.unlock()
                let subscribe: RedisCommand = [RedisArgument("SUBSCRIBE")] + channels.map { RedisArgument($0) }
                socket.append(subscribe)
                for _ in channels { _ = try socket.readReply() }
                socket.setTimeout(nil)
                backoff.reset()
                continuation.yield(.subscribed)
                while true {
                    let reply = try socket.readReply()
                    guard let parts = reply.array, parts.count == 3, parts[0].string == "message",
                        let channel = parts[1].string, let payload = parts[2].bytes
                    else { continue }
                    continuation.yield(.message(channel: channel, payload: payload))
                }
            } catch {
                lock.lock()
                fd = -1
                lock.unlock()
                if isClosed { return }
                let delay = backoff.nextDelay()
                if backoff.failures == 1 || backoff.failures % 20 == 0 {
                    logger.warning("redis subscription lost; reconnecting", metadata: ["error": "\(error)"])
                }
                Thread.sleep(forTimeInterval: delay.seconds)
            }
        }
    }
}
