import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IPv4 or IPv6 address as bytes.
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    case v4([UInt8])
    case v6([UInt8])

    /// Parses a numeric address (`10.0.0.1`, `::1`, `[fe80::1]`); nil for a host name.
    public init?(_ text: String) {
        var literal = text
        if literal.hasPrefix("["), literal.hasSuffix("]") { literal = String(literal.dropFirst().dropLast()) }
        if let zone = literal.firstIndex(of: "%") { literal = String(literal[..<zone]) }
        var v4 = in_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 {
            self = .v4(withUnsafeBytes(of: &v4) { Array($0) })
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, literal, &v6) == 1 {
            self = .v6(withUnsafeBytes(of: &v6) { Array($0) })
            return
        }
        return nil
    }

    public var description: String {
        switch self {
        case .v4(let b): return b.map(String.init).joined(separator: ".")
        case .v6(let b):
            return stride(from: 0, to: 16, by: 2).map { String(UInt16(b[$0]) << 8 | UInt16(b[$0 + 1]), radix: 16) }
                .joined(separator: ":")
        }
    }
}

/// Which webhook targets may be called: the guard against server-side request forgery.
///
/// Only `http` and `https` URLs with a host and no credentials are accepted, and every address
/// the host resolves to must be public: loopback, unspecified, private (RFC 1918), shared
/// (CGNAT, RFC 6598), link-local, IETF-reserved, benchmarking, multicast, broadcast and reserved
/// IPv4; loopback, unspecified, unique-local, site-local, link-local and multicast IPv6; and the
/// IPv4-mapped, IPv4-compatible and NAT64 forms of forbidden IPv4 addresses are all refused —
/// unless ``allowPrivateTargets`` is set (tests, closed networks).
///
/// The check runs on the addresses resolved just before the request. A DNS answer that changes
/// between the check and the connection (rebinding) is not covered: deny private ranges at the
/// network's egress too.
public struct WebhookTargetPolicy: Sendable, Equatable {
    /// Allow every address, loopback and private ones included. Default false.
    public var allowPrivateTargets: Bool = false
    /// The longest wait for the host's addresses. Default 5 s.
    public var resolutionTimeout: Duration = .seconds(5)

    public init(allowPrivateTargets: Bool = false, resolutionTimeout: Duration = .seconds(5)) {
        self.allowPrivateTargets = allowPrivateTargets
        self.resolutionTimeout = resolutionTimeout
    }

    /// The parts of a URL the policy needs.
    public struct Target: Sendable, Equatable {
        public var scheme: String
        public var host: String
        public var port: Int
    }

    /// Checks the form of `url` (scheme, host, no credentials), without resolving it.
    public func target(of url: String) throws(WebhookError) -> Target {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased() else {
            throw WebhookError(.invalidURL, "not an absolute URL")
        }
        guard scheme == "http" || scheme == "https" else {
            throw WebhookError(.invalidURL, "only http and https webhook URLs are allowed")
        }
        guard var host = parsed.host, !host.isEmpty else { throw WebhookError(.invalidURL, "the URL has no host") }
        guard parsed.user == nil, parsed.password == nil else {
            throw WebhookError(.invalidURL, "webhook URLs may not carry credentials")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return Target(scheme: scheme, host: host, port: parsed.port ?? (scheme == "https" ? 443 : 80))
    }

    /// Checks `url` and every address its host resolves to. Resolution runs on a dispatch
    /// thread, never on the cooperative pool, and is given up after ``resolutionTimeout``
    /// (``WebhookError/Code/unresolvable``, retryable).
    public func check(_ url: String) async throws(WebhookError) {
        let target = try target(of: url)
        if allowPrivateTargets { return }
        let addresses: [IPAddress]
        if let literal = IPAddress(target.host) {
            addresses = [literal]
        } else {
            let host = target.host
            let seconds =
                Double(resolutionTimeout.components.seconds)
                + Double(resolutionTimeout.components.attoseconds) / 1e18
            let result = await withCheckedContinuation { continuation in
                let once = ResumeOnce(continuation)
                DispatchQueue.global().async { once.resume(Self.resolve(host)) }
                DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
                    once.resume(.failure(WebhookError(.unresolvable, "the webhook host did not resolve in time")))
                }
            }
            addresses = try result.get()
        }
        for address in addresses {
            if let why = Self.forbiddenReason(address) {
                throw WebhookError(.forbiddenTarget, "the host resolves to a \(why) address")
            }
        }
    }

