import Foundation
import Logging
import RedisClient
import Testing

/// A `redis-server` process of a test's own, on a free loopback port, in a temporary folder.
/// Used where a test must stop, restart or reconfigure the server. Everything that waits on a
/// process runs off the cooperative pool (``start(extraArguments:)``, ``restart()``).
final class RedisServerProcess: @unchecked Sendable {
    let port: Int
    let directory: URL
    let extraArguments: [String]
    private var process: Process?

    /// Starts a server and waits until it answers.
    static func start(extraArguments: [String] = []) async throws -> RedisServerProcess {
        try await offPool { try RedisServerProcess(extraArguments: extraArguments) }
    }

    fileprivate init(extraArguments: [String] = []) throws {
        self.port = try freeLoopbackPort()
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "imagegen-test-redis-\(UUID().uuidString)")
        self.extraArguments = extraArguments
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try start()
    }

    var url: String { "redis://127.0.0.1:\(port)/0" }

    var configuration: RedisConfiguration { try! RedisConfiguration(url: url) }

    private func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try which("redis-server"))
        process.arguments =
            [
                "--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory.path, "--save", "",
                "--logfile", directory.appendingPathComponent("redis.log").path,
            ] + extraArguments
        // Never the test's own output: a server outliving a crashed test run would hold the pipe
        // open and keep `swift test` waiting for its end.
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        try waitUntilReady()
    }

    /// Stops the server as a restart would (SHUTDOWN keeps the AOF when it is enabled), then starts
    /// it again on the same port and folder.
    func restart() async throws {
        try await offPool {
            _ = try? runTool("redis-cli", ["-p", "\(self.port)", "shutdown"])
            self.process?.waitUntilExit()
            try self.start()
        }
    }

    /// Stops the server at once, without waiting. SIGKILL, because a child started from a test
    /// thread inherits that thread's blocked signals, SIGTERM among them.
    func terminate() {
        if let pid = process?.processIdentifier, pid > 0 { kill(pid, SIGKILL) }
    }

    deinit {
        terminate()
        try? FileManager.default.removeItem(at: directory)
    }

    private func waitUntilReady() throws {
        for _ in 0..<400 {
            if (try? runTool("redis-cli", ["-p", "\(port)", "ping"]))?.contains("PONG") == true { return }
            Thread.sleep(forTimeInterval: 0.025)
        }
        throw TestFailure("redis-server on port \(port) did not start")
    }
}

/// The shared server of the test run: the one the test command started
/// (IMAGEGEN_TEST_REDIS_URL), or one this process starts when run without it.
enum SharedRedis {
    private static let ownServer: RedisServerProcess? = {
        if ProcessInfo.processInfo.environment["IMAGEGEN_TEST_REDIS_URL"] != nil { return nil }
        return try? RedisServerProcess()
    }()

    static var url: String {
        if let url = ProcessInfo.processInfo.environment["IMAGEGEN_TEST_REDIS_URL"] { return url }
        guard let server = ownServer else {
            Issue.record("no Redis: set IMAGEGEN_TEST_REDIS_URL or install redis-server")
            return "redis://127.0.0.1:1/0"
        }
        return server.url
    }

    static var configuration: RedisConfiguration { try! RedisConfiguration(url: url) }

    static func pool(size: Int = 2) -> RedisPool {
        RedisPool(configuration: configuration, size: size, logger: testLogger)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

let testLogger: Logger = {
    var logger = Logger(label: "imagegen.test")
    logger.logLevel = .warning
    return logger
}()

/// A queue name no other test uses.
func uniqueQueueName(_ prefix: String = "t") -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}

func freeLoopbackPort() throws -> Int {
    let output = try runTool(
        "python3", ["-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"])
    guard let port = Int(output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw TestFailure("no free port")
    }
    return port
}

func which(_ tool: String) throws -> String {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(directory)/\(tool)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw TestFailure("\(tool) is not installed")
}

/// Runs blocking work (waiting for a process) on a dispatch thread, not the cooperative pool.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// Runs a tool to completion and returns its standard output. Blocking: call it through
/// ``offPool(_:)`` from async code.
@discardableResult
func runTool(_ tool: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try which(tool))
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

/// The package's root folder.
let packageRoot: URL = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
    }
    return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
}()

/// Checks `condition` until it holds or `timeout` passes; for waiting on another process,
/// whose progress this process cannot await directly.
func eventually(
    timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
