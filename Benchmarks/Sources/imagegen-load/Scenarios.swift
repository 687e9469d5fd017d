import BenchmarkSupport
import Foundation
import ImageIngest
import JobQueue
import RedisClient
import RedisQueue
import Storage
import Synchronization
import Worker

#if canImport(Glibc)
    import Glibc
#endif

/// The knobs a scenario reads; `nil` means the scenario's own default (see the README).
struct ScenarioOptions: Sendable {
    var workers: Int?
    var slots: [Int]?
    var jobs: Int?
    var maxSeconds: Double?
    var latencyMS: Int?
    var killEverySeconds: Double = 3
    /// Size of the outputs the simulated backend draws in io (default 8x8: tiny outputs).
    var outputSize = "8x8"
    /// io with `--backend openai`: the fake server draws noise, so outputs do not compress.
    var outputNoise = false
    /// ratelimit: the fake provider's own limit in images per minute (default: the budget, 600).
    var providerLimit: Int?
    /// io: `simulated` (default) or `openai` (the OpenAI backend over HTTP to the fake server).
    var backend = "simulated"
    /// ingest: the folder of real test images (default: the repository's `Tests/Corpus`).
    var corpus: String?
}

/// The scenarios by name, each a function of the harness and the options.
enum Scenario: String, CaseIterable, Sendable {
    case noop, latency, io, fair, ratelimit, crash, ingest

    func run(_ harness: Harness, _ options: ScenarioOptions) async throws -> ScenarioResult {
        switch self {
        case .noop: return try await Scenarios.noop(harness, options)
        case .latency: return try await Scenarios.latency(harness, options)
        case .io: return try await Scenarios.io(harness, options)
        case .fair: return try await Scenarios.fair(harness, options)
        case .ratelimit: return try await Scenarios.ratelimit(harness, options)
        case .crash: return try await Scenarios.crash(harness, options)
        case .ingest: return try await Scenarios.ingest(harness, options)
        }
    }
}

enum Scenarios {
    /// Queue settings for load runs: no per-user cap unless a scenario sets one.
    static func settings(_ change: (inout QueueSettings) -> Void = { _ in }) -> QueueSettings {
        var settings = QueueSettings()
        settings.userInFlightCap = 0
        change(&settings)
        return settings
    }

    static func tinyJob(_ index: Int, user: String? = nil, size: String = "8x8") -> JobSpec {
        JobSpec(user: user ?? "u\(index % 100)", prompt: "load \(index)", size: size)
    }

    // MARK: noop

    /// Zero-latency backend, tiny outputs: the queue's and the worker's own cost per job.
    static func noop(_ harness: Harness, _ options: ScenarioOptions) async throws -> ScenarioResult {
        let jobs = options.jobs ?? 50_000
        let workers = options.workers ?? 1
        let slots = options.slots?.first ?? 64
        let maxSeconds = options.maxSeconds ?? 180
        var result = ScenarioResult(scenario: "noop")
        let queue = try await harness.makeQueue("noop", settings: settings())
        defer { queue.close() }

        // Enqueue first (measuring the producer), then let the workers drain the queue.
        let awaitedCount = min(jobs / 4, 5_000)
        let concurrentEnd = awaitedCount + (jobs - awaitedCount) / 2
        let awaited = try await Producer.awaited(queue, (0..<awaitedCount).map { tinyJob($0) }, label: "enqueue")
        let concurrent = try await Producer.concurrent(
            queue, (awaitedCount..<concurrentEnd).map { tinyJob($0) }, callers: 64, label: "enqueue")
        let batched = try await Producer.batched(
            queue, (concurrentEnd..<jobs).map { tinyJob($0) }, size: 5_000, label: "enqueue batches")
        let pollCost = try await Drain.pollCost(harness, queue)
        let before = try await harness.snapshot()
        let processes = try await startAll(
            harness, workers, queue,
            [
                "--slots", "\(slots)", "--backend", "simulated", "--sim-latency-ms", "0", "--no-progress",
            ])
        let drain = try await Drain.run(
            harness, queue, total: jobs, label: "noop", maxSeconds: maxSeconds, watch: processes)
        let workerCPU = Harness.cpuSeconds(processes)
        let after = try await harness.snapshot()
        await harness.stop(processes)

        let timelines = try await readTimelines(queue)
        let (jobsPerSecond, makespan) = rate(timelines)
        // Its 8×8 outputs are written inside complete_stored.
        let cost = RedisCost(
            before: before, after: after, pollCost: pollCost, polls: drain.polls, jobs: jobs,
            outputsInsideFunctions: jobs)
        result.add("jobs", .int(jobs))
        result.add("workers", .int(workers), row: "worker processes × slots", value: "\(workers) × \(slots)")
        result.add("finished", .bool(drain.finished))
        result.add(
            "jobs_per_second", .number(jobsPerSecond), row: "jobs/s (first start → last success)",
            value: format(jobsPerSecond, 0), target: "≥ 20,000")
        result.add("makespan_seconds", .number(makespan))
        result.add(
            "redis_calls_per_job", .number(cost.callsPerJob), row: "Redis calls per job (sent by clients)",
            value: format(cost.callsPerJob, 2), target: "≤ 3")
        result.add(
            "redis_commands_per_job", .number(cost.commandsPerJob), row: "Redis commands per job (incl. in functions)",
            value: format(cost.commandsPerJob, 1))
        result.add(
            "redis_cpu_us_per_job", .number(cost.cpuSeconds / Double(jobs) * 1e6), row: "Redis CPU µs per job",
            value: format(cost.cpuSeconds / Double(jobs) * 1e6, 1), target: "< best peer")
        result.add(
            "worker_cpu_us_per_job", .number(workerCPU / Double(jobs) * 1e6), row: "worker CPU µs per job",
            value: format(workerCPU / Double(jobs) * 1e6, 1))
        result.add(
            "enqueue_awaited_per_second", .number(awaited.perSecond), row: "enqueue, one awaited call at a time /s",
            value: format(awaited.perSecond, 0), target: "≥ 10,000")
        result.add(
            "enqueue_concurrent_per_second", .number(concurrent.perSecond), row: "enqueue, 64 concurrent callers /s",
            value: format(concurrent.perSecond, 0))
        result.add(
            "enqueue_batched_per_second", .number(batched.perSecond), row: "enqueue, batches of 5,000 /s",
            value: format(batched.perSecond, 0), target: "≥ 50,000")
        result.add(
            "worker_rss_max_mb", .number(drain.maxRSSMB), row: "worker RSS max MB", value: format(drain.maxRSSMB, 0))
        result.add("redis_calls_by_command", .object(cost.byCommand.map { ($0.0, .number($0.1)) }))
        result.latencies = timelines.values.compactMap { t in
            guard let s = t.firstStart, let e = t.succeeded.first else { return nil }
            return Double(e - s)
        }
        result.latencyLabel = "START TO SUCCESS MS"
        (result.throughput, result.throughputBin) = throughputSeries(timelines)
        return result
    }

