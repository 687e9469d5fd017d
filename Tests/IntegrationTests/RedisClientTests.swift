import Foundation
import Testing

@testable import RedisClient

@Suite("Redis client")
struct RedisClientTests {
    @Test("batches: a blocking request goes alone; others go together up to the next blocking one or the limit")
    func takesBatches() {
        func request(_ id: UInt64, blocking: Bool = false) -> Request {
            Request(id: id, commands: [["PING"]], blockingTimeout: blocking ? .seconds(1) : nil) { _ in }
        }
        var queue = [request(1), request(2), request(3, blocking: true), request(4), request(5), request(6)]
        #expect(queue.takeBatch().map(\.id) == [1, 2])
        #expect(queue.takeBatch().map(\.id) == [3])
        #expect(queue.takeBatch(limit: 2).map(\.id) == [4, 5])
        #expect(queue.takeBatch().map(\.id) == [6])
        #expect(queue.takeBatch().isEmpty)
    }

    @Test("URLs: user, password, port, database, unix socket; bad URLs are clear errors")
    func parsesURLs() throws {
        let full = try RedisConfiguration(url: "redis://worker:s%40cret@10.1.2.3:6380/4")
        #expect(full.endpoint == .tcp(host: "10.1.2.3", port: 6380))
        #expect(full.username == "worker")
        #expect(full.password == "s@cret")
        #expect(full.database == 4)
        #expect(!full.redactedDescription.contains("s@cret"))

        let passwordOnly = try RedisConfiguration(url: "redis://:pw@localhost")
        #expect(passwordOnly.username == nil)
        #expect(passwordOnly.password == "pw")
        #expect(passwordOnly.endpoint == .tcp(host: "localhost", port: 6379))

        let unix = try RedisConfiguration(url: "unix:///run/redis.sock?db=2")
        #expect(unix.endpoint == .unixSocket(path: "/run/redis.sock"))
        #expect(unix.database == 2)

        #expect(throws: RedisError.self) { try RedisConfiguration(url: "http://x") }
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis://h/notanumber") }
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "rediss://h") }
    }

    @Test("commands are written as RESP arrays of bulk strings, lengths of every width")
    func encodesCommands() {
        let blob = [UInt8](repeating: 0x0D, count: 1234)
        let command: RedisCommand = ["SET", RedisArgument(bytes: []), RedisArgument(bytes: blob), "123456789A"]
        let expected =
            Array("*4\r\n$3\r\nSET\r\n$0\r\n\r\n$1234\r\n".utf8) + blob
            + Array("\r\n$10\r\n123456789A\r\n".utf8)
        #expect(HiredisSocket.encode(command) == expected)
        #expect(HiredisSocket.encode(["PING"]) == Array("*1\r\n$4\r\nPING\r\n".utf8))
        // A large argument goes as a piece of its own, between the gathered ones.
        let large = [UInt8](repeating: 0x41, count: HiredisSocket.gatherLimit + 1)
        var pieces: [[UInt8]] = []
        HiredisSocket.forEachPiece(of: ["SET", "k", RedisArgument(bytes: large), "PX", "5"]) {
            pieces.append(Array($0))
        }
        #expect(pieces.count == 2 + 1)
        #expect(pieces[1] == large)
        #expect(
            pieces.joined().elementsEqual(
                Array("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$4097\r\n".utf8) + large
                    + Array("\r\n$2\r\nPX\r\n$1\r\n5\r\n".utf8)))
    }

    @Test("a pool keeps one awaiting caller on one connection, spreads concurrent calls, and counts them out")
    func poolPicksTheLeastBusyConnection() async throws {
        let pool = SharedRedis.pool(size: 3)
        defer { pool.close() }
        var ids: Set<Int> = []
        for _ in 0..<20 { ids.insert(try await pool.send("CLIENT", "ID").int ?? -1) }
        #expect(ids.count == 1)
        let concurrent = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<300 { group.addTask { try await pool.send("CLIENT", "ID").int ?? -1 } }
            var seen: Set<Int> = []
            for try await id in group { seen.insert(id) }
            return seen
        }
        #expect(concurrent.count > 1)
        #expect(pool.connection.inFlight == 0)
    }

    @Test("binary-safe arguments and replies, pipelines, error replies")
    func commandsAndPipelines() async throws {
        let pool = SharedRedis.pool()
        defer { pool.close() }
        let key = "test:\(UUID().uuidString)"
        let bytes: [UInt8] = [0, 255, 13, 10, 36, 42, 0]
        _ = try await pool.send("SET", key, bytes, "PX", 60000)
        #expect(try await pool.send("GET", key).bytes == bytes)

        let replies = try await pool.pipeline([
            ["INCR", RedisArgument(key + ":n")], ["INCR", RedisArgument(key + ":n")], ["GET", RedisArgument(key)],
            ["LPUSH", RedisArgument(key)],  // wrong number of arguments: an error value, not a throw
            ["DEL", RedisArgument(key), RedisArgument(key + ":n")],
        ])
        #expect(replies[0] == .integer(1))
        #expect(replies[1] == .integer(2))
        #expect(replies[2].bytes == bytes)
        if case .error = replies[3] {} else { Issue.record("expected an error reply, got \(replies[3])") }
        #expect(replies[4] == .integer(2))

        await #expect(throws: RedisError.self) { try await pool.send("NOSUCHCOMMAND") }
    }

    @Test("many concurrent tasks share two connections")
    func concurrentCommands() async throws {
        let pool = SharedRedis.pool(size: 2)
        defer { pool.close() }
        let key = "test:\(UUID().uuidString)"
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<500 { group.addTask { _ = try await pool.send("INCR", key) } }
            try await group.waitForAll()
        }
        #expect(try await pool.send("GET", key).int == 500)
        _ = try await pool.send("DEL", key)
    }

    @Test("a blocking command is interrupted at once when its task is canceled")
    func cancelBlockingCommand() async throws {
        let pool = SharedRedis.pool()
        defer { pool.close() }
        let connection = pool.makeBlockingConnection()
        defer { connection.close() }
        let started = ContinuousClock.now
        let task = Task {
            try await connection.sendBlocking(
                ["BLPOP", RedisArgument("test:never:\(UUID().uuidString)"), "30"], timeout: .seconds(30))
        }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: (any Error).self) { try await task.value }
        // Canceled, not timed out: the BLPOP alone would have taken 30 s (the bound is loose on
        // purpose, a busy machine may be slow to connect).
        #expect(ContinuousClock.now - started < .seconds(25))
        // The connection reconnects for the next command.
        #expect(try await connection.send("PING") == .status("PONG"))
    }

    @Test("ACL user and password, database index")
    func aclAndDatabase() async throws {
        let pool = SharedRedis.pool()
        defer { pool.close() }
        let user = "imagegen-test-\(UUID().uuidString.prefix(8))"
        _ = try await pool.send("ACL", "SETUSER", user, "on", ">p@ss word", "~*", "+@all")
        defer { Task { _ = try? await pool.send("ACL", "DELUSER", user) } }

        var configuration = SharedRedis.configuration
        configuration.username = user
        configuration.password = "p@ss word"
        configuration.database = 3
        let authed = RedisConnection(configuration: configuration)
        defer { authed.close() }
        #expect(try await authed.send("ACL", "WHOAMI").string == user)
        let key = "test:db:\(UUID().uuidString)"
        _ = try await authed.send("SET", key, "x", "PX", 60000)
        #expect(try await pool.send("EXISTS", key).int == 0)  // db 0 does not see db 3's key

        configuration.password = "wrong"
        let rejected = RedisConnection(configuration: configuration)
        defer { rejected.close() }
        await #expect(throws: RedisError.self) { try await rejected.send("PING") }
    }

    @Test("a unix socket endpoint works")
    func unixSocket() async throws {
        let socketPath = FileManager.default.temporaryDirectory.appendingPathComponent(
            "imagegen-\(UUID().uuidString.prefix(8)).sock"
        ).path
        let server = try await RedisServerProcess.start(extraArguments: ["--unixsocket", socketPath])
        defer { server.terminate() }
        let connection = RedisConnection(configuration: try RedisConfiguration(url: "unix://\(socketPath)"))
        defer { connection.close() }
        #expect(try await connection.send("PING") == .status("PONG"))
    }

    @Test("reconnects by itself after the server restarts; subscriptions come back")
    func reconnectAfterRestart() async throws {
        let server = try await RedisServerProcess.start()
        defer { server.terminate() }
        let connection = RedisConnection(configuration: server.configuration)
        defer { connection.close() }
        let subscriber = RedisSubscriber(configuration: server.configuration, channels: ["news"])
        defer { subscriber.close() }
        var events = subscriber.events.makeAsyncIterator()
        #expect(await events.next() == .subscribed)

        #expect(try await connection.send("PING") == .status("PONG"))
        try await server.restart()
        // The first command after the restart may fail (the old socket is dead); soon one succeeds.
        let back = try await eventually(timeout: .seconds(10)) {
            (try? await connection.send("PING")) == .status("PONG")
        }
        #expect(back)
        #expect(await events.next() == .subscribed)
        _ = try await connection.send("PUBLISH", "news", "hello")
        #expect(await events.next() == .message(channel: "news", payload: Array("hello".utf8)))
    }

    @Test("a function library is loaded again after the server lost it")
    func functionReload() async throws {
        let server = try await RedisServerProcess.start()
        defer { server.terminate() }
        let pool = RedisPool(configuration: server.configuration)
        defer { pool.close() }
        let library = RedisFunctionLibrary(
            name: "imagegen_test",
            source:
                "#!lua name=imagegen_test\nredis.register_function('imagegen_test_echo', function(k, a) return a[1] end)"
        )
        #expect(try await library.call("imagegen_test_echo", keys: [], arguments: ["one"], on: pool).string == "one")
        _ = try await pool.send("FUNCTION", "FLUSH")
        #expect(try await library.call("imagegen_test_echo", keys: [], arguments: ["two"], on: pool).string == "two")
        // A pipelined batch finds it missing too: loaded, and every call sent again.
        _ = try await pool.send("FUNCTION", "FLUSH")
        let replies = try await library.callBatch(
            "imagegen_test_echo", keys: [], argumentLists: [["a"], ["b"], ["c"]], on: pool)
        #expect(replies.map(\.string) == ["a", "b", "c"])
    }
}
