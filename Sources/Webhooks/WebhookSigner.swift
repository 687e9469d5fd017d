import Crypto
import Foundation

/// A webhook signing secret in the Standard Webhooks form `whsec_<base64>`; the key is the
/// base64-decoded part. Its description never shows the key.
public struct WebhookSecret: Sendable, Equatable, CustomStringConvertible {
    /// The HMAC key bytes.
    let keyBytes: [UInt8]

    /// Parses `whsec_<base64>` (the prefix is optional; at least 16 key bytes).
    public init(_ text: String) throws(WebhookError) {
        var encoded = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
        if encoded.hasPrefix("whsec_") { encoded = encoded.dropFirst("whsec_".count) }
        guard let bytes = Data(base64Encoded: String(encoded)), bytes.count >= 16 else {
            throw WebhookError(.invalidSecret, "a webhook secret is whsec_ followed by base64 of at least 16 bytes")
        }
        self.keyBytes = Array(bytes)
    }

    /// A new random secret of 32 bytes, as `whsec_<base64>`.
    public static func generate() -> String {
        "whsec_" + SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }

    /// Several secrets separated by spaces or newlines (rotation: the new one and the old ones).
    public static func parseList(_ text: String) throws(WebhookError) -> [WebhookSecret] {
        var secrets: [WebhookSecret] = []
        for part in text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }) {
            secrets.append(try WebhookSecret(String(part)))
        }
        guard !secrets.isEmpty else { throw WebhookError(.invalidSecret, "no webhook secret given") }
        return secrets
    }

    public var description: String { "whsec_(redacted)" }

}

/// Signs webhook requests as the Standard Webhooks specification says: the signed content is
/// `<webhook-id>.<webhook-timestamp>.<body>`, the signature `v1,<base64 HMAC-SHA256>`, one per
/// secret separated by spaces, so receivers may verify with the old or the new secret while
/// secrets rotate.
public struct WebhookSigner: Sendable {
    /// The secrets, each producing one signature; the first is the current one.
    public let secrets: [WebhookSecret]

    public init(secrets: [WebhookSecret]) {
        self.secrets = secrets
    }

    /// The `webhook-signature` header value.
    public func signature(messageID: String, timestamp: Int64, body: [UInt8]) -> String {
        secrets.map { "v1," + Self.sign(messageID: messageID, timestamp: timestamp, body: body, secret: $0) }
            .joined(separator: " ")
    }

    /// The three headers of one request: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    public func headers(messageID: String, timestamp: Int64, body: [UInt8]) -> [(String, String)] {
        [
            ("webhook-id", messageID), ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", signature(messageID: messageID, timestamp: timestamp, body: body)),
        ]
    }

    /// Whether `header` holds a valid `v1` signature of the content by any of `secrets`.
    /// (What a receiver does; here for tests and tools.)
    public static func verify(
        messageID: String, timestamp: Int64, body: [UInt8], header: String, secrets: [WebhookSecret]
    ) -> Bool {
        let offered = header.split(separator: " ").compactMap { part -> String? in
            let pieces = part.split(separator: ",", maxSplits: 1)
            return pieces.count == 2 && pieces[0] == "v1" ? String(pieces[1]) : nil
        }
        for secret in secrets {
            let expected = Array(sign(messageID: messageID, timestamp: timestamp, body: body, secret: secret).utf8)
            for candidate in offered where constantTimeEqual(Array(candidate.utf8), expected) { return true }
        }
        return false
    }

    static func sign(messageID: String, timestamp: Int64, body: [UInt8], secret: WebhookSecret) -> String {
        var content = Array("\(messageID).\(timestamp).".utf8)
        content.append(contentsOf: body)
        let mac = HMAC<SHA256>.authenticationCode(for: content, using: SymmetricKey(data: secret.keyBytes))
        return Data(mac).base64EncodedString()
    }

    private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }
}