    // MARK: latency

    /// An idle worker; jobs enqueued one at a time 2 ms apart: enqueue call → `started` event.
    static func latency(_ harness: Harness, _ options: ScenarioOptions) async throws -> ScenarioResult {
        let jobs = options.jobs ?? 1_000
        let slots = options.slots?.first ?? 16
        let maxSeconds = options.maxSeconds ?? 60
        var result = ScenarioResult(scenario: "latency")
        let queue = try await harness.makeQueue("latency", settings: settings())
        defer { queue.close() }
        let processes = try await startAll(
            harness, options.workers ?? 1, queue,
            [
                "--slots", "\(slots)", "--backend", "simulated", "--sim-latency-ms", "0", "--no-progress",
            ])
        // The `started` nudges, timed as they arrive on a subscriber's own thread.
        let subscriber = RedisSubscriber(configuration: harness.pool.configuration, channels: [queue.keys.nudgeChannel])
        defer { subscriber.close() }
        let startedAt = StartTimes()
        let listener = Task {
            for await event in subscriber.events {
                guard case .message(_, let payload) = event else { continue }
                let now = ContinuousClock.now
                let text = String(decoding: payload, as: UTF8.self)
                if text.hasPrefix("started ") {
                    let id = String(text.dropFirst(8))
                    startedAt.times.withLock { if $0[id] == nil { $0[id] = now } }
                }
            }
        }
        defer { listener.cancel() }
        try await Task.sleep(for: .milliseconds(500))  // the subscription in place, the worker idle
        var enqueuedAt: [String: ContinuousClock.Instant] = [:]
        let deadline = ContinuousClock.now + .seconds(maxSeconds)
        let progress = Progress(label: "latency", total: jobs)
        for index in 0..<jobs where ContinuousClock.now < deadline {
            let start = ContinuousClock.now
            let id = try await queue.enqueue(tinyJob(index, user: "latency")).jobID
            enqueuedAt[id] = start
            progress.update(done: startedAt.times.withLock { $0.count })
            try await Task.sleep(for: .milliseconds(2))
        }
        try? await waitUntil("the last starts", timeout: .seconds(10)) {
            startedAt.times.withLock { $0.count } >= enqueuedAt.count
        }
        progress.finish(done: startedAt.times.withLock { $0.count })
        await harness.stop(processes)
        let starts = startedAt.times.withLock { $0 }
        let pickups = Distribution(
            enqueuedAt.compactMap { id, at in starts[id].map { ($0 - at).inMilliseconds } })
        let timelines = try await readTimelines(queue)
        let server = Distribution(
            timelines.values.compactMap { t in t.firstStart.flatMap { s in t.queuedAt.map { Double(s - $0) } } })
        result.add("jobs", .int(enqueuedAt.count))
        result.add(
            "started", .int(pickups.count), row: "jobs enqueued / started",
            value: "\(enqueuedAt.count) / \(pickups.count)")
        result.add(
            "pickup_ms", .distribution(pickups), row: "enqueue → start ms (client clock)", value: formatMS(pickups),
            target: "p50 ≤ 0.5, p99 ≤ 1.5")
        result.add(
            "pickup_server_ms", .distribution(server), row: "queued → started ms (server clock, 1 ms steps)",
            value: formatMS(server))
        result.latencies = pickups.sorted
        result.latencyLabel = "ENQUEUE TO START MS"
        (result.throughput, result.throughputBin) = throughputSeries(timelines)
        return result
    }

