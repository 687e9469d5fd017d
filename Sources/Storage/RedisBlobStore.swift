import RedisClient

/// Blobs as Redis strings under `<prefix><key>`, written with `SET … PX` so each expires by itself.
public struct RedisBlobStore: BlobStore {
    private let pool: RedisPool
    /// Prepended to every key, e.g. `imagegen:{default}:blob:` (same hash tag as the queue).
    public let prefix: String

    public init(pool: RedisPool, prefix: String) {
        self.pool = pool
        self.prefix = prefix
    }

    public func put(_ key: String, _ bytes: [UInt8], ttl: Duration) async throws {
        try BlobKey.check(key)
        let ms = max(1, Int(ttl.components.seconds * 1000 + ttl.components.attoseconds / 1_000_000_000_000_000))
        try await mapped {
            _ = try await pool.send([
                "SET", RedisArgument(prefix + key), RedisArgument(bytes: bytes), "PX", RedisArgument(ms),
            ])
        }
    }

    public func get(_ key: String) async throws -> [UInt8]? {
        try BlobKey.check(key)
        return try await mapped { try await pool.send(["GET", RedisArgument(prefix + key)]).bytes }
    }

    @discardableResult
    public func delete(_ keys: [String]) async throws -> Int {
        guard !keys.isEmpty else { return 0 }
        for key in keys { try BlobKey.check(key) }
        let command: RedisCommand = ["UNLINK"] + keys.map { RedisArgument(prefix + $0) }
        return try await mapped { try await pool.send(command).int ?? 0 }
    }

    private func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RedisError {
            throw BlobStoreError(.unavailable, error.description)
        }
    }
}
