import Foundation
import ImageIngest

/// The bodies of OpenAI Images API calls, built as pure functions of the request so their exact
/// bytes can be checked without a network.
public enum OpenAIRequestBody {
    /// Provider options that are not part of an ``ImageRequest``.
    public struct Options: Sendable, Equatable {
        /// `moderation`: `auto` or `low`. Nil leaves it out. Generations only.
        public var moderation: String?
        /// `background`: `auto`, `transparent` or `opaque`. Nil leaves it out.
        public var background: String?
        /// `output_compression` (0...100) for JPEG and WebP outputs. Nil leaves it out.
        public var outputCompression: Int?

        /// Creates options; every argument defaults to nil (left out of the body).
        public init(moderation: String? = nil, background: String? = nil, outputCompression: Int? = nil) {
            self.moderation = moderation
            self.background = background
            self.outputCompression = outputCompression
        }
    }

    private struct Generation: Encodable {
        var model: String
        var prompt: String
        var n: Int
        var size: String
        var quality: String
        var output_format: String
        var moderation: String?
        var background: String?
        var output_compression: Int?
        var user: String
    }

    /// The JSON body of `POST /images/generations`, keys sorted, optional keys left out when nil.
    ///
    /// `user` is the request's ``ImageRequest/userHash``, never the raw user id.
    public static func generation(_ request: ImageRequest, options: Options = .init()) -> [UInt8] {
        let body = Generation(
            model: request.model, prompt: request.prompt, n: request.count, size: size(request),
            quality: request.quality, output_format: request.outputFormat, moderation: options.moderation,
            background: options.background, output_compression: options.outputCompression, user: request.userHash)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding strings and integers cannot fail.
        return Array((try? encoder.encode(body)) ?? Data())
    }

    /// The `multipart/form-data` body of `POST /images/edits`.
    ///
    /// Text fields first (`model`, `prompt`, `n`, `size`, `quality`, `output_format`, then
    /// `background` and `output_compression` when set, then `user`), then one `image[]` part per
    /// input named `image-<i>.png` or `image-<i>.jpg` with its content type, then the `mask` part
    /// (`mask.png`) when there is one. Use ``contentType(boundary:)`` for the header.
    public static func edit(_ request: ImageRequest, options: Options = .init(), boundary: String) -> [UInt8] {
        var fields: [(String, String)] = [
            ("model", request.model), ("prompt", request.prompt), ("n", String(request.count)),
            ("size", size(request)), ("quality", request.quality), ("output_format", request.outputFormat),
        ]
        if let background = options.background { fields.append(("background", background)) }
        if let compression = options.outputCompression { fields.append(("output_compression", String(compression))) }
        fields.append(("user", request.userHash))

        var body: [UInt8] = []
        func append(_ text: String) { body.append(contentsOf: Array(text.utf8)) }
        for (name, value) in fields {
            append("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n")
        }
        func appendFile(name: String, filename: String, image: IngestedImage) {
            append("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(filename)\"\r\n")
            append("Content-Type: \(mediaType(image.format))\r\n\r\n")
            body.append(contentsOf: image.bytes)
            append("\r\n")
        }
        for (index, image) in request.inputs.enumerated() {
            appendFile(name: "image[]", filename: "image-\(index).\(fileExtension(image.format))", image: image)
        }
        if let mask = request.mask {
            appendFile(name: "mask", filename: "mask.\(fileExtension(mask.format))", image: mask)
        }
        append("--\(boundary)--\r\n")
        return body
    }

    /// `multipart/form-data; boundary=<boundary>`.
    public static func contentType(boundary: String) -> String { "multipart/form-data; boundary=\(boundary)" }

    /// A fresh boundary: `imagegen-` and 32 random hex digits, which no image or field can contain by chance.
    public static func makeBoundary() -> String {
        var generator = SystemRandomNumberGenerator()
        let hex = (0..<2).map { _ in String(generator.next() as UInt64, radix: 16) }
        return "imagegen-" + hex.map { String(repeating: "0", count: 16 - $0.count) + $0 }.joined()
    }

    /// `WxH`.
    public static func size(_ request: ImageRequest) -> String { "\(request.width)x\(request.height)" }

    /// `image/png` or `image/jpeg`.
    static func mediaType(_ format: String) -> String { format == "jpeg" ? "image/jpeg" : "image/png" }

    /// `png` or `jpg`.
    static func fileExtension(_ format: String) -> String { format == "jpeg" ? "jpg" : "png" }
}
