import Logging
import Synchronization
import ThreadSupport

/// A few pipelining connections shared by the whole process.
///
/// Each ``RedisConnection`` already batches concurrent commands, so a small pool (default 2)
/// serves many tasks. Its connections run on the process' task loop unless
/// ``RedisConfiguration/poolIO`` says otherwise. Blocking commands get a dedicated connection from ``makeBlockingConnection()``.
public final class RedisPool: Sendable {
    /// The configuration every connection of this pool uses.
    public let configuration: RedisConfiguration
    private let connections: [RedisConnection]
    private let next = Atomic<Int>(0)
    private let logger: Logger

    /// Creates `size` connections (at least one). Nothing connects until first use.
    public init(configuration: RedisConfiguration, size: Int = 2, logger: Logger = Logger(label: "imagegen.redis")) {
        self.configuration = configuration
        self.logger = logger
        self.connections = (0..<max(1, size)).map { _ in
            switch configuration.poolIO {
            case .taskLoop: RedisConnection(configuration: configuration, logger: logger, loop: TaskLoop.shared)
            case .threads: RedisConnection(configuration: configuration, logger: logger)
            }
        }
    }

    /// The connection with the fewest requests in flight; among equals, the next in turn after
    /// the first. One caller awaiting one call after another therefore stays on one connection,
    /// whose thread is then awake for its next call, and concurrent callers spread out.
    public var connection: RedisConnection {
        guard connections.count > 1 else { return connections[0] }
        var best = connections[0]
        var least = best.inFlight
        if least == 0 { return best }
        let start = abs(next.wrappingAdd(1, ordering: .relaxed).oldValue)
        for offset in 0..<connections.count {
            let candidate = connections[(start + offset) % connections.count]
            let load = candidate.inFlight
            if load < least {
                best = candidate
                least = load
                if load == 0 { break }
            }
        }
        return best
    }

    /// The executor that runs the pool's connections: the process' task loop, or nil when each has
    /// a thread of its own. A task that prefers it (`withTaskExecutorPreference(pool.executor)`)
    /// waits for each reply with no thread hand-off at all: for a producer that awaits one enqueue
    /// after another, for one. Only for tasks that do little work between calls; CPU work there
    /// holds up every connection of the process.
    public var executor: (any TaskExecutor)? {
        configuration.poolIO == .taskLoop ? TaskLoop.shared : nil
    }

    /// Sends one command on the next connection.
    public func send(_ command: RedisCommand) async throws -> RESPValue {
        try await connection.send(command)
    }

    /// Sends one command built from strings, integers and byte arrays.
    public func send(_ parts: any RedisArgumentConvertible...) async throws -> RESPValue {
        try await connection.send(parts.map(\.redisArgument))
    }

    /// Sends several commands in one write on one connection.
    public func pipeline(_ commands: [RedisCommand]) async throws -> [RESPValue] {
        try await connection.pipeline(commands)
    }

    /// A new connection of its own, for blocking commands. The caller closes it.
    public func makeBlockingConnection() -> RedisConnection {
        RedisConnection(configuration: configuration, logger: logger)
    }

    /// Closes every connection of the pool.
    public func close() {
        for connection in connections { connection.close() }
    }
}
