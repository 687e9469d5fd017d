import Foundation
import JobQueue
import RedisClient
import RedisQueue
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// What every scenario shares: the Redis server (started here or given), the worker and fake
/// backend processes, a queue of its own, and the counters read from Redis and `/proc`.
final class Harness: @unchecked Sendable {
    struct Options: Sendable {
        var redisURL: String?
        var redisPort: Int
        var imagegen: String
        var runDirectory: String
        var workerLogLevel: String
        /// Added to every worker's command line after the scenario's own arguments.
        var workerArguments: [String] = []
    }

    let options: Options
    private(set) var redisURL = ""
    private var redisServer: ChildProcess?
    private(set) var workers: [ChildProcess] = []
    private var others: [ChildProcess] = []
    private(set) var pool: RedisPool!
    private var workerCount = 0
    /// Worker processes that ended without being asked to, across the run.
    let unexpectedExits = Mutex<[String]>([])

    init(options: Options) { self.options = options }

    /// Starts redis-server on a free loopback port (or the given one), unless a URL was given.
    func start() async throws {
        try FileManager.default.createDirectory(atPath: options.runDirectory, withIntermediateDirectories: true)
        guard FileManager.default.isExecutableFile(atPath: options.imagegen) else {
            throw LoadError(
                "no imagegen binary at \(options.imagegen): build it with `swift build -c release --product imagegen` "
                    + "in the repository root, or pass --imagegen")
        }
        if let url = options.redisURL {
            redisURL = url
        } else {
            let port = options.redisPort == 0 ? try freeLoopbackPort() : options.redisPort
            redisServer = try ChildProcess(
                name: "redis-server", executable: try which("redis-server"),
                arguments: [
                    "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--protected-mode", "yes",
                ], logPath: "\(options.runDirectory)/redis.log")
            try await waitUntil("redis-server on port \(port)", timeout: .seconds(10)) { isListening(port: port) }
            redisURL = "redis://127.0.0.1:\(port)/0"
        }
        pool = RedisPool(configuration: try RedisConfiguration(url: redisURL), size: 2)
    }

    /// A queue of its own for one run, configured with `settings`.
    func makeQueue(_ label: String, settings: QueueSettings) async throws -> RedisJobQueue {
        let name = "load-\(label)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
        let queue = try RedisJobQueue(pool: pool, name: name)
        try await queue.configure(settings)
        return queue
    }

    /// Starts `count` worker processes on `queue` with the extra `arguments`, and waits until
    /// each has registered with the queue.
    func startWorkers(_ count: Int, queue: RedisJobQueue, arguments: [String]) async throws -> [ChildProcess] {
        var started: [ChildProcess] = []
        for _ in 0..<count { started.append(try startWorker(queue: queue, arguments: arguments)) }
        let before = try await queue.stats().liveWorkers
        try await waitUntil("\(count) workers to register", timeout: .seconds(30)) {
            let live = (try? await queue.stats().liveWorkers) ?? 0
            return live >= before + count || live >= workers.filter(\.isRunning).count
        }
        return started
    }

    /// Starts one worker process without waiting for it.
    func startWorker(queue: RedisJobQueue, arguments: [String]) throws -> ChildProcess {
        workerCount += 1
        let worker = try ChildProcess(
            name: "worker-\(workerCount)", executable: options.imagegen,
            arguments: ["worker", "--redis", redisURL, "--queue", queue.name, "--log-level", options.workerLogLevel]
                + arguments + options.workerArguments,
            environment: ["OPENAI_API_KEY": "fake"],
            logPath: "\(options.runDirectory)/worker-\(workerCount).log")
        workers.append(worker)
        return worker
    }

    /// Starts `imagegen fake-backend` on a free port with `arguments`; returns its port.
    func startFakeBackend(arguments: [String]) async throws -> Int {
        let port = try freeLoopbackPort()
        let server = try ChildProcess(
            name: "fake-backend", executable: options.imagegen,
            arguments: ["fake-backend", "--port", "\(port)"] + arguments,
            logPath: "\(options.runDirectory)/fake-backend-\(port).log")
        others.append(server)
        try await waitUntil("the fake backend on port \(port)", timeout: .seconds(20)) { isListening(port: port) }
        return port
    }

    /// The fake backend's `GET /stats` counts.
    func fakeBackendStats(port: Int) async throws -> [String: Any] {
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/stats")!)
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }

    /// Stops the given workers (SIGTERM, then SIGKILL). Reports any that had already ended by
    /// themselves: a worker must never exit on its own during a run.
    func stop(_ processes: [ChildProcess]) async {
        for process in processes {
            if let exit = process.unexpectedExit {
                FileHandle.standardError.write(
                    Data(
                        "warning: \(process.name) (pid \(process.pid)) ended by itself: \(exit); see \(process.logPath)\n"
                            .utf8))
                unexpectedExits.withLock { $0.append("\(process.name): \(exit)") }
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for process in processes { group.addTask { await process.stop() } }
        }
    }

    /// Stops every process started here.
    func shutdown() async {
        await stop(workers + others)
        pool?.close()
        if let redisServer { await redisServer.stop() }
    }

    /// The counters this tool reads from Redis.
    func snapshot() async throws -> RedisSnapshot {
        let reply = try await pool.send(["INFO", "commandstats", "cpu", "stats"])
        return RedisSnapshot(info: reply.string ?? "")
    }

    /// Sum of CPU seconds of `processes` (those still running).
    static func cpuSeconds(_ processes: [ChildProcess]) -> Double {
        processes.compactMap { $0.cpuSeconds() }.reduce(0, +)
    }

    private func which(_ program: String) throws -> String {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/usr/local/bin").split(
            separator: ":")
        {
            let path = "\(directory)/\(program)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw LoadError("\(program) is not on PATH (apt-get install redis-server)")
    }
}

/// Counters from `INFO commandstats cpu stats`.
struct RedisSnapshot: Sendable {
    /// Calls by command name (`fcall`, `hset`, ...), including commands run inside functions.
    var calls: [String: Int] = [:]
    /// CPU seconds of the server process, user + system.
    var cpuSeconds: Double = 0
    /// Commands clients sent (`total_commands_processed`).
    var commandsProcessed = 0

    init(info: String) {
        for raw in info.split(whereSeparator: \.isNewline) {
            let line = String(raw)
            if line.hasPrefix("cmdstat_"), let colon = line.firstIndex(of: ":") {
                let name = String(line[line.index(line.startIndex, offsetBy: 8)..<colon])
                let fields = line[line.index(after: colon)...].split(separator: ",")
                if let callsField = fields.first(where: { $0.hasPrefix("calls=") }),
                    let calls = Int(callsField.dropFirst(6))
                {
                    self.calls[name] = calls
                }
            } else if line.hasPrefix("used_cpu_sys:") || line.hasPrefix("used_cpu_user:") {
                cpuSeconds += Double(line.split(separator: ":")[1]) ?? 0
            } else if line.hasPrefix("total_commands_processed:") {
                commandsProcessed = Int(line.split(separator: ":")[1]) ?? 0
            }
        }
    }

    /// Calls made between `earlier` and this snapshot, by command.
    func callsSince(_ earlier: RedisSnapshot) -> [String: Int] {
        var delta: [String: Int] = [:]
        for (name, count) in calls {
            let d = count - (earlier.calls[name] ?? 0)
            if d > 0 { delta[name] = d }
        }
        return delta
    }
}