    // MARK: io

    /// 200 ms backend latency, 2,000 jobs, 100 and 256 slots: jobs/s against the ideal.
    static func io(_ harness: Harness, _ options: ScenarioOptions) async throws -> ScenarioResult {
        let jobs = options.jobs ?? 2_000
        let latencyMS = options.latencyMS ?? 200
        let maxSeconds = options.maxSeconds ?? 120
        var result = ScenarioResult(scenario: "io")
        result.add("backend", .string(options.backend), row: "backend", value: options.backend)
        var runs: [JSON] = []
        for slots in options.slots ?? [100, 256] {
            let queue = try await harness.makeQueue("io", settings: settings())
            defer { queue.close() }
            let ids = try await Producer.concurrent(
                queue, (0..<jobs).map { tinyJob($0, size: options.outputSize) }, callers: 64, label: "enqueue"
            ).ids
            var backendArguments = ["--backend", "simulated", "--sim-latency-ms", "\(latencyMS)"]
            if options.backend == "openai" {
                // Outputs of --output-size (noise with --output-noise: they do not compress).
                let sides = options.outputSize.split(separator: "x").compactMap { Int($0) }
                let port = try await harness.startFakeBackend(
                    arguments: ["--latency-ms", "\(latencyMS)", "--max-side", "\(sides.max() ?? 64)"]
                        + (options.outputNoise ? ["--noise"] : []))
                backendArguments = [
                    "--backend", "openai", "--openai-base-url", "http://127.0.0.1:\(port)/v1", "--user-in-flight-cap",
                    "0",
                ]
            }
            let processes = try await startAll(
                harness, options.workers ?? 1, queue,
                ["--slots", "\(slots)", "--no-progress"] + backendArguments)
            let pollCost = try await Drain.pollCost(harness, queue)
            let before = try await harness.snapshot()
            let cpuBefore = Harness.cpuSeconds(processes)
            let drain = try await Drain.run(
                harness, queue, total: jobs, label: "io \(slots) slots", maxSeconds: maxSeconds, watch: processes)
            let cpu = Harness.cpuSeconds(processes) - cpuBefore
            let after = try await harness.snapshot()
            await harness.stop(processes)
            let timelines = try await readTimelines(queue)
            let (jobsPerSecond, makespan) = rate(timelines)
            let workerCount = Double(options.workers ?? 1)
            // The size of one stored output, to tell what "tiny" or "1 MB" outputs mean.
            let outputBytes =
                try await harness.pool.send([
                    "STRLEN", RedisArgument(queue.keys.blobPrefix + "output:\(ids.first ?? ""):0"),
                ]).int ?? 0
            let cost = RedisCost(
                before: before, after: after, pollCost: pollCost, polls: drain.polls, jobs: jobs,
                outputsInsideFunctions: outputBytes <= RedisCost.completionOutputLimit ? jobs : 0)
            let ideal = Double(slots) * workerCount * 1000 / Double(latencyMS)
            let percent = jobsPerSecond / ideal * 100
            let steady = steadyRate(timelines, warmUpMS: Int64(latencyMS))
            let steadyPercent = steady / ideal * 100
            let busy = timelines.values.compactMap { t in
                t.firstStart.flatMap { s in t.succeeded.first.map { Double($0 - s) } }
            }
            // Busy slot time over available slot time while the run lasted.
            let utilization = busy.reduce(0, +) / (Double(slots) * workerCount * makespan * 1000) * 100
            let cpuPercent = cpu / max(drain.seconds, 1e-9) * 100
            runs.append(
                .object([
                    ("slots", .int(slots)), ("jobs_per_second", .number(jobsPerSecond)),
                    ("ideal_jobs_per_second", .number(ideal)), ("percent_of_ideal", .number(percent)),
                    ("steady_jobs_per_second", .number(steady)), ("steady_percent_of_ideal", .number(steadyPercent)),
                    ("slot_utilization_percent", .number(utilization)), ("makespan_seconds", .number(makespan)),
                    ("worker_cpu_percent_of_core", .number(cpuPercent)),
                    ("worker_cpu_us_per_job", .number(cpu / Double(jobs) * 1e6)),
                    ("redis_calls_per_job", .number(cost.callsPerJob)),
                    ("redis_commands_per_job", .number(cost.commandsPerJob)),
                    ("redis_cpu_us_per_job", .number(cost.cpuSeconds / Double(jobs) * 1e6)),
                    ("redis_calls_by_command", .object(cost.byCommand.map { ($0.0, .number($0.1)) })),
                    ("worker_rss_max_mb", .number(drain.maxRSSMB)), ("output_bytes", .int(outputBytes)),
                    ("finished", .bool(drain.finished)),
                ]))
            result.rows.append(
                ("\(slots) slots: jobs/s (ideal \(format(ideal, 0)))", format(jobsPerSecond, 0), ""))
            result.rows.append(("\(slots) slots: % of ideal, whole run", format(percent, 1), ""))
            result.rows.append(("\(slots) slots: % of ideal, while jobs were queued", format(steadyPercent, 1), "≥ 99"))
            result.rows.append(("\(slots) slots: slot utilization %", format(utilization, 1), ""))
            result.rows.append(
                ("\(slots) slots: worker RSS max MB (outputs of \(outputBytes) bytes)", format(drain.maxRSSMB, 0), ""))
            result.rows.append(("\(slots) slots: worker CPU % of a core", format(cpuPercent, 1), "< 10"))
            result.rows.append(("\(slots) slots: worker CPU µs per job", format(cpu / Double(jobs) * 1e6, 0), ""))
            result.rows.append(("\(slots) slots: Redis calls per job", format(cost.callsPerJob, 2), "≤ 3"))
            result.rows.append(
                ("\(slots) slots: Redis CPU µs per job", format(cost.cpuSeconds / Double(jobs) * 1e6, 1), ""))
            result.latencies += busy
            (result.throughput, result.throughputBin) = throughputSeries(timelines)
        }
        result.figures = [
            ("jobs", .int(jobs)), ("backend_latency_ms", .int(latencyMS)), ("runs", .array(runs)),
        ]
        result.latencyLabel = "START TO SUCCESS MS"
        return result
    }

