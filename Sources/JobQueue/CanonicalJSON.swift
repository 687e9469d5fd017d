/// Writes the canonical JSON the queue stores: keys in sorted order, no whitespace, slashes
/// unescaped: byte for byte what `JSONEncoder` writes with `[.sortedKeys, .withoutEscapingSlashes]`,
/// without its reflection and boxing (a result is written once per job, on the worker's hot path).
///
/// The caller writes the members of an object in sorted key order.
struct CanonicalJSONWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 0) {
        if capacity > 0 { bytes.reserveCapacity(capacity) }
    }

    /// Writes `{`, then `members` (which writes the members, keys in sorted order), then `}`.
    mutating func object(_ members: (inout ObjectWriter) -> Void) {
        bytes.append(UInt8(ascii: "{"))
        // The buffer moves into the member writer and back, so appending never copies it.
        var writer = ObjectWriter(json: self)
        self = CanonicalJSONWriter()
        members(&writer)
        self = writer.json
        bytes.append(UInt8(ascii: "}"))
    }

    /// Writes `[`, `count` elements written by `element`, `]`.
    mutating func array(count: Int, _ element: (inout CanonicalJSONWriter, Int) -> Void) {
        bytes.append(UInt8(ascii: "["))
        for index in 0..<count {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            element(&self, index)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    mutating func integer(_ value: Int) {
        bytes.append(contentsOf: String(value).utf8)
    }

    /// A JSON string: `"` and `\` escaped, control characters as `\b \f \n \r \t` or `\u00xx`.
    mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        // The usual string needs no escape: its bytes go in as they are.
        if !value.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            bytes.append(contentsOf: value.utf8)
            bytes.append(UInt8(ascii: "\""))
            return
        }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x08: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: Array("\\u00".utf8))
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0x0F)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Writes the members of one object, with the commas between them.
    struct ObjectWriter {
        fileprivate var json: CanonicalJSONWriter
        private var first = true

        fileprivate init(json: CanonicalJSONWriter) {
            self.json = json
        }

        /// Writes `"key":` and then the value, written by `value`.
        mutating func member(_ key: String, _ value: (inout CanonicalJSONWriter) -> Void) {
            if !first { json.bytes.append(UInt8(ascii: ",")) }
            first = false
            json.string(key)
            json.bytes.append(UInt8(ascii: ":"))
            value(&json)
        }

        mutating func member(_ key: String, _ value: Int) { member(key) { $0.integer(value) } }
        /// Leaves the member out when `value` is nil, as `JSONEncoder` does.
        mutating func member(_ key: String, _ value: String?) {
            if let value { member(key, value) }
        }
        mutating func member(_ key: String, _ value: String) { member(key) { $0.string(value) } }
        /// Leaves the member out when `value` is nil, as `JSONEncoder` does.
        mutating func member(_ key: String, _ value: Int?) {
            if let value { member(key, value) }
        }
    }
}

extension JobResult {
    /// The result as the queue stores it: the canonical JSON (see ``CanonicalJSONWriter``), the same
    /// bytes `JSONEncoder` writes with sorted keys and unescaped slashes.
    public func canonicalJSON() -> [UInt8] {
        var writer = CanonicalJSONWriter(capacity: 200 + outputs.count * 120)
        writer.object { result in
            result.member("durations") { json in
                json.object { d in
                    d.member("backend_ms", durations.backendMS)
                    d.member("ingest_ms", durations.ingestMS)
                    d.member("store_ms", durations.storeMS)
                }
            }
            result.member("outputs") { json in
                json.array(count: outputs.count) { json, index in
                    let output = outputs[index]
                    json.object { o in
                        o.member("bytes", output.bytes)
                        o.member("format", output.format)
                        o.member("height", output.height)
                        o.member("key", output.key)
                        o.member("width", output.width)
                    }
                }
            }
            result.member("usage") { json in
                json.object { u in
                    u.member("images", usage.images)
                    u.member("input_tokens", usage.inputTokens)
                    u.member("model", usage.model)
                    u.member("output_tokens", usage.outputTokens)
                    u.member("size", usage.size)
                }
            }
        }
        return writer.bytes
    }
}

extension JobSpec {
    /// The spec as the queue stores it: the canonical JSON (see ``CanonicalJSONWriter``), the same
    /// bytes `JSONEncoder` writes with sorted keys and unescaped slashes; metadata keys in UTF-8 order.
    public func canonicalJSON() -> [UInt8] {
        var writer = CanonicalJSONWriter(capacity: 160 + prompt.utf8.count)
        writer.object { o in
            if let inputs {
                o.member("inputs") { json in
                    json.array(count: inputs.count) { json, index in json.string(inputs[index]) }
                }
            }
            o.member("kind", kind.rawValue)
            o.member("mask", mask)
            if let metadata {
                o.member("metadata") { json in
                    json.object { m in
                        for key in metadata.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                            m.member(key, metadata[key] ?? "")
                        }
                    }
                }
            }
            o.member("model", model)
            o.member("n", n)
            o.member("output_format", outputFormat)
            o.member("prompt", prompt)
            o.member("quality", quality)
            o.member("size", size)
            o.member("tier", tier.rawValue)
            o.member("user", user)
            o.member("version", version)
            o.member("webhook_url", webhookURL)
        }
        return writer.bytes
    }
}