    /// Why `address` may not be a webhook target, or nil when it is public.
    public static func forbiddenReason(_ address: IPAddress) -> String? {
        switch address {
        case .v4(let b): return forbiddenReasonV4(b)
        case .v6(let b):
            if b.allSatisfy({ $0 == 0 }) { return "unspecified" }
            if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return "loopback" }
            // IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::a.b.c.d.
            let mapped = b[0..<10].allSatisfy { $0 == 0 } && b[10] == 0xff && b[11] == 0xff
            let compatible = b[0..<12].allSatisfy { $0 == 0 }
            let nat64 = b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4..<12].allSatisfy { $0 == 0 }
            if mapped || compatible || nat64 {
                return forbiddenReasonV4(Array(b[12..<16])).map { "IPv4-embedded \($0)" }
            }
            if b[0] == 0xff { return "multicast" }
            if b[0] & 0xfe == 0xfc { return "unique-local" }
            if b[0] == 0xfe && b[1] & 0xc0 == 0x80 { return "link-local" }
            if b[0] == 0xfe && b[1] & 0xc0 == 0xc0 { return "site-local" }
            if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8 { return "documentation" }
            return nil
        }
    }

    private static func forbiddenReasonV4(_ b: [UInt8]) -> String? {
        switch (b[0], b[1], b[2]) {
        case (0, _, _): return "unspecified"
        case (10, _, _): return "private"
        case (100, 64...127, _): return "shared (CGNAT)"
        case (127, _, _): return "loopback"
        case (169, 254, _): return "link-local"
        case (172, 16...31, _): return "private"
        case (192, 0, 0): return "IETF-reserved"
        case (192, 0, 2), (198, 51, 100), (203, 0, 113): return "documentation"
        case (192, 168, _): return "private"
        case (198, 18...19, _): return "benchmarking"
        case (224...239, _, _): return "multicast"
        case (240...255, _, _): return "reserved"
        default: return nil
        }
    }

    /// Resolves `host` with `getaddrinfo` (blocking: call it off the cooperative pool).
    static func resolve(_ host: String) -> Result<[IPAddress], WebhookError> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0, let first = list else {
            return .failure(WebhookError(.unresolvable, "the webhook host did not resolve"))
        }
        defer { freeaddrinfo(first) }
        var addresses: [IPAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            if let address = current.pointee.ai_addr {
                if current.pointee.ai_family == AF_INET {
                    address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                        var raw = pointer.pointee.sin_addr
                        addresses.append(.v4(withUnsafeBytes(of: &raw) { Array($0) }))
                    }
                } else if current.pointee.ai_family == AF_INET6 {
                    address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                        var raw = pointer.pointee.sin6_addr
                        addresses.append(.v6(withUnsafeBytes(of: &raw) { Array($0) }))
                    }
                }
            }
            node = current.pointee.ai_next
        }
        guard !addresses.isEmpty else {
            return .failure(WebhookError(.unresolvable, "the webhook host has no address"))
        }
        return .success(addresses)
    }
}

/// Resumes a continuation with the first result given; later ones are dropped (a resolution that
/// answers after its timeout).
private final class ResumeOnce: Sendable {
    typealias Answer = Result<[IPAddress], WebhookError>
    private let continuation: Mutex<CheckedContinuation<Answer, Never>?>

    init(_ continuation: CheckedContinuation<Answer, Never>) {
        self.continuation = Mutex(continuation)
    }

    func resume(_ answer: Answer) {
        continuation.withLock { pending in
            pending?.resume(returning: answer)
            pending = nil
        }
    }
}
