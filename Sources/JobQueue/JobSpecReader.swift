import Foundation

/// Reads a job spec from its JSON without `JSONDecoder`'s reflection and boxing: the worker reads
/// one per claimed job. It takes what `JSONDecoder` takes for ``JobSpec``; anything it is unsure
/// of (a malformed document, a value of an unexpected type, a missing required key) it leaves to
/// `JSONDecoder` by returning nil, so the two never disagree on what is accepted.
struct JobSpecReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// The spec, or nil when the document needs `JSONDecoder` to decide.
    static func read(_ json: [UInt8]) -> JobSpec? {
        json.withUnsafeBufferPointer { buffer in
            var reader = JobSpecReader(buffer)
            return reader.spec()
        }
    }

    private struct Invalid: Error {}

    private mutating func spec() -> JobSpec? {
        var version: Int?
        var user: String?
        var tier: JobSpec.Tier?
        var kind: JobSpec.Kind?
        var prompt: String?
        var spec = JobSpec(user: "", prompt: "")
        // Keys read so far, one bit each: a key given twice goes to JSONDecoder (which keeps the
        // first, where the queue's functions keep the last).
        var seen: UInt16 = 0
        func mark(_ bit: UInt16) throws {
            guard seen & (1 << bit) == 0 else { throw Invalid() }
            seen |= 1 << bit
        }
        do {
            try expect(UInt8(ascii: "{"))
            var first = true
            while true {
                skipSpace()
                if peek() == UInt8(ascii: "}") {
                    index += 1
                    break
                }
                if !first { try expect(UInt8(ascii: ",")) }
                first = false
                let key = try string()
                try expect(UInt8(ascii: ":"))
                switch key {
                case "version":
                    try mark(0)
                    version = try integer()
                case "user":
                    try mark(1)
                    user = try string()
                case "tier":
                    try mark(2)
                    tier = JobSpec.Tier(rawValue: try string())
                case "kind":
                    try mark(3)
                    kind = JobSpec.Kind(rawValue: try string())
                case "prompt":
                    try mark(4)
                    prompt = try string()
                case "model":
                    try mark(5)
                    spec.model = try optional { try $0.string() }
                case "size":
                    try mark(6)
                    spec.size = try optional { try $0.string() }
                case "n":
                    try mark(7)
                    spec.n = try optional { try $0.integer() }
                case "quality":
                    try mark(8)
                    spec.quality = try optional { try $0.string() }
                case "output_format":
                    try mark(9)
                    spec.outputFormat = try optional { try $0.string() }
                case "inputs":
                    try mark(10)
                    spec.inputs = try optional { try $0.strings() }
                case "mask":
                    try mark(11)
                    spec.mask = try optional { try $0.string() }
                case "webhook_url":
                    try mark(12)
                    spec.webhookURL = try optional { try $0.string() }
                case "metadata":
                    try mark(13)
                    spec.metadata = try optional { try $0.stringMap() }
                default: try skipValue()
                }
            }
            skipSpace()
            guard index == bytes.count else { return nil }
        } catch {
            return nil
        }
        guard let version, let user, let tier, let kind, let prompt else { return nil }
        spec.version = version
        spec.user = user
        spec.tier = tier
        spec.kind = kind
        spec.prompt = prompt
        return spec
    }

    // MARK: Values

    private mutating func optional<T>(_ value: (inout JobSpecReader) throws -> T) throws -> T? {
        skipSpace()
        if peek() == UInt8(ascii: "n") {
            try literal("null")
            return nil
        }
        return try value(&self)
    }

    private mutating func strings() throws -> [String] {
        try expect(UInt8(ascii: "["))
        var values: [String] = []
        skipSpace()
        if peek() == UInt8(ascii: "]") {
            index += 1
            return values
        }
        while true {
            values.append(try string())
            skipSpace()
            guard let next = take() else { throw Invalid() }
            if next == UInt8(ascii: "]") { return values }
            guard next == UInt8(ascii: ",") else { throw Invalid() }
        }
    }

    private mutating func stringMap() throws -> [String: String] {
        try expect(UInt8(ascii: "{"))
        var values: [String: String] = [:]
        skipSpace()
        if peek() == UInt8(ascii: "}") {
            index += 1
            return values
        }
        while true {
            let key = try string()
            try expect(UInt8(ascii: ":"))
            values[key] = try string()
            skipSpace()
            guard let next = take() else { throw Invalid() }
            if next == UInt8(ascii: "}") { return values }
            guard next == UInt8(ascii: ",") else { throw Invalid() }
        }
    }

    /// A whole number written without a fraction or exponent (anything else goes to `JSONDecoder`).
    private mutating func integer() throws -> Int {
        skipSpace()
        var negative = false
        if peek() == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        var value = 0
        var digits = 0
        while let byte = peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
            guard digits < 18 else { throw Invalid() }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
            digits += 1
            index += 1
        }
        guard digits > 0, !(digits > 1 && bytes[index - digits] == UInt8(ascii: "0")) else { throw Invalid() }
        if let byte = peek(), byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
            throw Invalid()
        }
        return negative ? -value : value
    }

    /// A string; escapes are decoded, `\u` ones with their surrogate pairs.
    private mutating func string() throws -> String {
        try expect(UInt8(ascii: "\""))
        let start = index
        // The common case: no escapes, so the bytes are the string.
        while let byte = peek(), byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
            guard byte >= 0x20 else { throw Invalid() }
            index += 1
        }
        guard let stop = peek() else { throw Invalid() }
        if stop == UInt8(ascii: "\"") {
            index += 1
            return try text(UnsafeBufferPointer(rebasing: bytes[start..<index - 1]))
        }
        var out = Array(bytes[start..<index])
        while true {
            guard let byte = take() else { throw Invalid() }
            switch byte {
            case UInt8(ascii: "\""):
                return try out.withUnsafeBufferPointer { try text($0) }
            case UInt8(ascii: "\\"):
                guard let escape = take() else { throw Invalid() }
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"): appendUTF8(try unicodeScalar(), to: &out)
                default: throw Invalid()
                }
            default:
                guard byte >= 0x20 else { throw Invalid() }
                out.append(byte)
            }
        }
    }

    /// Valid UTF-8 as a String; invalid bytes go to `JSONDecoder`.
    private func text(_ utf8: UnsafeBufferPointer<UInt8>) throws -> String {
        guard let string = String(validating: utf8, as: UTF8.self) else { throw Invalid() }
        return string
    }

    /// The scalar of a `\uXXXX` escape (the `\u` already read), joining a surrogate pair.
    private mutating func unicodeScalar() throws -> Unicode.Scalar {
        let high = try hex4()
        if (0xD800...0xDBFF).contains(high) {
            guard take() == UInt8(ascii: "\\"), take() == UInt8(ascii: "u") else { throw Invalid() }
            let low = try hex4()
            guard (0xDC00...0xDFFF).contains(low),
                let scalar = Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
            else { throw Invalid() }
            return scalar
        }
        guard let scalar = Unicode.Scalar(high) else { throw Invalid() }
        return scalar
    }

    private mutating func hex4() throws -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = take() else { throw Invalid() }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw Invalid()
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    private func appendUTF8(_ scalar: Unicode.Scalar, to out: inout [UInt8]) {
        out.append(contentsOf: UTF8.encode(scalar)!)
    }

    /// Skips a value of an unknown key: only strings, literals and flat numbers are read here;
    /// an unknown key holding an array or object goes to `JSONDecoder`.
    private mutating func skipValue() throws {
        skipSpace()
        switch peek() {
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default: _ = try integer()
        }
    }

    // MARK: Bytes

    private mutating func literal(_ word: StaticString) throws {
        skipSpace()
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw Invalid() }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { throw Invalid() }
        index += count
    }

    private mutating func expect(_ byte: UInt8) throws {
        skipSpace()
        guard take() == byte else { throw Invalid() }
    }

    private mutating func skipSpace() {
        while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
    }

    private func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    private mutating func take() -> UInt8? {
        guard index < bytes.count else { return nil }
        defer { index += 1 }
        return bytes[index]
    }
}

extension JobSpec {
    /// Reads a spec from its JSON: the fast reader for the usual document, `JSONDecoder` for the rest.
    public static func decode(json: [UInt8]) throws -> JobSpec {
        if let spec = JobSpecReader.read(json) { return spec }
        return try JSONDecoder().decode(JobSpec.self, from: Data(json))
    }
}
