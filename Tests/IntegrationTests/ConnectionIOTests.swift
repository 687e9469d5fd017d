import Foundation
import Synchronization
import Testing
import ThreadSupport

@testable import RedisClient

/// The same behaviour from a connection with a thread of its own and from one on the task loop.
@Suite("Redis connections on a thread and on the task loop")
struct ConnectionIOTests {
    static func connection(_ io: RedisConfiguration.PoolIO, _ configuration: RedisConfiguration) -> RedisConnection {
        switch io {
        case .threads: RedisConnection(configuration: configuration, logger: testLogger)
        case .taskLoop: RedisConnection(configuration: configuration, logger: testLogger, loop: TaskLoop.shared)
        }
    }

    /// Expects `call` to fail with a ``RedisError`` of `code`, retryable or not as the code says.
    static func expectFailure(
        _ code: RedisError.Code, retryable: Bool, _ call: () async throws -> RESPValue,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        do {
            let reply = try await call()
            Issue.record("expected \(code), got \(reply)", sourceLocation: sourceLocation)
        } catch let error as RedisError {
            #expect(error.code == code, sourceLocation: sourceLocation)
            #expect(error.isRetryable == retryable, sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected a RedisError, got \(error)", sourceLocation: sourceLocation)
        }
    }

    /// A server of the test's own that allows `DEBUG SLEEP`, which holds it (every client) still.
    static func serverThatSleeps() async throws -> RedisServerProcess {
        try await RedisServerProcess.start(extraArguments: ["--enable-debug-command", "yes"])
    }

    /// Whether `connection` answers a `PING` again within ten seconds.
    static func comesBack(_ connection: RedisConnection) async throws -> Bool {
        try await eventually(timeout: .seconds(10)) { (try? await connection.send("PING")) == .status("PONG") }
    }

