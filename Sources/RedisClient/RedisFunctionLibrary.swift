/// A Redis Functions library (`#!lua name=…`) that loads itself when the server lacks it.
///
/// The library is loaded with `FUNCTION LOAD REPLACE` on first use, and again whenever a call
/// fails with "Function not found" (a server restarted without persistence, `FUNCTION FLUSH`,
/// a failover to a replica that never saw it).
public struct RedisFunctionLibrary: Sendable {
    /// The library name from the source's shebang line.
    public let name: String
    /// The Lua source, starting with `#!lua name=<name>`.
    public let source: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
    }

    /// Loads the library unless the server already has this revision or a newer one.
    ///
    /// `revisionFunction` is a function of the library returning its revision number; a server
    /// without it (or without the library) gets this library. Returns true when it loaded.
    @discardableResult
    public func upgrade(on pool: RedisPool, revisionFunction: String, revision: Int) async throws -> Bool {
        do {
            let current = try await pool.send(["FCALL_RO", RedisArgument(revisionFunction), 0]).int ?? 0
            if current >= revision { return false }
        } catch let error as RedisError where error.code == .server {
            // No such function: the library is missing or older than revisions.
        }
        try await load(on: pool)
        return true
    }

    /// Loads (or replaces) the library on the server.
    public func load(on pool: RedisPool) async throws {
        _ = try await pool.send(["FUNCTION", "LOAD", "REPLACE", RedisArgument(source)])
    }

    /// Calls `function` with `keys` and `arguments`, loading the library first when it is missing.
    public func call(
        _ function: String, keys: [RedisArgument], arguments: [RedisArgument], on pool: RedisPool
    ) async throws -> RESPValue {
        let command: RedisCommand = ["FCALL", RedisArgument(function), RedisArgument(keys.count)] + keys + arguments
        do {
            return try await pool.send(command)
        } catch let error as RedisError where error.code == .server && error.message.contains("Function not found") {
            try await load(on: pool)
            return try await pool.send(command)
        }
    }

    /// Calls `function` once per argument list, all in one pipelined write, and returns the replies
    /// in order; error replies stay in the array. When the library is missing none of the calls ran:
    /// it is loaded and the whole batch is sent again.
    public func callBatch(
        _ function: String, keys: [RedisArgument], argumentLists: [[RedisArgument]], on pool: RedisPool
    ) async throws -> [RESPValue] {
        let head: RedisCommand = ["FCALL", RedisArgument(function), RedisArgument(keys.count)] + keys
        let commands = argumentLists.map { head + $0 }
        let replies = try await pool.pipeline(commands)
        if case .error(let message)? = replies.first, message.contains("Function not found") {
            try await load(on: pool)
            return try await pool.pipeline(commands)
        }
        return replies
    }
}
