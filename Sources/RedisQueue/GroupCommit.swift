import Synchronization

/// Group commit: calls that arrive while one batch is on the wire go together in the next one.
///
/// A lone call goes at once, from the caller's own task (no timer, no added latency, no extra
/// task); under load every round trip carries everything that queued up during the previous one,
/// up to `maxBatch` items and `maxWeight` (each item weighs what `weight` says; a batch always
/// takes at least one item, however heavy). `send` gets the items
/// of one batch and returns one reply per item, in order; when it throws, every call of that batch
/// gets the error.
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
    }

    private let state = Mutex(State())
    private let maxBatch: Int
    private let maxWeight: Int
    private let weight: @Sendable (Item) -> Int
    private let send: Send

    init(
        maxBatch: Int, maxWeight: Int = .max, weight: @escaping @Sendable (Item) -> Int = { _ in 0 },
        send: @escaping Send
    ) {
        precondition(maxBatch > 0, "a batch holds at least one item")
        self.maxBatch = maxBatch
        self.maxWeight = maxWeight
        self.weight = weight
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
                let startSender = state.withLock { state in
                    state.waiting.append(Waiter(item: item, continuation: continuation))
                    if state.sending { return false }
                    state.sending = true
                    return true
                }
                if startSender {
                    Task { await self.sendUntilNobodyWaits() }
                }
            }
        }
        let reply: Result<Reply, any Error>
        do {
            let replies = try await send([item])
            guard replies.count == 1 else { throw GroupCommitError(expected: 1, received: replies.count) }
            reply = .success(replies[0])
        } catch {
            reply = .failure(error)
        }
        let more = state.withLock { state in
            if state.waiting.isEmpty {
                state.sending = false
                return false
            }
            return true
        }
        if more {
            Task { await self.sendUntilNobodyWaits() }
        }
        return try reply.get()
    }

    private func sendUntilNobodyWaits() async {
        while true {
            let batch = state.withLock { state in
                var count = 0
                var total = 0
                while count < min(state.waiting.count, maxBatch) {
                    let next = weight(state.waiting[count].item)
                    if count > 0 && next > maxWeight - total { break }
                    total += next
                    count += 1
                }
                let batch = Array(state.waiting.prefix(count))
                state.waiting.removeFirst(count)
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
}

/// A batch's replies did not match its items one to one.
struct GroupCommitError: Error, CustomStringConvertible {
    var expected: Int
    var received: Int
    var description: String { "expected \(expected) replies in the batch, received \(received)" }
}