    // MARK: fair

    /// One user with 2,000 jobs queued first, then 50 users with 5 each: the small users' waits.
    static func fair(_ harness: Harness, _ options: ScenarioOptions) async throws -> ScenarioResult {
        let bulkJobs = options.jobs ?? 2_000
        let slots = options.slots?.first ?? 32
        let latencyMS = options.latencyMS ?? 200
        var result = ScenarioResult(scenario: "fair")
        let queue = try await harness.makeQueue("fair", settings: settings())
        defer { queue.close() }
        let processes = try await startAll(
            harness, options.workers ?? 1, queue,
            [
                "--slots", "\(slots)", "--backend", "simulated", "--sim-latency-ms", "\(latencyMS)", "--no-progress",
            ])
        _ = try await Producer.concurrent(
            queue, (0..<bulkJobs).map { tinyJob($0, user: "bulk") }, callers: 64, label: "enqueue bulk")
        let small = (0..<250).map { tinyJob($0, user: "small\($0 / 5)") }
        _ = try await Producer.concurrent(queue, small, callers: 16, label: "enqueue small")
        let total = bulkJobs + small.count
        let drain = try await Drain.run(
            harness, queue, total: total, label: "fair", maxSeconds: options.maxSeconds ?? 120, watch: processes)
        await harness.stop(processes)
        let timelines = try await readTimelines(queue)
        func waits(_ bulk: Bool) -> Distribution {
            Distribution(
                timelines.values.filter { ($0.user == "bulk") == bulk }.compactMap { t in
                    t.firstStart.flatMap { s in t.queuedAt.map { Double(s - $0) } }
                })
        }
        let smallWaits = waits(false)
        let bulkWaits = waits(true)
        let fifo = Double(bulkJobs) / (Double(slots) * 1000 / Double(latencyMS)) * 1000
        result.add("bulk_jobs", .int(bulkJobs))
        result.add("small_jobs", .int(small.count))
        result.add("slots", .int(slots))
        result.add("finished", .bool(drain.finished))
        result.add(
            "small_wait_ms", .distribution(smallWaits), row: "small users' wait ms", value: formatMS(smallWaits),
            target: "p99 < 3,000")
        result.add("bulk_wait_ms", .distribution(bulkWaits), row: "bulk user's wait ms", value: formatMS(bulkWaits))
        result.add(
            "fifo_small_wait_estimate_ms", .number(fifo), row: "first-in first-out would make it about, ms",
            value: format(fifo, 0))
        result.latencies = smallWaits.sorted
        result.latencyLabel = "SMALL USERS WAIT MS"
        (result.throughput, result.throughputBin) = throughputSeries(timelines)
        return result
    }

    // MARK: ratelimit

