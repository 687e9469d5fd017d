/// A reply from Redis, converted from hiredis' reply tree into plain Swift values.
public enum RESPValue: Sendable, Hashable {
    case null
    /// A status reply such as `OK` or `QUEUED`.
    case status(String)
    /// An error reply. Kept as a value inside pipelines and arrays; ``RedisConnection/send(_:)``
    /// throws it as ``RedisError`` when it is the whole reply.
    case error(String)
    case integer(Int64)
    /// A binary-safe bulk string.
    case bulk([UInt8])
    case array([RESPValue])

    /// The reply as text, for bulk and status replies.
    public var string: String? {
        switch self {
        case .bulk(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .status(let s): return s
        case .integer(let i): return String(i)
        default: return nil
        }
    }

    /// The reply's raw bytes, for bulk and status replies.
    public var bytes: [UInt8]? {
        switch self {
        case .bulk(let bytes): return bytes
        case .status(let s): return Array(s.utf8)
        default: return nil
        }
    }

    /// The reply as an integer, for integer replies and bulk strings that hold one.
    public var int: Int? {
        switch self {
        case .integer(let i): return Int(i)
        case .bulk, .status: return string.flatMap { Int($0) }
        default: return nil
        }
    }

    /// The elements of an array reply; `nil` for anything else.
    public var array: [RESPValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    /// Whether this is the null reply.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}
