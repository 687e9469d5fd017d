/// Where uploads and outputs live, each with a time to live.
///
/// Keys are store-neutral ids such as `upload:<id>` or `output:<job id>:<index>`: letters,
/// digits and `: _ . -`, at most 200 characters. A key written again replaces the old bytes,
/// so a retried job overwrites its outputs instead of adding more.
public protocol BlobStore: Sendable {
    /// Stores `bytes` under `key`, to expire after `ttl`.
    func put(_ key: String, _ bytes: [UInt8], ttl: Duration) async throws
    /// The bytes under `key`, or `nil` when missing or expired.
    func get(_ key: String) async throws -> [UInt8]?
    /// Deletes the keys; missing ones are ignored. Returns how many existed.
    @discardableResult
    func delete(_ keys: [String]) async throws -> Int
}

/// A blob store failure.
public struct BlobStoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The key has characters or a length a key may not have. Not retryable.
        case invalidKey = "invalid_key"
        /// The store could not be reached or written. Retryable.
        case unavailable
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var isRetryable: Bool { code == .unavailable }
    public var description: String { "\(code.rawValue): \(message)" }
}

/// Blob key rules shared by every store.
public enum BlobKey {
    /// Whether `key` may be used (and is safe as a file name).
    public static func isValid(_ key: String) -> Bool {
        guard (1...200).contains(key.utf8.count), !key.hasPrefix("."), !key.contains("..") else { return false }
        return key.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x3A || byte == 0x5F || byte == 0x2E || byte == 0x2D
        }
    }

    static func check(_ key: String) throws {
        guard isValid(key) else { throw BlobStoreError(.invalidKey, "blob key must be 1-200 of A-Z a-z 0-9 : _ . -") }
    }

    /// The key of output `index` of `jobID`.
    public static func output(jobID: String, index: Int) -> String { "output:\(jobID):\(index)" }
}