    /// Four workers sharing 600 images/min against the fake server limited to the same (or, with
    /// `--provider-limit`, to a different limit: a misconfigured budget).
    static func ratelimit(_ harness: Harness, _ options: ScenarioOptions) async throws -> ScenarioResult {
        let jobs = options.jobs ?? 700
        let perMinute = 600
        let providerLimit = options.providerLimit ?? perMinute
        let latencyMS = options.latencyMS ?? 200
        var result = ScenarioResult(scenario: "ratelimit")
        let port = try await harness.startFakeBackend(arguments: [
            "--latency-ms", "\(latencyMS)", "--images-per-minute", "\(providerLimit)", "--max-side", "64",
        ])
        let queue = try await harness.makeQueue("ratelimit", settings: settings { $0.imagesPerMinute = perMinute })
        defer { queue.close() }
        _ = try await Producer.concurrent(
            queue, (0..<jobs).map { JobSpec(user: "u\($0 % 20)", prompt: "load \($0)", size: "64x64") }, callers: 16,
            label: "enqueue")
        let processes = try await startAll(
            harness, options.workers ?? 4, queue,
            [
                "--slots", "\(options.slots?.first ?? 16)", "--backend", "openai",
                "--openai-base-url", "http://127.0.0.1:\(port)/v1", "--no-progress",
            ])
        // The provider's counts after the first minute: how often it still says no once the budget has adapted.
        @Sendable func counts(_ stats: [String: Any]) -> (requests: Int, refused: Int) {
            (stats["requests"] as? Int ?? 0, (stats["by_status"] as? [String: Any])?["429"] as? Int ?? 0)
        }
        let firstMinute = Task { () -> (requests: Int, refused: Int)? in
            try? await Task.sleep(for: .seconds(60))
            return (try? await harness.fakeBackendStats(port: port)).map(counts)
        }
        let drain = try await Drain.run(
            harness, queue, total: jobs, label: "ratelimit", maxSeconds: options.maxSeconds ?? 150, watch: processes)
        await harness.stop(processes)
        let stats = try await harness.fakeBackendStats(port: port)
        firstMinute.cancel()
        if let atMinute = await firstMinute.value {
            let end = counts(stats)
            let requests = end.requests - atMinute.requests
            let refusals = end.refused - atMinute.refused
            let share = requests > 0 ? Double(refusals) / Double(requests) * 100 : 0
            result.add("requests_after_first_minute", .int(requests))
            result.add(
                "refused_after_first_minute_percent", .number(share),
                row: "429s after the first minute (% of \(requests) calls)", value: format(share, 2))
        }
        result.add("provider_limit_per_minute", .int(providerLimit))
        let timelines = try await readTimelines(queue)
        let starts = timelines.values.flatMap { $0.starts.map(\.at) }.sorted()
        let successes = timelines.values.compactMap(\.succeeded.first).sorted()
        var achieved = 0.0
        if let first = starts.first, let last = starts.last, last > first {
            achieved = Double(starts.count - 1) / Double(last - first) * 60_000
        }
        // The most calls started in any sliding minute.
        var mostInMinute = 0
        var low = 0
        for high in starts.indices {
            while starts[high] - starts[low] >= 60_000 { low += 1 }
            mostInMinute = max(mostInMinute, high - low + 1)
        }
        let overLimit = stats["over_limit"] as? Int ?? -1
        let retried = timelines.values.filter { $0.starts.count > 1 }.count
        result.add("jobs", .int(jobs))
        result.add("images_per_minute_budget", .int(perMinute))
        result.add("finished", .bool(drain.finished))
        result.add(
            "achieved_per_minute", .number(achieved), row: "achieved calls per minute (budget \(perMinute))",
            value: format(achieved, 1))
        result.add(
            "most_started_in_a_minute", .int(mostInMinute), row: "most calls started in any sliding minute",
            value: "\(mostInMinute)")
        result.add(
            "fake_over_limit", .int(overLimit), row: "calls the fake server refused as over its limit",
            value: "\(overLimit)", target: "0")
        result.add("fake_requests", .int(stats["requests"] as? Int ?? -1))
        result.add(
            "jobs_started_more_than_once", .int(retried), row: "jobs started more than once", value: "\(retried)")
        result.add("succeeded", .int(successes.count), row: "jobs succeeded", value: "\(successes.count)")
        var gaps: [Double] = []
        for index in starts.indices.dropFirst() { gaps.append(Double(starts[index] - starts[index - 1])) }
        result.latencies = gaps
        result.latencyLabel = "MS BETWEEN CALL STARTS"
        (result.throughput, result.throughputBin) = throughputSeries(timelines)
        return result
    }

    // MARK: crash

