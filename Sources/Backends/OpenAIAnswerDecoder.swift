import Foundation
import ImageIngest

/// Reads an Images API answer, `{"data":[{"b64_json":"…"},…],"usage":{…}}`, into an
/// ``ImageResponse``.
///
/// An answer is mostly its images' base64 text, a megabyte or more each. Handing that text to
/// `JSONDecoder` would copy it twice more (into `Data`, then into a `String`) before the base64
/// decode copies it again, so the decoder finds each `b64_json` text in the body itself and
/// decodes it straight into the image's bytes. Everything else (the structure, the usage) is read
/// by `JSONDecoder` from a copy of the body whose `b64_json` texts are left empty. An answer the
/// scan does not understand (a `b64_json` text with an escape, or one outside `data`) is decoded
/// the plain way, with the same result.
enum OpenAIAnswerDecoder {
    private struct Answer: Decodable {
        struct Item: Decodable {
            var b64_json: String?
        }
        struct Usage: Decodable {
            var input_tokens: Int?
            var output_tokens: Int?
        }
        var data: [Item]
        var usage: Usage?
    }

    /// Decodes `body`; throws ``BackendError/Code/unavailable`` for anything but an answer with at
    /// least one base64 PNG or JPEG.
    static func decode(_ body: [UInt8]) throws -> ImageResponse {
        if let ranges = imageTextRanges(in: body) {
            var skeleton: [UInt8] = []
            skeleton.reserveCapacity(body.count - ranges.reduce(0) { $0 + $1.count })
            var position = 0
            for range in ranges {
                skeleton.append(contentsOf: body[position..<range.lowerBound])
                position = range.upperBound
            }
            skeleton.append(contentsOf: body[position...])
            let answer = try parse(skeleton)
            // Each image's text must be the one the scan found, in order; otherwise decode plainly.
            if answer.data.allSatisfy({ $0.b64_json == "" }) && answer.data.count == ranges.count {
                let images = try body.withUnsafeBufferPointer { buffer in
                    try ranges.enumerated().map { index, range in
                        try image(index, Base64.decode(UnsafeBufferPointer(rebasing: buffer[range])))
                    }
                }
                return try response(images, answer)
            }
        }
        let answer = try parse(body)
        let images = try answer.data.enumerated().map { index, item in
            try image(index, item.b64_json.flatMap { Base64.decode(Array($0.utf8)) })
        }
        return try response(images, answer)
    }

