/// One binary-safe argument of a Redis command.
public struct RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    /// The bytes sent to the server.
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }
    public init(_ int: Int) { self.bytes = Array(String(int).utf8) }
    public init(_ double: Double) { self.bytes = Array(String(double).utf8) }
    public init(stringLiteral value: String) { self.init(value) }
    public init(integerLiteral value: Int) { self.init(value) }
}

/// A whole command: the name followed by its arguments.
public typealias RedisCommand = [RedisArgument]

/// Values that can stand as a command argument.
public protocol RedisArgumentConvertible: Sendable {
    var redisArgument: RedisArgument { get }
}

extension RedisArgument: RedisArgumentConvertible {
    public var redisArgument: RedisArgument { self }
}
extension String: RedisArgumentConvertible {
    public var redisArgument: RedisArgument { RedisArgument(self) }
}
extension Substring: RedisArgumentConvertible {
    public var redisArgument: RedisArgument { RedisArgument(String(self)) }
}
extension Int: RedisArgumentConvertible {
    public var redisArgument: RedisArgument { RedisArgument(self) }
}
extension Int64: RedisArgumentConvertible {
    public var redisArgument: RedisArgument { RedisArgument(Int(self)) }
}
extension Double: RedisArgumentConvertible {
    public var redisArgument: RedisArgument { RedisArgument(self) }
}
extension Array: RedisArgumentConvertible where Element == UInt8 {
    public var redisArgument: RedisArgument { RedisArgument(bytes: self) }
}

extension Array where Element == RedisArgument {
    /// Builds a command from any mix of strings, integers and byte arrays.
    public static func command(_ parts: any RedisArgumentConvertible...) -> RedisCommand {
        parts.map(\.redisArgument)
    }
}