    /// A worker SIGKILLed every few seconds during a run of 5,000 jobs.
    static func crash(_ harness: Harness, _ options: ScenarioOptions) async throws -> ScenarioResult {
        let jobs = options.jobs ?? 5_000
        let workerCount = options.workers ?? 4
        let latencyMS = options.latencyMS ?? 300
        let workerTimeout = 5
        var result = ScenarioResult(scenario: "crash")
        let queue = try await harness.makeQueue(
            "crash",
            settings: settings {
                $0.workerTimeout = .seconds(workerTimeout)
                $0.maxRecoveries = 1_000
            })
        defer { queue.close() }
        let ids = try await Producer.concurrent(queue, (0..<jobs).map { tinyJob($0) }, callers: 64, label: "enqueue")
            .ids
        let arguments = [
            "--slots", "\(options.slots?.first ?? 32)", "--backend", "simulated", "--sim-latency-ms", "\(latencyMS)",
            "--no-progress", "--heartbeat-seconds", "1",
        ]
        let running = Fleet(try await startAll(harness, workerCount, queue, arguments))
        var kills: [(pid: Int32, atMS: Int64)] = []
        var lastKill = ContinuousClock.now
        let drain = try await Drain.run(
            harness, queue, total: jobs, label: "crash", maxSeconds: options.maxSeconds ?? 240,
            watch: { running.processes }
        ) { remaining in
            guard remaining > 0, !running.processes.isEmpty,
                ContinuousClock.now - lastKill >= .seconds(options.killEverySeconds)
            else { return }
            lastKill = ContinuousClock.now
            let victim = running.processes.remove(at: Int.random(in: 0..<running.processes.count))
            kills.append((victim.pid, Int64(Date().timeIntervalSince1970 * 1000)))
            victim.send(SIGKILL)
            if let replacement = try? harness.startWorker(queue: queue, arguments: arguments) {
                running.processes.append(replacement)
            }
        }
        await harness.stop(running.processes)
        let timelines = try await readTimelines(queue)
        let states = try await readStates(queue, ids: ids)
        let final: Set<String> = ["succeeded", "dead", "failed", "canceled"]
        let lost = ids.filter { id in !(states[id].flatMap { $0 }.map(final.contains) ?? false) }.count
        let twice = timelines.values.filter { $0.succeeded.count > 1 }.count
        let dead = ids.filter { states[$0] == .some("dead") }.count
        var recoveries: [Double] = []
        var held = 0
        for kill in kills {
            let marker = "-\(kill.pid)-"
            for timeline in timelines.values {
                guard let holding = timeline.starts.last(where: { $0.at <= kill.atMS }),
                    holding.worker.contains(marker),
                    !timeline.succeeded.contains(where: { $0 <= kill.atMS })
                else { continue }
                held += 1
                if let next = timeline.starts.first(where: { $0.at > kill.atMS }) {
                    recoveries.append(Double(next.at - kill.atMS))
                }
            }
        }
        let recovery = Distribution(recoveries)
        result.add("jobs", .int(jobs))
        result.add("kills", .int(kills.count), row: "workers SIGKILLed", value: "\(kills.count)")
        result.add("finished", .bool(drain.finished))
        result.add("lost", .int(lost), row: "jobs lost", value: "\(lost)", target: "0")
        result.add("completed_twice", .int(twice), row: "jobs completed twice", value: "\(twice)", target: "0")
        result.add("dead", .int(dead), row: "jobs dead", value: "\(dead)")
        result.add(
            "jobs_held_by_killed_workers", .int(held), row: "jobs running in a worker when it was killed",
            value: "\(held)")
        result.add(
            "recovered_jobs", .int(recoveries.count), row: "of them started again", value: "\(recoveries.count)")
        result.add(
            "recovery_ms", .distribution(recovery), row: "kill → restarted elsewhere, ms", value: formatMS(recovery))
        result.add("worker_timeout_seconds", .int(workerTimeout))
        result.latencies = recoveries
        result.latencyLabel = "RECOVERY MS"
        (result.throughput, result.throughputBin) = throughputSeries(timelines)
        return result
    }

    // MARK: ingest

