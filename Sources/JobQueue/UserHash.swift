import Crypto

/// A stable pseudonym of a user id for logs and providers: the first 16 hex digits of
/// SHA-256(salt ‖ user). Never log or send the raw id.
public struct UserHasher: Sendable {
    private let salt: [UInt8]

    /// `salt` is a deployment secret (`IMAGEGEN_USER_HASH_SALT`); empty is allowed but weaker.
    public init(salt: String = "") {
        self.salt = Array(salt.utf8)
    }

    public func hash(_ user: String) -> String {
        let digest = SHA256.hash(data: salt + Array(user.utf8))
        let hex = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: 16) { buffer in
            for (index, byte) in digest.prefix(8).enumerated() {
                buffer[2 * index] = hex[Int(byte >> 4)]
                buffer[2 * index + 1] = hex[Int(byte & 0x0F)]
            }
            return 16
        }
    }
}
