import Foundation
import JobQueue
import Testing

@Suite("Canonical result JSON")
struct CanonicalJSONTests {
    static let results: [JobResult] = [
        JobResult(
            outputs: [OutputReference(key: "output:000000000001:0", format: "png", width: 8, height: 8, bytes: 91)],
            usage: .init(images: 1, size: "8x8", model: "gpt-image-1", inputTokens: 12, outputTokens: 0),
            durations: .init(ingestMS: 0, backendMS: 201, storeMS: 1)),
        JobResult(
            outputs: [], usage: .init(images: 0, size: "auto", model: "m"),
            durations: .init(ingestMS: -1, backendMS: Int.max, storeMS: Int.min)),
        JobResult(
            outputs: (0..<3).map {
                OutputReference(key: "a/b\\c\"d\($0)", format: "jpeg", width: 1024, height: 768, bytes: 1 << 20)
            },
            usage: .init(
                images: 3, size: "1024x768", model: "tabs\tnew\nlines\r\u{8}\u{C}\u{1}\u{1F} é 漢字 🙂",
                inputTokens: nil, outputTokens: 4096),
            durations: .init(ingestMS: 12, backendMS: 3, storeMS: 4)),
    ]

    @Test("the bytes are JSONEncoder's with sorted keys and unescaped slashes", arguments: results.indices)
    func sameBytesAsJSONEncoder(index: Int) throws {
        let result = Self.results[index]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let expected = Array(try encoder.encode(result))
        let written = result.canonicalJSON()
        #expect(String(decoding: written, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
        #expect(try JSONDecoder().decode(JobResult.self, from: Data(written)) == result)
    }
}

@Suite("Canonical spec JSON")
struct CanonicalSpecJSONTests {
    static let specs: [JobSpec] = [
        JobSpec(user: "u1", prompt: "a cat"),
        JobSpec(
            user: "team:alice@example.com", tier: .pro, kind: .edit, prompt: "make it \"blue\"\n/ no \\ slashes",
            model: "gpt-image-1", size: "1024x1536", n: 3, quality: "high", outputFormat: "jpeg",
            inputs: ["upload:a", "upload:b"], mask: "upload:m", webhookURL: "https://hooks.example.com/x?y=1",
            metadata: ["order": "42", "b": "2", "a": "é 漢字 🙂", "Z": "\u{1}"]),
        JobSpec(user: "x", tier: .free, prompt: "p", inputs: [], metadata: [:]),
    ]

    @Test("the bytes are JSONEncoder's with sorted keys and unescaped slashes", arguments: specs.indices)
    func sameBytesAsJSONEncoder(index: Int) throws {
        let spec = Self.specs[index]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let expected = String(decoding: try encoder.encode(spec), as: UTF8.self)
        let written = spec.canonicalJSON()
        #expect(String(decoding: written, as: UTF8.self) == expected)
        #expect(try JSONDecoder().decode(JobSpec.self, from: Data(written)) == spec)
    }
}
