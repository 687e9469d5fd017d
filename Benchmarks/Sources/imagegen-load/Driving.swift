import BenchmarkSupport
import Foundation
import JobQueue
import RedisQueue
import Synchronization

/// Offers load through the Swift producer API (`RedisJobQueue.enqueue`).
enum Producer {
    struct Outcome {
        var ids: [String]
        var perSecond: Double
    }

    /// One awaited call at a time.
    /// The producer runs on the connections' executor (``RedisPool/executor``), as a producer that
    /// awaits each call should.
    static func awaited(_ queue: RedisJobQueue, _ specs: [JobSpec], label: String) async throws -> Outcome {
        try await withTaskExecutorPreference(queue.pool.executor) {
            try await awaitedHere(queue, specs, label: label)
        }
    }

    private static func awaitedHere(_ queue: RedisJobQueue, _ specs: [JobSpec], label: String) async throws -> Outcome {
        let progress = Progress(label: label, total: specs.count)
        var ids: [String] = []
        ids.reserveCapacity(specs.count)
        let start = ContinuousClock.now
        for spec in specs {
            ids.append(try await queue.enqueue(spec).jobID)
            progress.update(done: ids.count)
        }
        let seconds = (ContinuousClock.now - start).inSeconds
        progress.finish(done: ids.count)
        return Outcome(ids: ids, perSecond: specs.isEmpty ? 0 : Double(specs.count) / seconds)
    }

    /// Batches of `size` jobs, each batch one pipelined write (`RedisJobQueue.enqueue(batch:)`), one
    /// batch awaited at a time.
    static func batched(_ queue: RedisJobQueue, _ specs: [JobSpec], size: Int, label: String) async throws -> Outcome {
        guard !specs.isEmpty else { return Outcome(ids: [], perSecond: 0) }
        let progress = Progress(label: label, total: specs.count)
        var ids: [String] = []
        ids.reserveCapacity(specs.count)
        let start = ContinuousClock.now
        for first in stride(from: 0, to: specs.count, by: size) {
            let batch = specs[first..<min(specs.count, first + size)].map { RedisJobQueue.BatchItem($0) }
            for result in try await queue.enqueue(batch: batch) { ids.append(try result.get().jobID) }
            progress.update(done: ids.count)
        }
        let seconds = (ContinuousClock.now - start).inSeconds
        progress.finish(done: ids.count)
        return Outcome(ids: ids, perSecond: Double(specs.count) / seconds)
    }

    /// `callers` tasks, each awaiting its calls one at a time; ids in the order of `specs`.
    static func concurrent(_ queue: RedisJobQueue, _ specs: [JobSpec], callers: Int, label: String) async throws
        -> Outcome
    {
        guard !specs.isEmpty else { return Outcome(ids: [], perSecond: 0) }
        let progress = Progress(label: label, total: specs.count)
        let done = Counter()
        let start = ContinuousClock.now
        let pieces = try await withThrowingTaskGroup(of: [(Int, String)].self) { group in
            for caller in 0..<min(callers, specs.count) {
                group.addTask {
                    var ids: [(Int, String)] = []
                    for index in stride(from: caller, to: specs.count, by: callers) {
                        ids.append((index, try await queue.enqueue(specs[index]).jobID))
                        let count = done.value.add(1, ordering: .relaxed).newValue
                        if count % 500 == 0 { progress.update(done: count) }
                    }
                    return ids
                }
            }
            var all: [[(Int, String)]] = []
            for try await piece in group { all.append(piece) }
            return all
        }
        let seconds = (ContinuousClock.now - start).inSeconds
        progress.finish(done: specs.count)
        var ids = [String](repeating: "", count: specs.count)
        for (index, id) in pieces.joined() { ids[index] = id }
        return Outcome(ids: ids, perSecond: Double(specs.count) / seconds)
    }
}

/// Waits for a queue to empty, showing progress, bounded in time.
enum Drain {
    struct Outcome {
        var finished: Bool
        var seconds: Double
        var polls: Int
        var maxRSSMB: Double
    }

    /// The Redis commands one `stats` poll costs, to subtract from a phase's counts.
    static func pollCost(_ harness: Harness, _ queue: RedisJobQueue) async throws -> [String: Int] {
        let before = try await harness.snapshot()
        _ = try await queue.stats()
        let after = try await harness.snapshot()
        var delta = after.callsSince(before)
        delta["info"] = nil
        return delta
    }

    static func run(
        _ harness: Harness, _ queue: RedisJobQueue, total: Int, label: String, maxSeconds: Double,
        watch processes: [ChildProcess]
    ) async throws -> Outcome {
        try await run(harness, queue, total: total, label: label, maxSeconds: maxSeconds, watch: { processes }) { _ in }
    }

    /// Polls the queue's depth every 250 ms until nothing is queued, delayed or running, every
    /// watched worker has ended by itself, or `maxSeconds` pass; `tick` runs after each poll with the
    /// jobs remaining.
    static func run(
        _ harness: Harness, _ queue: RedisJobQueue, total: Int, label: String, maxSeconds: Double,
        watch processes: () -> [ChildProcess], tick: (Int) async throws -> Void
    ) async throws -> Outcome {
        let progress = Progress(label: label, total: total)
        let start = ContinuousClock.now
        let deadline = start + .seconds(maxSeconds)
        var polls = 0
        var maxRSS = 0
        var remaining = total
        while ContinuousClock.now < deadline {
            let stats = try await queue.stats()
            polls += 1
            remaining = stats.queuedByTier.values.reduce(0, +) + stats.delayed + stats.active
            for process in processes() { maxRSS = max(maxRSS, process.residentBytes() ?? 0) }
            progress.update(done: total - remaining)
            if remaining == 0 { break }
            // Every worker ended by itself (refused its arguments, crashed): nothing can progress.
            let watched = processes()
            if !watched.isEmpty && watched.allSatisfy({ !$0.isRunning }) { break }
            try await tick(remaining)
            try await Task.sleep(for: .milliseconds(250))
        }
        progress.finish(done: total - remaining)
        return Outcome(
            finished: remaining == 0, seconds: (ContinuousClock.now - start).inSeconds, polls: polls,
            maxRSSMB: Double(maxRSS) / 1_048_576)
    }
}

/// A progress line on stderr, rewritten at most ten times a second.
final class Progress: Sendable {
    let label: String
    let total: Int
    private let start = ContinuousClock.now
    private let lastPrint = Mutex<ContinuousClock.Instant?>(nil)

    init(label: String, total: Int) {
        self.label = label
        self.total = total
    }

    func update(done: Int) {
        let now = ContinuousClock.now
        let due = lastPrint.withLock { last -> Bool in
            if let last, now - last < .milliseconds(100) { return false }
            last = now
            return true
        }
        if due { write(done: done, end: "\r") }
    }

    func finish(done: Int) { write(done: done, end: "\n") }

    private func write(done: Int, end: String) {
        let seconds = (ContinuousClock.now - start).inSeconds
        let rate = seconds > 0 ? Double(done) / seconds : 0
        let line = "[\(label)] \(done)/\(total)  \(format(rate, 0))/s  \(format(seconds, 1)) s   \(end)"
        FileHandle.standardError.write(Data(line.utf8))
    }
}

/// A shared count.
final class Counter: Sendable {
    let value = Atomic<Int>(0)
}
