import Synchronization
import ThreadSupport

/// Group commit: calls that arrive while one batch is on the wire go together in the next one.
///
/// A lone call goes at once, from the caller's own task (no timer, no added latency, no extra
/// task); under load every round trip carries everything that queued up during the previous one,
/// up to `maxBatch` items and `maxWeight` (each item weighs what `weight` says; a batch always
/// takes at least one item, however heavy). `send` gets the items
/// of one batch and returns one reply per item, in order; when it throws, every call of that batch
/// gets the error.
///
/// Calls that arrive one by one but often (many slots waiting on a slow backend: each round trip
/// would carry one item) are gathered by the linger: a batch of fewer than `linger.below` items
/// that would go out less than `linger.interval` after a previous one that was small too waits
/// until that interval has passed or `linger.below` items are ready, and takes what arrived
/// meanwhile. A call after a quiet spell, or after a big batch, still goes at once.
final class GroupCommit<Item: Sendable, Reply: Sendable>: Sendable {
    typealias Send = @Sendable ([Item]) async throws -> [Reply]

    private struct Waiter: Sendable {
        var item: Item
        var continuation: CheckedContinuation<Reply, any Error>
    }

    private struct State: Sendable {
        /// Whether a sender task is running (it keeps sending until nobody waits).
        var sending = false
        var waiting: [Waiter] = []
        /// When the previous batch went out (nanoseconds of `ConditionLock.now()`), and its size.
        var lastSend: UInt64?
        var lastSize = 0
        /// The sender while it lingers, and its deadline on the timer (ended early once the batch
        /// is big enough, or when the sender's task is canceled).
        var lingering: (continuation: CheckedContinuation<Void, Never>, timer: UInt64, number: UInt64)?
        /// Numbers the lingers, so that a late timer or cancellation cannot end a later linger.
        var lingers: UInt64 = 0
        /// Items the lingering sender brings itself (1 for a leading call, else 0).
        var lingerOwn = 0
    }

    private let state = Mutex(State())
    private let maxBatch: Int
    private let maxWeight: Int
    private let weight: @Sendable (Item) -> Int
    private let linger: GroupCommitLinger
    private let send: Send

    init(
        maxBatch: Int, maxWeight: Int = .max, weight: @escaping @Sendable (Item) -> Int = { _ in 0 },
        linger: GroupCommitLinger = .none, send: @escaping Send
    ) {
        precondition(maxBatch > 0, "a batch holds at least one item")
        self.maxBatch = maxBatch
        self.maxWeight = maxWeight
        self.weight = weight
        self.linger = linger
        self.send = send
    }

    /// Calls waiting for the next batch (for tests).
    var waitingCount: Int { state.withLock { $0.waiting.count } }

    /// Sends `item` with the next batch and returns its reply.
    ///
    /// When nothing is on the wire the caller sends its own item at once, on its own task; calls
    /// that arrive meanwhile wait, and are sent together by a task started when that call returns.
    func submit(_ item: Item) async throws -> Reply {
        let lead = state.withLock { state in
            if state.sending { return false }
            state.sending = true
            return true
        }
        guard lead else {
            return try await withCheckedThrowingContinuation { continuation in
                let startSender = state.withLock { state -> Bool in
                    state.waiting.append(Waiter(item: item, continuation: continuation))
                    if state.sending {
                        if state.waiting.count + state.lingerOwn >= linger.below { endLinger(&state) }
                        return false
                    }
                    state.sending = true
                    return true
                }
                if startSender {
                    Task(executorPreference: currentTaskExecutorPreference()) { await self.sendUntilNobodyWaits() }
                }
            }
        }
        // Others may have queued behind this call while it lingered; they go with it.
        await lingerIfFrequent(leading: true)
        let others = state.withLock { takeBatch(&$0, leadWeight: weight(item)) }
        let reply: Result<Reply, any Error>
        do {
            let replies = try await send([item] + others.map(\.item))
            guard replies.count == 1 + others.count else {
                throw GroupCommitError(expected: 1 + others.count, received: replies.count)
            }
            reply = .success(replies[0])
            for (waiter, reply) in zip(others, replies.dropFirst()) { waiter.continuation.resume(returning: reply) }
        } catch {
            reply = .failure(error)
            for waiter in others { waiter.continuation.resume(throwing: error) }
        }
        let more = state.withLock { state in
            if state.waiting.isEmpty {
                state.sending = false
                return false
            }
            return true
        }
        if more {
            Task(executorPreference: currentTaskExecutorPreference()) { await self.sendUntilNobodyWaits() }
        }
        return try reply.get()
    }