    private static func parse(_ json: [UInt8]) throws -> Answer {
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(json))
        } catch {
            throw BackendError(.unavailable, "the provider's answer is not the expected JSON")
        }
    }

    private static func image(_ index: Int, _ bytes: [UInt8]?) throws -> GeneratedImage {
        guard let bytes else {
            throw BackendError(.unavailable, "image \(index) of the provider's answer is not base64 data")
        }
        let header: ImageHeader
        do {
            header = try ImageHeader(reading: bytes)
        } catch {
            throw BackendError(.unavailable, "image \(index) of the provider's answer is not a PNG or JPEG")
        }
        return GeneratedImage(bytes: bytes, format: header.format.rawValue, width: header.width, height: header.height)
    }

    private static func response(_ images: [GeneratedImage], _ answer: Answer) throws -> ImageResponse {
        guard !images.isEmpty else { throw BackendError(.unavailable, "the provider's answer has no images") }
        return ImageResponse(
            images: images, inputTokens: answer.usage?.input_tokens, outputTokens: answer.usage?.output_tokens)
    }

    /// The ranges of the texts of every `"b64_json"` member, inside the quotes, in order; nil when
    /// one of them has an escape or the document ends inside a string.
    ///
    /// The scan steps from string to string (a quote inside a string is always escaped), so a key
    /// is only ever matched where a string starts.
    static func imageTextRanges(in body: [UInt8]) -> [Range<Int>]? {
        let key = Array(#""b64_json""#.utf8)
        return body.withUnsafeBufferPointer { buffer -> [Range<Int>]? in
            let count = buffer.count
            var ranges: [Range<Int>] = []
            var position = 0
            while let start = find(UInt8(ascii: "\""), in: buffer, from: position) {
                guard let end = stringEnd(in: buffer, openingAt: start) else { return nil }
                position = end + 1
                guard end - start + 1 == key.count, buffer[start..<position].elementsEqual(key) else { continue }
                // The key: whitespace, a colon, whitespace, then the text in quotes.
                var cursor = skipWhitespace(in: buffer, from: position)
                guard cursor < count, buffer[cursor] == UInt8(ascii: ":") else { return nil }
                cursor = skipWhitespace(in: buffer, from: cursor + 1)
                guard cursor < count, buffer[cursor] == UInt8(ascii: "\"") else { continue }
                guard let textEnd = find(UInt8(ascii: "\""), in: buffer, from: cursor + 1) else { return nil }
                if find(UInt8(ascii: "\\"), in: UnsafeBufferPointer(rebasing: buffer[..<textEnd]), from: cursor + 1)
                    != nil
                {
                    return nil
                }
                ranges.append(cursor + 1..<textEnd)
                position = textEnd + 1
            }
            return ranges
        }
    }

    /// The index of the quote closing the string whose opening quote is at `start`.
    private static func stringEnd(in buffer: UnsafeBufferPointer<UInt8>, openingAt start: Int) -> Int? {
        var position = start + 1
        while let quote = find(UInt8(ascii: "\""), in: buffer, from: position) {
            var backslashes = 0
            while quote - backslashes - 1 > start && buffer[quote - backslashes - 1] == UInt8(ascii: "\\") {
                backslashes += 1
            }
            if backslashes % 2 == 0 { return quote }
            position = quote + 1
        }
        return nil
    }

    private static func skipWhitespace(in buffer: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var position = start
        while position < buffer.count,
            [UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t")].contains(buffer[position])
        {
            position += 1
        }
        return position
    }

    /// The first index of `byte` at or after `start` (`memchr`, so long texts are crossed fast).
    private static func find(_ byte: UInt8, in buffer: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        guard start < buffer.count, let base = buffer.baseAddress else { return nil }
        guard let found = memchr(base + start, Int32(byte), buffer.count - start) else { return nil }
        return base.distance(to: found.assumingMemoryBound(to: UInt8.self))
    }
}

/// Standard base64 (RFC 4648 §4, with padding), decoded straight into bytes.
enum Base64 {
    /// The 6-bit value of each ASCII byte, or 0xFF for a byte outside the alphabet.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, character) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(character)] = UInt8(value)
        }
        return table
    }()

    /// The bytes `text` encodes; nil unless it is whole groups of four alphabet characters, the
    /// last one optionally padded with one or two `=`.
    static func decode(_ text: [UInt8]) -> [UInt8]? {
        text.withUnsafeBufferPointer { decode($0) }
    }

    /// The bytes `text` encodes; see ``decode(_:)-([UInt8])``.
    static func decode(_ text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let count = text.count
        guard count % 4 == 0 else { return nil }
        guard count > 0 else { return [] }
        let padding = text[count - 1] == UInt8(ascii: "=") ? (text[count - 2] == UInt8(ascii: "=") ? 2 : 1) : 0
        let length = count / 4 * 3 - padding
        var valid = true
        let bytes = values.withUnsafeBufferPointer { values in
            [UInt8](unsafeUninitializedCapacity: length) { output, initialized in
                var invalid: UInt8 = 0
                var out = 0
                var index = 0
                // Every group but the last one has no padding.
                let fullGroupsEnd = count - 4
                while index < fullGroupsEnd {
                    let a = values[Int(text[index])]
                    let b = values[Int(text[index + 1])]
                    let c = values[Int(text[index + 2])]
                    let d = values[Int(text[index + 3])]
                    invalid |= a | b | c | d
                    let group = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                    output[out] = UInt8(truncatingIfNeeded: group >> 16)
                    output[out + 1] = UInt8(truncatingIfNeeded: group >> 8)
                    output[out + 2] = UInt8(truncatingIfNeeded: group)
                    out += 3
                    index += 4
                }
                let a = values[Int(text[index])]
                let b = values[Int(text[index + 1])]
                let c = padding == 2 ? 0 : values[Int(text[index + 2])]
                let d = padding >= 1 ? 0 : values[Int(text[index + 3])]
                invalid |= a | b | c | d
                let group = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                output[out] = UInt8(truncatingIfNeeded: group >> 16)
                if padding < 2 { output[out + 1] = UInt8(truncatingIfNeeded: group >> 8) }
                if padding < 1 { output[out + 2] = UInt8(truncatingIfNeeded: group) }
                initialized = length
                // A value of 0xFF has its top bit set; valid values are below 64.
                valid = invalid & 0x80 == 0
            }
        }
        return valid ? bytes : nil
    }
}