    /// Edits with mixed real uploads (large and small JPEGs and PNGs) through the whole pipeline.
    static func ingest(_ harness: Harness, _ options: ScenarioOptions) async throws -> ScenarioResult {
        let generatedJobs = options.jobs ?? 60
        var result = ScenarioResult(scenario: "ingest")
        let real = try realImages(options.corpus)
        FileHandle.standardError.write(Data("[ingest] drawing the reference images…\n".utf8))
        let generated: [Upload] = [
            Upload(name: "photo-12mp.jpg", bytes: try ReferenceImages.photoJPEG(), pixels: 4000 * 3000),
            Upload(name: "rgba-4096.png", bytes: try ReferenceImages.rgbaPNG(), pixels: 4096 * 4096),
            Upload(
                name: "photo-2mp.jpg", bytes: try ReferenceImages.photoJPEG(width: 1600, height: 1200),
                pixels: 1600 * 1200),
            Upload(
                name: "photo-vga.jpg", bytes: try ReferenceImages.photoJPEG(width: 640, height: 480), pixels: 640 * 480),
            Upload(name: "rgba-1024.png", bytes: try ReferenceImages.rgbaPNG(side: 1024), pixels: 1024 * 1024),
            Upload(
                name: "photo-3mp.png", bytes: try PNGCodec.encode(ReferenceImages.photo(width: 2000, height: 1500)),
                pixels: 2000 * 1500),
        ]
        let uploads = generated + real
        let queue = try await harness.makeQueue("ingest", settings: settings())
        defer { queue.close() }
        let blobs = RedisBlobStore(pool: harness.pool, prefix: queue.keys.blobPrefix)
        var keys: [String] = []
        for (index, upload) in uploads.enumerated() {
            let key = "upload:ref-\(index)"
            try await blobs.put(key, upload.bytes, ttl: .seconds(3600))
            keys.append(key)
        }
        // The generated uploads in turn, `generatedJobs` edits; each real image once, spread evenly
        // among them (an upload's index in `uploads`).
        var picks: [Int] = []
        for job in 0..<generatedJobs {
            picks.append(job % generated.count)
            let realRange = (job * real.count / generatedJobs)..<((job + 1) * real.count / generatedJobs)
            picks += realRange.map { generated.count + $0 }
        }
        let specs = picks.enumerated().map { index, pick in
            JobSpec(user: "u\(index % 10)", kind: .edit, prompt: "load \(index)", size: "auto", inputs: [keys[pick]])
        }
        let jobs = specs.count
        let ids = try await Producer.concurrent(queue, specs, callers: 8, label: "enqueue").ids
        let processes = try await startAll(
            harness, options.workers ?? 1, queue,
            [
                "--slots", "\(options.slots?.first ?? 4)", "--backend", "simulated", "--sim-latency-ms", "0",
            ])
        let cpuBefore = Harness.cpuSeconds(processes)
        let drain = try await Drain.run(
            harness, queue, total: jobs, label: "ingest", maxSeconds: options.maxSeconds ?? 300, watch: processes)
        let cpu = Harness.cpuSeconds(processes) - cpuBefore
        await harness.stop(processes)
        let timelines = try await readTimelines(queue)
        let (jobsPerSecond, makespan) = rate(timelines)
        var ingestMS: [Double] = []
        var realIngestMS: [Double] = []
        var failed = 0
        var realFailed: [String] = []
        for (id, pick) in zip(ids, picks) {
            let record = try await queue.status(jobID: id)
            let isReal = pick >= generated.count
            if let ms = record?.result?.durations.ingestMS {
                if isReal { realIngestMS.append(Double(ms)) } else { ingestMS.append(Double(ms)) }
            }
            if record?.state != .succeeded {
                failed += 1
                if isReal { realFailed.append(uploads[pick].name) }
            }
        }
        let bytes = picks.reduce(0) { $0 + uploads[$1].bytes.count }
        let pixels = picks.reduce(0) { $0 + uploads[$1].pixels }
        let ingest = Distribution(ingestMS)
        let realIngest = Distribution(realIngestMS)
        result.add("jobs", .int(jobs))
        result.add(
            "uploads", .array(generated.map { .object([("name", .string($0.name)), ("bytes", .int($0.bytes.count))]) }))
        result.add(
            "real_images", .int(real.count), row: "real images (each once) + edits of the generated ones",
            value: "\(real.count) + \(generatedJobs)")
        result.add("finished", .bool(drain.finished))
        result.add("jobs_per_second", .number(jobsPerSecond), row: "jobs/s", value: format(jobsPerSecond, 2))
        result.add(
            "upload_mb_per_second", .number(Double(bytes) / 1e6 / makespan), row: "upload MB/s",
            value: format(Double(bytes) / 1e6 / makespan, 1))
        result.add(
            "megapixels_per_second", .number(Double(pixels) / 1e6 / makespan), row: "megapixels/s",
            value: format(Double(pixels) / 1e6 / makespan, 1))
        result.add(
            "ingest_ms", .distribution(ingest), row: "ingest ms per job, generated uploads", value: formatMS(ingest))
        result.add(
            "real_ingest_ms", .distribution(realIngest), row: "ingest ms per job, real images",
            value: formatMS(realIngest))
        result.add(
            "worker_cpu_ms_per_job", .number(cpu / Double(jobs) * 1000), row: "worker CPU ms per job",
            value: format(cpu / Double(jobs) * 1000, 0))
        result.add(
            "worker_rss_max_mb", .number(drain.maxRSSMB), row: "worker RSS max MB", value: format(drain.maxRSSMB, 0))
        result.add("not_succeeded", .int(failed), row: "jobs not succeeded", value: "\(failed)", target: "0")
        result.add("real_not_succeeded", .array(realFailed.map { .string($0) }))
        result.latencies = ingestMS + realIngestMS
        result.latencyLabel = "INGEST MS"
        (result.throughput, result.throughputBin) = throughputSeries(timelines)
        return result
    }

    struct Upload {
        var name: String
        var bytes: [UInt8]
        var pixels: Int
    }

