import Foundation

/// Where and how to connect to Redis. Plain data with documented defaults.
public struct RedisConfiguration: Sendable, Equatable {
    /// The server's address.
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)
    }

    /// The server. Default `127.0.0.1:6379`.
    public var endpoint: Endpoint = .tcp(host: "127.0.0.1", port: 6379)
    /// ACL user name; `nil` authenticates as `default` when a password is set.
    public var username: String?
    /// ACL or `requirepass` password. Never logged.
    public var password: String?
    /// Database index selected after connecting. Default 0.
    public var database: Int = 0
    /// How long a connect may take. Default 2 s.
    public var connectTimeout: Duration = .seconds(2)
    /// How long a command may wait for its reply (blocking commands add their own timeout). Default 5 s.
    public var commandTimeout: Duration = .seconds(5)
    /// First delay before reconnecting after a lost connection; doubles up to ``reconnectMaxDelay``,
    /// with full jitter. Default 50 ms.
    public var reconnectBaseDelay: Duration = .milliseconds(50)
    /// Largest delay between reconnect attempts. Default 2 s.
    public var reconnectMaxDelay: Duration = .seconds(2)
    /// Connection name shown by `CLIENT LIST`. Default none.
    public var clientName: String?
    /// What runs the I/O of a ``RedisPool``'s connections. Default ``PoolIO/taskLoop``.
    public var poolIO: PoolIO = .taskLoop

    /// What runs the I/O of a pool's connections (blocking connections always have threads of
    /// their own).
    public enum PoolIO: String, Sendable, Equatable, CaseIterable {
        /// The process' task loop polls the sockets: no thread hand-off for a caller on the loop
        /// (the worker's slots), one for a caller elsewhere.
        case taskLoop = "loop"
        /// A thread per connection blocks in hiredis: two hand-offs per call for every caller.
        case threads
    }

    public init() {}

    /// Parses `redis://[user[:password]@]host[:port][/db]` or `unix:///path/to/redis.sock[?db=N]`.
    ///
    /// User and password may be percent-encoded. The error message never repeats the password.
    public init(url: String) throws {
        self.init()
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw RedisError(.configuration, "not a Redis URL (expected redis://host:port/db or unix:///path)")
        }
        username = components.percentEncodedUser.flatMap { $0.removingPercentEncoding }.flatMap {
            $0.isEmpty ? nil : $0
        }
        password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        switch scheme {
        case "redis":
            let host = components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
            let port = components.port ?? 6379
            guard (1...65535).contains(port) else { throw RedisError(.configuration, "port \(port) out of range") }
            endpoint = .tcp(host: host, port: port)
            let path = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            if !path.isEmpty {
                guard let db = Int(path), db >= 0 else {
                    throw RedisError(.configuration, "database index '\(path)' is not a number")
                }
                database = db
            }
        case "unix", "redis+unix":
            guard !components.path.isEmpty else { throw RedisError(.configuration, "unix URL needs a socket path") }
            endpoint = .unixSocket(path: components.path)
        case "rediss":
            throw RedisError(.configuration, "TLS (rediss://) is not supported by this build's hiredis")
        default:
            throw RedisError(.configuration, "unsupported URL scheme '\(scheme)'")
        }
        if let db = components.queryItems?.first(where: { $0.name == "db" })?.value {
            guard let index = Int(db), index >= 0 else {
                throw RedisError(.configuration, "database index '\(db)' is not a number")
            }
            database = index
        }
    }

    /// The endpoint as text for logs (no credentials).
    public var redactedDescription: String {
        let auth = password == nil ? "" : "\(username ?? "default"):***@"
        switch endpoint {
        case .tcp(let host, let port): return "redis://\(auth)\(host):\(port)/\(database)"
        case .unixSocket(let path): return "unix://\(auth)\(path)?db=\(database)"
        }
    }
}