    @Test(
        "every caller gets its own reply, from the loop and from the pool at once; values of megabytes both ways",
        .timeLimit(.minutes(1)), arguments: RedisConfiguration.PoolIO.allCases)
    func repliesMatchRequests(io: RedisConfiguration.PoolIO) async throws {
        let connection = Self.connection(io, SharedRedis.configuration)
        defer { connection.close() }
        let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
            for caller in 0..<64 {
                // Half the callers run on the loop, half on the global pool.
                group.addTask(executorPreference: caller % 2 == 0 ? TaskLoop.shared : nil) {
                    var wrong = 0
                    for call in 0..<50 {
                        let value = "\(caller):\(call)"
                        if call % 10 == 9 {
                            let replies = try await connection.pipeline([["ECHO", RedisArgument(value)], ["PING"]])
                            if replies != [.bulk(Array(value.utf8)), .status("PONG")] { wrong += 1 }
                        } else if try await connection.send("ECHO", value).string != value {
                            wrong += 1
                        }
                    }
                    return wrong
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(mismatches == 0)
        #expect(connection.inFlight == 0)

        // Larger than any socket buffer: written in parts as the socket takes them, read likewise.
        let key = "test:big:\(UUID().uuidString)"
        let big = (0..<(6 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        _ = try await connection.send("SET", key, big, "PX", 60000)
        async let echo = connection.send("STRLEN", key)
        #expect(try await connection.send("GET", key).bytes == big)
        #expect(try await echo.int == big.count)
        _ = try await connection.send("DEL", key)
    }

    @Test(
        "a caller on the task loop is resumed on the loop's thread", .timeLimit(.minutes(1)))
    func resumesOnTheLoop() async throws {
        let connection = Self.connection(.taskLoop, SharedRedis.configuration)
        defer { connection.close() }
        let loop = TaskLoop.shared
        let onLoop = try await withTaskExecutorPreference(loop) { () async throws -> [Bool] in
            var seen: [Bool] = []
            for _ in 0..<20 {
                _ = try await connection.send("PING")
                seen.append(loop.isCurrentThread)
            }
            return seen
        }
        #expect(onLoop == Array(repeating: true, count: 20))
    }

    @Test(
        "a blocking command: the commands after it wait for it; canceling it interrupts it at once",
        .timeLimit(.minutes(1)), arguments: RedisConfiguration.PoolIO.allCases)
    func blockingCommand(io: RedisConfiguration.PoolIO) async throws {
        let connection = Self.connection(io, SharedRedis.configuration)
        defer { connection.close() }
        let helper = SharedRedis.pool(size: 1)
        defer { helper.close() }
        let list = "test:blocking:\(UUID().uuidString)"
        let popped = Task {
            try await connection.sendBlocking(["BLPOP", RedisArgument(list), "10"], timeout: .seconds(10))
        }
        try await Task.sleep(for: .milliseconds(100))
        let behind = Task { try await connection.send("PING") }
        try await Task.sleep(for: .milliseconds(100))
        _ = try await helper.send("RPUSH", list, "x")
        #expect(try await popped.value == .array([.bulk(Array(list.utf8)), .bulk(Array("x".utf8))]))
        #expect(try await behind.value == .status("PONG"))

        let started = ContinuousClock.now
        let waiting = Task {
            try await connection.sendBlocking(["BLPOP", RedisArgument(list), "30"], timeout: .seconds(30))
        }
        try await Task.sleep(for: .milliseconds(100))
        waiting.cancel()
        await Self.expectFailure(.canceled, retryable: false) { try await waiting.value }
        #expect(ContinuousClock.now - started < .seconds(20))
        #expect(try await connection.send("PING") == .status("PONG"))
    }

    @Test(
        "no reply within the command timeout: the call fails as a timeout and the connection comes back",
        .timeLimit(.minutes(1)), arguments: RedisConfiguration.PoolIO.allCases)
    func commandTimeout(io: RedisConfiguration.PoolIO) async throws {
        let server = try await Self.serverThatSleeps()
        defer { server.terminate() }
        var configuration = server.configuration
        configuration.commandTimeout = .milliseconds(300)
        let connection = Self.connection(io, configuration)
        defer { connection.close() }
        let helper = Self.connection(.threads, server.configuration)
        defer { helper.close() }
        #expect(try await connection.send("PING") == .status("PONG"))
        // DEBUG SLEEP holds the server (every client) for a second.
        let sleeper = Task { try await helper.send("DEBUG", "SLEEP", "1") }
        try await Task.sleep(for: .milliseconds(50))
        await Self.expectFailure(.timeout, retryable: true) { try await connection.send("PING") }
        _ = try await sleeper.value
        #expect(try await Self.comesBack(connection))
    }

    @Test(
        "no server: calls fail at once as connection failures; the connection comes up once the server does",
        .timeLimit(.minutes(1)), arguments: RedisConfiguration.PoolIO.allCases)
    func noServer(io: RedisConfiguration.PoolIO) async throws {
        let server = try await RedisServerProcess.start()
        defer { server.terminate() }
        let connection = Self.connection(io, server.configuration)
        defer { connection.close() }
        #expect(try await connection.send("PING") == .status("PONG"))
        server.terminate()
        // The first call finds the socket dead or cannot connect: either way it fails, retryably.
        for _ in 0..<3 {
            await Self.expectFailure(.connectionFailed, retryable: true) { try await connection.send("PING") }
        }
        try await server.restart()
        #expect(try await Self.comesBack(connection))
    }

    @Test(
        "close ends every call waiting (those on the wire may still get their replies) and fails later ones",
        .timeLimit(.minutes(1)), arguments: RedisConfiguration.PoolIO.allCases)
    func close(io: RedisConfiguration.PoolIO) async throws {
        let server = try await Self.serverThatSleeps()
        defer { server.terminate() }
        let connection = Self.connection(io, server.configuration)
        let helper = Self.connection(.threads, server.configuration)
        defer { helper.close() }
        #expect(try await connection.send("PING") == .status("PONG"))
        let sleeper = Task { try await helper.send("DEBUG", "SLEEP", "0.5") }
        try await Task.sleep(for: .milliseconds(50))
        let waiting = (0..<10).map { _ in Task { try await connection.send("PING") } }
        try await Task.sleep(for: .milliseconds(50))
        connection.close()
        for task in waiting {
            do {
                #expect(try await task.value == .status("PONG"))
            } catch let error as RedisError {
                #expect(error.code == .closed || error.code == .connectionFailed)
            }
        }
        await #expect(throws: RedisError.self) { try await connection.send("PING") }
        _ = try await sleeper.value
    }
}