    /// The real test images of `folder` (default: the repository's `Tests/Corpus`) that a worker
    /// accepts: every PngSuite file but the `x*` ones (broken on purpose), and libjpeg-turbo's
    /// test images but the 12-bit JPEG, the BMP and Netpbm files and the ICC profiles (see the
    /// folder's README files). No folder at the default place: none, with a note.
    static func realImages(_ folder: String?) throws -> [Upload] {
        let repository = URL(fileURLWithPath: #filePath).appendingPathComponent("../../../..").standardizedFileURL
        let root = folder ?? repository.appendingPathComponent("Tests/Corpus").path
        let files = FileManager.default
        guard files.fileExists(atPath: root) else {
            if folder != nil { throw LoadError("--corpus: no folder at \(root)") }
            FileHandle.standardError.write(Data("[ingest] no test images at \(root): generated uploads only\n".utf8))
            return []
        }
        func listed(_ sub: String, _ keep: (String) -> Bool) throws -> [String] {
            let dir = "\(root)/\(sub)"
            guard files.fileExists(atPath: dir) else { return [] }
            return try files.contentsOfDirectory(atPath: dir).filter(keep).sorted().map { "\(sub)/\($0)" }
        }
        let names =
            try listed("pngsuite") { $0.hasSuffix(".png") && !$0.hasPrefix("x") }
            + listed("jpeg") { ($0.hasSuffix(".jpg") || $0.hasSuffix(".png")) && $0 != "monkey12.jpg" }
        return try names.map { name in
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(root)/\(name)")))
            guard let header = try? ImageHeader(reading: bytes) else {
                throw LoadError("\(root)/\(name): not a PNG or JPEG whose header can be read")
            }
            return Upload(name: name, bytes: bytes, pixels: header.width * header.height)
        }
    }

    // MARK: Shared

    static func startAll(_ harness: Harness, _ count: Int, _ queue: RedisJobQueue, _ arguments: [String]) async throws
        -> [ChildProcess]
    {
        try await harness.startWorkers(count, queue: queue, arguments: arguments)
    }

    /// Jobs per second from the first start to the last success, and that span in seconds.
    /// Jobs finished per second while the worker had work waiting: from the first start plus
    /// `warmUpMS` (the slots fill during the first round) to the last job's start (after it the
    /// queue is empty and slots drain one by one, which says nothing about the worker). A run too
    /// short for such a window gives 0.
    static func steadyRate(_ timelines: [String: JobTimeline], warmUpMS: Int64) -> Double {
        let starts = timelines.values.compactMap(\.firstStart)
        guard let first = starts.min(), let last = starts.max() else { return 0 }
        let from = first + warmUpMS
        guard last > from else { return 0 }
        let finished = timelines.values.compactMap(\.succeeded.first).filter { $0 > from && $0 <= last }.count
        return Double(finished) / (Double(last - from) / 1000)
    }

    static func rate(_ timelines: [String: JobTimeline]) -> (Double, Double) {
        let starts = timelines.values.compactMap(\.firstStart)
        let ends = timelines.values.compactMap(\.succeeded.first)
        guard let first = starts.min(), let last = ends.max(), last > first else { return (0, 0) }
        let seconds = Double(last - first) / 1000
        return (Double(ends.count) / seconds, seconds)
    }
}

/// Redis' cost over a phase, from `INFO commandstats` and `INFO cpu` deltas, less this tool's own
/// polling.
struct RedisCost {
    var callsPerJob: Double
    var commandsPerJob: Double
    var cpuSeconds: Double
    var byCommand: [(String, Double)]

    /// Commands a client sends itself (the rest run only inside the functions).
    static let clientCommands: Set<String> = [
        "fcall", "fcall_ro", "evalsha", "eval", "blpop", "set", "get", "subscribe", "function", "client", "hello",
        "auth", "select", "ping",
    ]

    /// Outputs up to this size are written by the worker's `complete_stored` call, not by a `SET`
    /// of its own: the worker's default.
    static let completionOutputLimit = WorkerConfiguration().completionOutputLimit

    /// `outputsInsideFunctions`: the `SET`s run inside `complete_stored` (one per small output),
    /// which are not round trips of their own.
    init(
        before: RedisSnapshot, after: RedisSnapshot, pollCost: [String: Int], polls: Int, jobs: Int,
        outputsInsideFunctions: Int = 0
    ) {
        var delta = after.callsSince(before)
        delta["info"] = nil
        for (name, count) in pollCost { delta[name] = max(0, (delta[name] ?? 0) - count * polls) }
        let jobs = Double(max(1, jobs))
        let clientCalls = delta.filter { RedisCost.clientCommands.contains($0.key) }.values.reduce(0, +)
        callsPerJob = Double(max(0, clientCalls - min(outputsInsideFunctions, delta["set"] ?? 0))) / jobs
        commandsPerJob = Double(delta.values.reduce(0, +)) / jobs
        cpuSeconds = after.cpuSeconds - before.cpuSeconds
        byCommand = delta.sorted { $0.value > $1.value }.filter { $0.value > 0 }.map {
            ($0.key, Double($0.value) / jobs)
        }
    }
}

/// Start times by job id, written by the subscriber's task and read by the scenario.
final class StartTimes: Sendable {
    let times = Mutex<[String: ContinuousClock.Instant]>([:])
}

/// The worker processes running now (the crash scenario replaces the ones it kills).
final class Fleet {
    var processes: [ChildProcess]
    init(_ processes: [ChildProcess]) { self.processes = processes }
}
