import Foundation
import ImageIngest
import Testing

@testable import Backends

@Suite("OpenAI answer decoding")
struct OpenAIAnswerDecoderTests {
    private func png(_ width: Int, _ height: Int, red: UInt8 = 200) throws -> [UInt8] {
        try PNGCodec.encode(RGBAImage(width: width, height: height, red: red), keepAlpha: false)
    }

    private func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    @Test("base64 decodes what Foundation encodes, every length and byte")
    func base64RoundTrip() {
        var generator = SystemRandomNumberGenerator()
        for length in 0...200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(Base64.decode(Array(base64(bytes).utf8)) == bytes, "length \(length)")
        }
        let all = (0...255).map { UInt8($0) }
        #expect(Base64.decode(Array(base64(all).utf8)) == all)
    }

    @Test(
        "base64 refuses what is not whole padded groups of the alphabet",
        arguments: [
            "QQ", "QQ=", "QUJD\n", "QU JD", "QU=D", "=QUJ", "QUJD====", "QUJ-", "QUJ_", "Q===", "QUJD\u{00e9}",
        ])
    func base64Refuses(_ text: String) {
        #expect(Base64.decode(Array(text.utf8)) == nil)
    }

    @Test("the scan finds each image's text, and answers the same as the plain decoding")
    func scanMatchesPlainDecoding() throws {
        let first = try png(8, 4)
        let second = try png(3, 5, red: 10)
        let documents = [
            #"{"data":[{"b64_json":"\#(base64(first))"}]}"#,
            #"{"created":1,"data":[{"b64_json":"\#(base64(first))","revised_prompt":"a \"b64_json\": \"x\""},{"b64_json" :  "\#(base64(second))"}],"usage":{"input_tokens":12,"output_tokens":34}}"#,
            "{\n  \"data\": [\n    {\n      \"b64_json\":\t\"\(base64(first))\"\n    }\n  ]\n}\n",
            #"{"usage":{"input_tokens":1},"data":[{"url":null,"b64_json":"\#(base64(second))"}]}"#,
        ]
        for document in documents {
            let body = Array(document.utf8)
            let ranges = try #require(OpenAIAnswerDecoder.imageTextRanges(in: body))
            #expect(ranges.allSatisfy { !$0.isEmpty })
            let response = try OpenAIAnswerDecoder.decode(body)
            #expect(response.images.count == ranges.count)
            #expect(response.images.first?.bytes == (document.contains(base64(first)) ? first : second))
            #expect(response.images.allSatisfy { $0.format == "png" })
        }
        let usage = try OpenAIAnswerDecoder.decode(Array(documents[1].utf8))
        #expect(usage.images.map(\.width) == [8, 3])
        #expect(usage.inputTokens == 12 && usage.outputTokens == 34)
    }

    @Test("answers the scan does not take are decoded the plain way")
    func plainFallback() throws {
        let image = try png(6, 6)
        let text = base64(image)
        let escaped = String(format: "\\u%04x", Int(text.utf8.first!)) + text.dropFirst()
        // A text with an escape (valid JSON), and a b64_json member outside data.
        let documents = [
            #"{"data":[{"b64_json":"\#(escaped)"}]}"#,
            #"{"data":[{"b64_json":"\#(base64(image))"}],"usage":{"b64_json":"QUJD"}}"#,
        ]
        #expect(OpenAIAnswerDecoder.imageTextRanges(in: Array(documents[0].utf8)) == nil)
        for document in documents {
            let response = try OpenAIAnswerDecoder.decode(Array(document.utf8))
            #expect(response.images.count == 1)
            #expect(response.images[0].bytes == image)
        }
    }

    @Test(
        "bad answers are unavailable",
        arguments: [
            #"{"data":[]}"#, #"{"data":[{"b64_json":"!!!!"}]}"#, #"{"data":[{"b64_json":"QUJD"}]}"#, #"{"data":[{}]}"#,
            #"{"data":[{"b64_json":"QUJD"#, "not json", "",
        ])
    func badAnswers(_ document: String) {
        #expect {
            _ = try OpenAIAnswerDecoder.decode(Array(document.utf8))
        } throws: { error in
            (error as? BackendError)?.code == .unavailable
        }
    }
}
