import CImageShim

/// PNG decoding to and encoding from ``RGBAImage``, through libpng.
///
/// Both calls are synchronous and CPU-bound: run them on a ``BlockingThreadPool`` (or another
/// thread of your own), never directly on Swift's cooperative pool.
public enum PNGCodec {
    /// Decodes a PNG to 8-bit RGBA.
    ///
    /// Every PNG colour type and bit depth is converted: palette and grey expand to RGB, `tRNS`
    /// becomes alpha, 16-bit samples are reduced to 8 bits (rounded). `gAMA`, `cHRM` and `sBIT` are
    /// ignored: the samples are the file's own, taken as sRGB unless an `iCCP` profile says otherwise
    /// (as most image libraries and browsers do). The header is checked against `limits` before any pixel memory is allocated. Critical
    /// chunks with a bad CRC, missing image data and invalid headers are errors. Ancillary chunks
    /// (text, EXIF, ICC, time) are ignored and do not survive a decode/encode round trip; use
    /// ``decodeWithMetadata(_:limits:)`` to read the ICC profile and EXIF orientation.
    ///
    /// - Throws: ``IngestError`` (``IngestError/Code/corrupt``, ``IngestError/Code/truncated``,
    ///   ``IngestError/Code/tooManyPixels``, ``IngestError/Code/badDimensions``,
    ///   ``IngestError/Code/tooLarge``, ``IngestError/Code/empty``).
    public static func decode(_ bytes: [UInt8], limits: IngestLimits = .init()) throws -> RGBAImage {
        try decode(bytes, limits: limits, metadata: false).image
    }

    /// Decodes a PNG to 8-bit RGBA like ``decode(_:limits:)`` (the pixels are identical), and also
    /// returns the `iCCP` profile and the orientation of an `eXIf` chunk.
    ///
    /// The orientation is not applied and the profile is not used to convert the pixels.
    /// ``DecodedImage/isCMYK`` is always `false`.
    ///
    /// - Throws: the errors of ``decode(_:limits:)``.
    public static func decodeWithMetadata(_ bytes: [UInt8], limits: IngestLimits = .init()) throws -> DecodedImage {
        try decode(bytes, limits: limits, metadata: true)
    }

    private static func decode(_ bytes: [UInt8], limits: IngestLimits, metadata: Bool) throws -> DecodedImage {
        guard !bytes.isEmpty else { throw IngestError(.empty, "no PNG data") }
        guard bytes.count <= limits.maxBytes else {
            throw IngestError(.tooLarge, "the PNG is \(bytes.count) bytes; the limit is \(limits.maxBytes)")
        }
        let bounds = limits.shimValues
        var output = ig_image_out()
        var meta = ig_image_meta()
        let result = IngestError.callShim { errbuf, errlen in
            bytes.withUnsafeBufferPointer { input in
                if metadata {
                    ig_png_decode_rgba_meta(
                        input.baseAddress, input.count, bounds.width, bounds.height, bounds.pixels, &output,
                        &meta, errbuf, errlen)
                } else {
                    ig_png_decode_rgba(
                        input.baseAddress, input.count, bounds.width, bounds.height, bounds.pixels, &output,
                        errbuf, errlen)
                }
            }
        }
        defer {
            ig_free(output.pixels)
            ig_free(meta.icc)
        }
        guard result.code == IG_OK.rawValue, let pixels = output.pixels else {
            throw IngestError(shimCode: result.code, message: result.message)
        }
        let width = Int(output.width)
        let height = Int(output.height)
        return DecodedImage(
            image: RGBAImage(
                width: width, height: height, pixels: Array(UnsafeBufferPointer(start: pixels, count: output.length))),
            orientation: metadata ? Int(meta.orientation) : 1,
            iccProfile: meta.icc.map { Array(UnsafeBufferPointer(start: $0, count: meta.icc_length)) },
            isCMYK: false, sourceWidth: width, sourceHeight: height)
    }

