/// Validates and normalizes uploaded images before they reach a model backend.
///
/// For each input, in order:
/// 1. empty input is refused (``IngestError/Code/empty``);
/// 2. input over ``IngestLimits/maxBytes`` is refused before anything else looks at it
///    (``IngestError/Code/tooLarge``);
/// 3. the format is sniffed from the magic bytes; anything but PNG and JPEG is refused as
///    ``IngestError/Code/unsupportedFormat`` naming what was found, and a mask must be a PNG;
/// 4. the header is read and the size limits applied, so an oversized image is refused without
///    being decoded (``IngestError/Code/tooManyPixels``, ``IngestError/Code/badDimensions``);
/// 5. an animated PNG (APNG, an `acTL` chunk before the image data) is refused as
///    ``IngestError/Code/animated``: models take still images, and keeping only the first frame
///    would silently change what the user sent;
/// 6. a PNG is decoded and re-encoded as PNG, which drops every ancillary chunk (text, EXIF, time,
///    ICC) and validates the whole stream; the alpha channel is kept only for masks and for images
///    that are not fully opaque;
/// 7. a JPEG is checked up to its frame and scan headers (sample precision must be 8 bits) and
///    passed through unchanged. Full JPEG decoding (with metadata stripping, ICC conversion and
///    EXIF orientation) will replace this pass-through.
///
/// The codec work runs on the ingestor's own ``BlockingThreadPool``, never on Swift's cooperative
/// pool. Copies of an ingestor share that pool.
public struct ImageIngestor: Sendable {
    /// The limits applied to every input.
    public let limits: IngestLimits
    private let pool: BlockingThreadPool

    /// Creates an ingestor with `threads` codec threads (at least one).
    public init(limits: IngestLimits = .init(), threads: Int = 2) {
        self.limits = limits
        self.pool = BlockingThreadPool(threads: threads)
    }

    /// Validates and normalizes one uploaded image.
    ///
    /// - Throws: ``IngestError`` for an input that is refused, or `CancellationError` when the task
    ///   is canceled before the codec work starts.
    public func ingest(_ bytes: [UInt8], role: IngestRole) async throws -> IngestedImage {
        let limits = self.limits
        guard !bytes.isEmpty else {
            throw IngestError(.empty, "the \(role.rawValue) is empty")
        }
        guard bytes.count <= limits.maxBytes else {
            throw IngestError(
                .tooLarge, "the \(role.rawValue) is \(bytes.count) bytes; the limit is \(limits.maxBytes)")
        }
        let format = ImageFormat(sniffing: bytes)
        guard format.isSupported else {
            let found = format == .unknown ? "an unrecognised format" : format.rawValue.uppercased()
            throw IngestError(.unsupportedFormat, "the \(role.rawValue) is \(found); only PNG and JPEG are supported")
        }
        if role == .mask && format != .png {
            throw IngestError(.unsupportedFormat, "the mask is \(format.rawValue.uppercased()); a mask must be a PNG")
        }
        return try await pool.run {
            try Self.normalize(bytes, role: role, limits: limits)
        }
    }

    /// Throws ``IngestError/Code/maskMismatch`` unless `mask` has the size of `image`.
    public static func checkMask(_ mask: IngestedImage, matches image: IngestedImage) throws {
        guard mask.width == image.width, mask.height == image.height else {
            throw IngestError(
                .maskMismatch,
                "the mask is \(mask.width)x\(mask.height) but the image is \(image.width)x\(image.height)")
        }
    }

    /// The synchronous part of ``ingest(_:role:)``; runs on the pool.
    static func normalize(_ bytes: [UInt8], role: IngestRole, limits: IngestLimits) throws -> IngestedImage {
        let header = try ImageHeader(reading: bytes)
        try limits.check(width: header.width, height: header.height)
        switch header.format {
        case .png:
            guard !header.isAnimated else {
                throw IngestError(.animated, "animated PNGs are not supported; upload a still image")
            }
            let image = try PNGCodec.decode(bytes, limits: limits)
            let keepAlpha = role == .mask || !image.isOpaque
            let encoded = try PNGCodec.encode(image, keepAlpha: keepAlpha)
            return IngestedImage(
                format: "png", width: image.width, height: image.height, bytes: encoded,
                originalByteCount: bytes.count)
        case .jpeg:
            guard header.bitDepth == 8 else {
                throw IngestError(
                    .unsupportedFormat, "\(header.bitDepth)-bit JPEGs are not supported; use an 8-bit JPEG or a PNG")
            }
            try JPEGHeader.validate(bytes)
            return IngestedImage(
                format: "jpeg", width: header.width, height: header.height, bytes: bytes,
                originalByteCount: bytes.count)
        default:
            throw IngestError(.unsupportedFormat, "\(header.format.rawValue) images are not supported")
        }
    }
}
