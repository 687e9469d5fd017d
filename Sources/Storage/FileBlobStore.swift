import Foundation

/// Blobs as files in one directory. Each file starts with its expiry time (8 bytes, big-endian
/// milliseconds since 1970); an expired file reads as missing and ``sweepExpired()`` deletes it.
///
/// Writes go to a temporary file renamed into place, so a crash never leaves half a blob.
/// File I/O is blocking: calls run on a dispatch queue of their own, not on the cooperative pool.
public struct FileBlobStore: BlobStore {
    /// The directory holding the blobs.
    public let directory: URL
    private static let io = DispatchQueue(label: "imagegen.file-blob-store", attributes: .concurrent)

    /// Creates the directory (mode 0700) when it does not exist.
    public init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    public func put(_ key: String, _ bytes: [UInt8], ttl: Duration) async throws {
        try BlobKey.check(key)
        let expiry = UInt64(max(0, Date().timeIntervalSince1970 * 1000 + Double(ttl.components.seconds) * 1000))
        var data = Data(capacity: bytes.count + 8)
        withUnsafeBytes(of: expiry.bigEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: bytes)
        let contents = data
        let target = url(key)
        let temporary = directory.appendingPathComponent(".\(key).\(UUID().uuidString).tmp")
        try await run {
            try contents.write(to: temporary, options: [])
            if rename(temporary.path, target.path) != 0 {
                try? FileManager.default.removeItem(at: temporary)
                throw BlobStoreError(.unavailable, "could not write blob \(key)")
            }
        }
    }

    public func get(_ key: String) async throws -> [UInt8]? {
        try BlobKey.check(key)
        let target = url(key)
        return try await run {
            guard let data = FileManager.default.contents(atPath: target.path), data.count >= 8 else { return nil }
            let expiry = data.prefix(8).reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
            if Double(expiry) <= Date().timeIntervalSince1970 * 1000 {
                try? FileManager.default.removeItem(at: target)
                return nil
            }
            return Array(data.dropFirst(8))
        }
    }

    @discardableResult
    public func delete(_ keys: [String]) async throws -> Int {
        for key in keys { try BlobKey.check(key) }
        let urls = keys.map(url)
        return try await run {
            urls.reduce(0) { count, url in (try? FileManager.default.removeItem(at: url)) == nil ? count : count + 1 }
        }
    }

    /// Deletes every expired blob; returns how many.
    @discardableResult
    public func sweepExpired() async throws -> Int {
        let directory = self.directory
        return try await run {
            let now = Date().timeIntervalSince1970 * 1000
            var removed = 0
            for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) where !name.hasPrefix(".") {
                let file = directory.appendingPathComponent(name)
                guard let handle = FileHandle(forReadingAtPath: file.path) else { continue }
                let head = handle.readData(ofLength: 8)
                try? handle.close()
                let expiry = head.reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
                if head.count == 8, Double(expiry) <= now, (try? FileManager.default.removeItem(at: file)) != nil {
                    removed += 1
                }
            }
            return removed
        }
    }

    private func url(_ key: String) -> URL { directory.appendingPathComponent(key) }

    private func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            FileBlobStore.io.async {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}
