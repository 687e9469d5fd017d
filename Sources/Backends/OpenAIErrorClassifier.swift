import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Turns an OpenAI-compatible error answer or a transport failure into a ``BackendError``.
///
/// Pure functions of their arguments, with no I/O: status, body and headers in, error out.
///
/// | Answer | Code |
/// |---|---|
/// | 400 with `moderation_blocked` or `content_policy_violation` | ``BackendError/Code/moderationBlocked``, with the categories |
/// | 401, 403 | ``BackendError/Code/unauthorized`` |
/// | 429 with `insufficient_quota`, `billing_hard_limit_reached` or `billing_not_active` | ``BackendError/Code/quotaExhausted`` |
/// | any other 429 | ``BackendError/Code/rateLimited`` |
/// | any other 4xx | ``BackendError/Code/invalidRequest`` |
/// | any 5xx | ``BackendError/Code/unavailable`` |
/// | a deadline, connect or read timeout | ``BackendError/Code/timeout`` |
/// | a refused or broken connection | ``BackendError/Code/unavailable`` |
///
/// `retryAfter` comes from `Retry-After` (seconds or an HTTP date) or, failing that, from the
/// `x-ratelimit-reset-*` headers (Go-style durations such as `1s`, `6m0s`, `20ms`). Messages carry
/// the provider's own message and code only: the request (and so the prompt and the API key) is
/// never an input here. The moderation categories come from `safety_violations=[...]` in the
/// message (what the OpenAI Images API sends) or a `categories` list or object in the error.
public enum OpenAIErrorClassifier {
    /// The `error` object of an OpenAI error body.
    public struct ErrorBody: Sendable, Equatable {
        /// The machine-readable code, such as `moderation_blocked` or `insufficient_quota`.
        public var code: String?
        /// The error type, such as `invalid_request_error`.
        public var type: String?
        /// The provider's human-readable message.
        public var message: String?
        /// Moderation categories named by a `categories` list (or object of flags) in the error.
        public var categories: [String] = []

        /// Creates an error body.
        public init(code: String? = nil, type: String? = nil, message: String? = nil, categories: [String] = []) {
            self.code = code
            self.type = type
            self.message = message
            self.categories = categories
        }

        /// Parses `{"error":{"code":..,"type":..,"message":..}}`; nil when the body is not that shape.
        public init?(parsing body: [UInt8]) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
                let error = object["error"] as? [String: Any]
            else { return nil }
            self.code = error["code"] as? String
            self.type = error["type"] as? String
            self.message = error["message"] as? String
            if let list = error["categories"] as? [String] {
                self.categories = list
            } else if let flags = error["categories"] as? [String: Any] {
                self.categories = flags.filter { ($0.value as? Bool) == true }.map(\.key).sorted()
            }
        }
    }

    /// The longest provider message kept in a ``BackendError`` message.
    public static let maxMessageLength = 500

    /// Classifies an answer with a non-2xx `status`.
    public static func classify(status: Int, body: [UInt8], headers: HTTPHeaders, now: Date = Date()) -> BackendError {
        let parsed = ErrorBody(parsing: body)
        let markers = [parsed?.code, parsed?.type].compactMap { $0 }
        let retryAfter = self.retryAfter(headers: headers, now: now)
        let code: BackendError.Code
        var categories: [String] = []
        switch status {
        case 401, 403:
            code = .unauthorized
        case 429:
            let quota = ["insufficient_quota", "billing_hard_limit_reached", "billing_not_active"]
            code = markers.contains(where: quota.contains) ? .quotaExhausted : .rateLimited
        case 400..<500:
            let moderation = ["moderation_blocked", "content_policy_violation"]
            code = status == 400 && markers.contains(where: moderation.contains) ? .moderationBlocked : .invalidRequest
            if code == .moderationBlocked {
                categories = parsed?.categories ?? []
                if categories.isEmpty { categories = moderationCategories(in: parsed?.message ?? "") }
            }
        case 500..<600:
            code = .unavailable
        default:
            code = .unavailable
        }
        return BackendError(
            code, message(status: status, parsed: parsed), retryAfter: retryAfter, status: status,
            categories: categories)
    }

    /// Classifies a failure to get an answer at all. `canceled` tells whether the calling task was canceled.
    public static func classify(transportError error: any Error, canceled: Bool) -> BackendError {
        if let error = error as? BackendError { return error }
        if canceled || error is CancellationError {
            return BackendError(.canceled, "the request was canceled")
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout, .tlsHandshakeTimeout,
                .getConnectionFromPoolTimeout:
                return BackendError(.timeout, "the provider did not answer in time")
            case .cancelled:
                return BackendError(.canceled, "the request was canceled")
            default:
                return BackendError(.unavailable, "the connection to the provider failed: \(error)")
            }
        }
        if error is NIOConnectionError || error is ChannelError || error is IOError {
            return BackendError(.unavailable, "the connection to the provider failed: \(type(of: error))")
        }
        return BackendError(.unavailable, "the call to the provider failed: \(type(of: error))")
    }

    /// The categories of `safety_violations=[sexual, violence]` in a provider message: lowercase
    /// words of letters, digits, `_`, `-` and `/`, at most 16; empty when the message names none.
    public static func moderationCategories(in message: String) -> [String] {
        guard let start = message.range(of: "safety_violations=["),
            let end = message[start.upperBound...].firstIndex(of: "]")
        else { return [] }
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789_-/")
        return message[start.upperBound..<end].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            .filter { !$0.isEmpty && $0.count <= 64 && $0.allSatisfy(allowed.contains) }
            .prefix(16).map { $0 }
    }

    /// Seconds to wait, from `Retry-After` or else the `x-ratelimit-reset-*` headers (the longest of them).
    public static func retryAfter(headers: HTTPHeaders, now: Date = Date()) -> Double? {
        if let value = headers.first(name: "retry-after"), let seconds = parseRetryAfter(value, now: now) {
            return seconds
        }
        let resets = headers.compactMap { header -> Double? in
            header.name.lowercased().hasPrefix("x-ratelimit-reset") ? parseDuration(header.value) : nil
        }
        return resets.max()
    }

    /// Parses a `Retry-After` value: delta seconds (`120`, `1.5`) or an HTTP date, counted from `now`
    /// (never negative). Nil when the value is neither.
    public static func parseRetryAfter(_ value: String, now: Date = Date()) -> Double? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Double(trimmed), seconds.isFinite, seconds >= 0 { return seconds }
        guard let date = parseHTTPDate(trimmed) else { return nil }
        return max(0, date.timeIntervalSince(now))
    }

    /// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP servers send.
    public static func parseHTTPDate(_ value: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: value) { return date }
        }
        return nil
    }

    /// Parses a Go-style duration (`1s`, `6m0s`, `20ms`, `1h2m3.5s`, `250us`) into seconds.
    /// A bare number counts as seconds. Nil when the value is not a duration.
    public static func parseDuration(_ value: String) -> Double? {
        let text = value.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { return nil }
        if let seconds = Double(text) { return seconds >= 0 ? seconds : nil }
        let units: [(String, Double)] = [
            ("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("h", 3600), ("m", 60), ("s", 1),
        ]
        var total = 0.0
        var rest = Substring(text)
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let amount = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let (unit, scale) = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.count)
            total += amount * scale
        }
        return total
    }

    private static func message(status: Int, parsed: ErrorBody?) -> String {
        var text = "the provider answered \(status)"
        if let code = parsed?.code ?? parsed?.type { text += " (\(code))" }
        if let message = parsed?.message, !message.isEmpty {
            text += ": " + String(message.prefix(maxMessageLength))
        }
        return text
    }
}
