import Foundation
import RedisClient
import RedisQueue

/// One job's life as the queue's event stream tells it (server clock, milliseconds).
struct JobTimeline: Sendable {
    var user = ""
    var queuedAt: Int64?
    /// Every `started` event: when, and which worker claimed it.
    var starts: [(at: Int64, worker: String)] = []
    /// Every `succeeded` event (more than one would mean a job completed twice).
    var succeeded: [Int64] = []
    /// `failed`, `dead` or `canceled`, if the job ended so.
    var otherEnd: (type: String, at: Int64)?

    var firstStart: Int64? { starts.first?.at }
    var finishedAt: Int64? { succeeded.first ?? otherEnd?.at }
}

/// Every job's timeline on `queue`, read from its event stream page by page.
func readTimelines(_ queue: RedisJobQueue, pageSize: Int = 5_000) async throws -> [String: JobTimeline] {
    var timelines: [String: JobTimeline] = [:]
    var cursor = "-"
    while true {
        let reply = try await queue.pool.send([
            "XRANGE", RedisArgument(queue.keys.events), RedisArgument(cursor), "+", "COUNT", RedisArgument(pageSize),
        ])
        guard let entries = reply.array, !entries.isEmpty else { break }
        for entry in entries {
            guard let parts = entry.array, parts.count == 2, let id = parts[0].string, let flat = parts[1].array else {
                continue
            }
            cursor = "(" + id
            var fields: [String: String] = [:]
            var index = 0
            while index + 1 < flat.count {
                fields[flat[index].string ?? ""] = flat[index + 1].string ?? ""
                index += 2
            }
            guard let job = fields["job"], let type = fields["type"], let at = Int64(fields["at"] ?? "") else {
                continue
            }
            var timeline = timelines[job] ?? JobTimeline()
            if let user = fields["user"], !user.isEmpty { timeline.user = user }
            switch type {
            case "queued": timeline.queuedAt = timeline.queuedAt ?? at
            case "started": timeline.starts.append((at, fields["worker"] ?? ""))
            case "succeeded": timeline.succeeded.append(at)
            case "failed", "dead", "canceled": timeline.otherEnd = (type, at)
            default: break
            }
            timelines[job] = timeline
        }
        if entries.count < pageSize { break }
    }
    return timelines
}

/// The state field of each job hash (nil where the hash is gone), read in pipelined pages.
func readStates(_ queue: RedisJobQueue, ids: [String]) async throws -> [String: String?] {
    var states: [String: String?] = [:]
    var start = 0
    while start < ids.count {
        let page = Array(ids[start..<min(ids.count, start + 1_000)])
        let replies = try await queue.pool.pipeline(
            page.map { ["HGET", RedisArgument(queue.keys.job($0)), "state"] })
        for (id, reply) in zip(page, replies) { states[id] = reply.string }
        start += page.count
    }
    return states
}

/// Jobs finished per second in about 80 time bins from the first start on (bins of at least
/// 50 ms): the throughput over time, and the bin's length in seconds.
func throughputSeries(_ timelines: [String: JobTimeline]) -> ([Double], Double) {
    let starts = timelines.values.compactMap(\.firstStart)
    let ends = timelines.values.flatMap(\.succeeded)
    guard let origin = starts.min(), let last = ends.max(), last >= origin else { return ([], 1) }
    let bin = max(0.05, (Double(last - origin) / 1000 / 80 * 20).rounded(.up) / 20)
    let binMS = bin * 1000
    var bins = [Double](repeating: 0, count: Int(Double(last - origin) / binMS) + 1)
    for end in ends where end >= origin { bins[Int(Double(end - origin) / binMS)] += 1 }
    return (bins.map { $0 / bin }, bin)
}