    private func sendUntilNobodyWaits() async {
        while true {
            await lingerIfFrequent(leading: false)
            let batch = state.withLock { state in
                let batch = takeBatch(&state, leadWeight: nil)
                if batch.isEmpty { state.sending = false }
                return batch
            }
            if batch.isEmpty { return }
            do {
                let replies = try await send(batch.map(\.item))
                guard replies.count == batch.count else {
                    throw GroupCommitError(expected: batch.count, received: replies.count)
                }
                for (waiter, reply) in zip(batch, replies) { waiter.continuation.resume(returning: reply) }
            } catch {
                for waiter in batch { waiter.continuation.resume(throwing: error) }
            }
        }
    }

    /// Takes the next batch's waiting calls (after the lead's item, when `leadWeight` is given:
    /// it counts toward the limits) and notes the time it goes out.
    private func takeBatch(_ state: inout State, leadWeight: Int?) -> [Waiter] {
        var count = 0
        var total = leadWeight ?? 0
        let room = maxBatch - (leadWeight == nil ? 0 : 1)
        while count < min(state.waiting.count, room) {
            let next = weight(state.waiting[count].item)
            if (count > 0 || leadWeight != nil) && next > maxWeight - total { break }
            total += next
            count += 1
        }
        let batch = Array(state.waiting.prefix(count))
        state.waiting.removeFirst(count)
        // Only the linger looks at the previous batch.
        if linger.below > 1 && (leadWeight != nil || !batch.isEmpty) {
            state.lastSend = ConditionLock.now()
            state.lastSize = batch.count + (leadWeight == nil ? 0 : 1)
        }
        return batch
    }

    /// Waits, when the linger says so, before the sender takes its next batch: until the interval
    /// since the previous batch has passed, or until `linger.below` items are ready.
    ///
    /// The wait is a deadline on the process' `TaskLoop` (no task and no timer of its own);
    /// an arrival that makes the batch big enough, or the caller's cancellation, ends it early.
    private func lingerIfFrequent(leading: Bool) async {
        guard linger.below > 1 else { return }
        let number = state.withLock { state in
            state.lingers &+= 1
            return state.lingers
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let lingers = state.withLock { state -> Bool in
                    let size = state.waiting.count + (leading ? 1 : 0)
                    // Calls that already come in big batches need no gathering; a canceled caller
                    // sends at once.
                    guard size > 0, size < linger.below, state.lastSize < linger.below, let last = state.lastSend,
                        !Task.isCancelled
                    else { return false }
                    let until = last + TaskLoop.nanoseconds(linger.interval)
                    guard until > ConditionLock.now() else { return false }
                    let timer = TaskLoop.shared.schedule(at: until) { [self] in
                        self.state.withLock { endLinger(&$0, number: number, timerFired: true) }
                    }
                    state.lingering = (continuation, timer, number)
                    state.lingerOwn = leading ? 1 : 0
                    return true
                }
                if !lingers { continuation.resume() }
            }
        } onCancel: {
            state.withLock { endLinger(&$0, number: number) }
        }
    }

    /// Ends the sender's linger, if it lingers (and is linger `number`, when given): its deadline
    /// leaves the timer (unless that is what fired) and it goes on.
    private func endLinger(_ state: inout State, number: UInt64? = nil, timerFired: Bool = false) {
        guard let (continuation, timer, current) = state.lingering, number == nil || number == current else { return }
        state.lingering = nil
        state.lingerOwn = 0
        if !timerFired { TaskLoop.shared.unschedule(timer) }
        continuation.resume()
    }
}

/// How completions that come often, one by one, are gathered into fewer calls (see
/// ``RedisJobQueue/init(pool:name:logger:completionLinger:)``). The default, `.none`, never waits.
public struct GroupCommitLinger: Sendable {
    /// The least time between the starts of two calls, when both carry fewer than `below`
    /// completions.
    public var interval: Duration
    /// A call of this many completions or more goes at once (2 or more; below 2 the linger is off).
    public var below: Int

    public init(interval: Duration, below: Int) {
        self.interval = interval
        self.below = below
    }

    public static let none = GroupCommitLinger(interval: .zero, below: 0)

    /// The worker's default for `slots` slots: 2 ms, and at once when a quarter of them are
    /// completing (off below 8 slots).
    public static func worker(slots: Int) -> GroupCommitLinger {
        GroupCommitLinger(interval: .milliseconds(2), below: slots / 4)
    }
}

/// A batch's replies did not match its items one to one.
struct GroupCommitError: Error, CustomStringConvertible {
    var expected: Int
    var received: Int
    var description: String { "expected \(expected) replies in the batch, received \(received)" }
}