    /// Encodes an image as an 8-bit PNG with no metadata.
    ///
    /// - Parameters:
    ///   - keepAlpha: `true` writes RGBA; `false` drops the alpha channel and writes RGB.
    ///   - options: the zlib level and strategy.
    /// - Throws: ``IngestError`` with ``IngestError/Code/badDimensions`` when the size is empty or
    ///   does not match `pixels.count`, ``IngestError/Code/tooManyPixels`` or
    ///   ``IngestError/Code/tooLarge`` when it cannot be encoded.
    public static func encode(
        _ image: RGBAImage, keepAlpha: Bool = true, options: PNGEncoding = .init()
    ) throws -> [UInt8] {
        let (pixelCount, overflow) = image.width.multipliedReportingOverflow(by: image.height)
        guard image.width > 0, image.height > 0, image.width <= Int(Int32.max), image.height <= Int(Int32.max),
            !overflow, pixelCount <= Int.max / 4, pixelCount * 4 == image.pixels.count
        else {
            throw IngestError(
                .badDimensions, "cannot encode \(image.pixels.count) bytes as a \(image.width)x\(image.height) image")
        }
        var output = ig_buffer()
        var shimOptions = ig_png_encode_options(
            level: Int32(min(9, max(0, options.level))), strategy: options.strategy.shimValue,
            threads: Int32(min(2, max(1, options.threads))))
        let result = IngestError.callShim { errbuf, errlen in
            image.pixels.withUnsafeBufferPointer { pixels in
                ig_png_encode_rgba(
                    pixels.baseAddress, UInt32(image.width), UInt32(image.height), keepAlpha ? 1 : 0, &shimOptions,
                    &output, errbuf, errlen)
            }
        }
        guard result.code == IG_OK.rawValue, let data = output.data else {
            ig_free(output.data)
            throw IngestError(shimCode: result.code, message: result.message)
        }
        defer { ig_free(data) }
        return Array(UnsafeBufferPointer(start: data, count: output.length))
    }
}

/// How ``PNGCodec`` compresses: the zlib level and how the encoder chooses between run-length
/// coding and full deflate.
public struct PNGEncoding: Sendable, Hashable {
    /// How the pixel data is compressed.
    public enum Strategy: String, Sendable, Hashable, CaseIterable {
        /// Per image, from a sample of its rows compressed both ways: run-length coding when it is at
        /// least as small as deflate (photographs, renders), deflate otherwise (screenshots, text, flat
        /// art). Images under 65,536 pixels are deflated without a sample. The default.
        case automatic
        /// zlib's run-length strategy over Paeth-filtered rows. Several times faster than deflate and
        /// as small on photographs; much larger on screenshots. ``PNGEncoding/level`` only decides
        /// between stored (0) and compressed (1–9).
        case runLength = "rle"
        /// Full deflate at ``PNGEncoding/level`` over adaptively filtered rows.
        case deflate

        var shimValue: Int32 {
            switch self {
            case .automatic: Int32(IG_PNG_STRATEGY_AUTOMATIC.rawValue)
            case .runLength: Int32(IG_PNG_STRATEGY_RLE.rawValue)
            case .deflate: Int32(IG_PNG_STRATEGY_DEFLATE.rawValue)
            }
        }
    }

    /// The zlib level, 0–9 (values outside are clamped): 0 stores the rows uncompressed, 9 compresses
    /// hardest. Default 6. Images of at most 512 bytes of row data (an 8×8 RGBA image) are always
    /// stored: deflate's table setup costs about 10 µs whatever the size, to save a few hundred bytes.
    public var level: Int
    /// Default ``Strategy/automatic``.
    public var strategy: Strategy
    /// Threads compressing one image of at least 2^18 pixels: 2 (the default) filters and
    /// compresses its two halves at once, concatenated into one zlib stream; 1 uses the calling
    /// thread only.
    public var threads: Int

    /// Creates PNG encoding options; the defaults are level 6, automatic strategy, 2 threads.
    public init(level: Int = 6, strategy: Strategy = .automatic, threads: Int = 2) {
        self.level = level
        self.strategy = strategy
        self.threads = threads
    }
}
