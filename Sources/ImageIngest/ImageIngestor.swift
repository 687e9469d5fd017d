/// How accepted images are normalized for the backend. Plain data with documented defaults.
public struct NormalizationOptions: Sendable, Hashable {
    /// The encoding of normalized images.
    public enum OutputFormat: Sendable, Hashable {
        /// PNG; alpha kept when the image has transparency.
        case png
        /// JPEG at `quality` (1–100) for opaque images; images with transparency stay PNG.
        case jpeg(quality: Int)
    }

    /// The size rule of the backend. Default: longer side at most 1536, never scaled up.
    public var fit: FitPolicy = .maxSide(1536)
    /// Default PNG.
    public var output: OutputFormat = .png
    /// How PNG outputs are compressed. Default zlib level 6, automatic strategy.
    public var png: PNGEncoding = .init()

    public init(fit: FitPolicy = .maxSide(1536), output: OutputFormat = .png, png: PNGEncoding = .init()) {
        self.fit = fit
        self.output = output
        self.png = png
    }
}

/// Validates and normalizes uploaded images before they reach a model backend.
///
/// For each input, in order:
/// 1. empty input is refused (``IngestError/Code/empty``);
/// 2. input over ``IngestLimits/maxBytes`` is refused before anything else looks at it
///    (``IngestError/Code/tooLarge``);
/// 3. the format is sniffed from the magic bytes, never the name or content type; anything but
///    PNG and JPEG is refused as ``IngestError/Code/unsupportedFormat`` naming what was found, and a
///    mask must be a PNG;
/// 4. the header is read and the size limits applied, so an oversized image is refused without a
///    pixel being decoded (``IngestError/Code/tooManyPixels``, ``IngestError/Code/badDimensions``);
///    a JPEG with more scans than ``IngestLimits/maxScans`` is refused before decoding
///    (``IngestError/Code/tooManyScans``), and so is a 12-bit JPEG;
/// 5. an animated PNG (APNG) is refused as ``IngestError/Code/animated``: models take still
///    images, and keeping only the first frame would silently change what the user sent;
/// 6. the image is decoded to 8-bit RGBA row by row — palette, gray, 16-bit, interlaced PNGs and
///    gray, CMYK and YCCK JPEGs alike — straight into the resampler, which fits it to the backend's
///    ``NormalizationOptions/fit`` (as it will stand upright) with a Lanczos-3 filter on
///    premultiplied alpha (never scaled up); a JPEG at least twice the target size is shrunk while
///    decoding (libjpeg's DCT scaling), CMYK rows are converted with the file's CMYK profile as they
///    come, and damage anywhere in the file (bad CRC, truncation, corrupt data) is refused;
/// 7. an embedded RGB or gray ICC profile is converted to sRGB on the resized image (untagged means
///    sRGB already; `gAMA` and `cHRM` are ignored);
/// 8. the EXIF orientation (JPEG APP1 or PNG `eXIf`) is applied;
/// 9. it is encoded anew (``NormalizationOptions/png``), which drops every piece of metadata: EXIF
///    (and GPS), XMP, IPTC, comments, text chunks and the ICC profile.
///
/// Trailing bytes after a JPEG's end marker or a PNG's `IEND` are ignored (they are never part of
/// the output). The codec work runs on the ingestor's own ``BlockingThreadPool``, never on Swift's
/// cooperative pool; its thread count bounds how many images are decoded at once, and a
/// ``Budget`` bounds how many pixels (so how much memory).
public struct ImageIngestor: Sendable {
    /// The limits applied to every input.
    public let limits: IngestLimits
    /// How accepted images are normalized.
    public let normalization: NormalizationOptions
    /// The pixels decoded at once, across every call.
    public let pixelBudget: Budget
    private let pool: BlockingThreadPool

    /// The default ``pixelBudget``: 80 megapixels, two images at the largest default size.
    public static let defaultPixelBudget = 80_000_000

    /// Creates an ingestor with `threads` codec threads (at least one): at most that many images
    /// are decoded at once, whatever the number of jobs, and at most `pixelBudget` pixels (an image
    /// larger than the budget is decoded alone).
    public init(
        limits: IngestLimits = .init(), normalization: NormalizationOptions = .init(), threads: Int = 2,
        pixelBudget: Int = ImageIngestor.defaultPixelBudget
    ) {
        self.limits = limits
        self.normalization = normalization
        self.pixelBudget = Budget(capacity: pixelBudget)
        self.pool = BlockingThreadPool(threads: threads)
    }

    /// Validates and normalizes one uploaded image.
    ///
    /// - Throws: ``IngestError`` for an input that is refused, or `CancellationError` when the task
    ///   is canceled before the codec work starts.
    public func ingest(_ bytes: [UInt8], role: IngestRole) async throws -> IngestedImage {
        let limits = self.limits
        let normalization = self.normalization
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
        // The declared size, read from the header alone: what the decode will cost at most (an
        // image over the limits is refused before any pixel is decoded).
        let pixels = (try? ImageHeader(reading: bytes)).map { min($0.width * $0.height, limits.maxPixels) } ?? 1
        return try await pixelBudget.withUnits(pixels) {
            try await pool.run {
                try Self.normalize(bytes, role: role, limits: limits, normalization: normalization)
            }
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
    static func normalize(
        _ bytes: [UInt8], role: IngestRole, limits: IngestLimits, normalization: NormalizationOptions
    ) throws -> IngestedImage {
        let header = try ImageHeader(reading: bytes)
        try limits.check(width: header.width, height: header.height)
        switch header.format {
        case .png:
            guard !header.isAnimated else {
                throw IngestError(.animated, "animated PNGs are not supported; upload a still image")
            }
        case .jpeg:
            guard header.bitDepth == 8 else {
                throw IngestError(
                    .unsupportedFormat, "\(header.bitDepth)-bit JPEGs are not supported; use an 8-bit JPEG or a PNG")
            }
        default:
            throw IngestError(.unsupportedFormat, "\(header.format.rawValue) images are not supported")
        }
        return try bytes.withUnsafeBufferPointer { input in
            try normalize(input, header: header, role: role, limits: limits, normalization: normalization)
        }
    }

    /// Decodes row by row straight into the resampler (a JPEG at least twice the target size shrinks
    /// while decoding), then colour-manages, turns upright and encodes the small result.
    private static func normalize(
        _ input: UnsafeBufferPointer<UInt8>, header: ImageHeader, role: IngestRole, limits: IngestLimits,
        normalization: NormalizationOptions
    ) throws -> IngestedImage {
        let decoder =
            header.format == .png
            ? try RowDecoder.png(input, limits: limits)
            : try RowDecoder.jpeg(input, limits: limits, rawCMYK: true)
        let orientation = ImageOrientation(rawValue: decoder.orientation) ?? .up
        let swaps = orientation.swapsDimensions
        // The fit applies to the upright image; the rows are resized as stored and turned afterwards.
        let upright = normalization.fit.targetSize(
            width: swaps ? decoder.sourceHeight : decoder.sourceWidth,
            height: swaps ? decoder.sourceWidth : decoder.sourceHeight)
        let target = swaps ? (width: upright.height, height: upright.width) : upright
        try decoder.startJPEG(targetWidth: target.width, targetHeight: target.height)

        // CMYK rows are converted to RGB with the file's CMYK profile, or naively without one.
        let cmykProfile: [UInt8]? = decoder.isCMYK ? (decoder.iccProfile ?? []) : nil
        var image: RGBAImage
        if decoder.width == target.width && decoder.height == target.height {
            image = try decoder.readImage()
            if let cmykProfile {
                image = try ColorConverter.toSRGB(image, iccProfile: cmykProfile, isCMYK: true)
            }
        } else {
            image = try resizeWhileDecoding(
                decoder, to: target, opaque: header.format == .jpeg, cmykProfile: cmykProfile)
        }
        // An RGB or gray profile is applied to the resized image: the same colours, far fewer pixels.
        if let profile = decoder.iccProfile, !decoder.isCMYK {
            image = try ColorConverter.toSRGB(image, iccProfile: profile)
        }
        if orientation != .up {
            image = orientation.applied(to: image)
        }

        let keepAlpha = role == .mask || !image.isOpaque
        let format: String
        let encoded: [UInt8]
        switch normalization.output {
        case .jpeg(let quality) where !keepAlpha:
            format = "jpeg"
            encoded = try JPEGCodec.encode(image, quality: quality)
        case .png, .jpeg:
            format = "png"
            encoded = try PNGCodec.encode(image, keepAlpha: keepAlpha, options: normalization.png)
        }
        return IngestedImage(
            format: format, width: image.width, height: image.height, bytes: encoded, originalByteCount: input.count,
            source: header, sourceOrientation: decoder.orientation, sourceHadICCProfile: decoder.iccProfile != nil)
    }

    /// Rows read from `decoder` in batches and fed to the resampler; every row is read, so damage at
    /// the end of the file is still found. The rows are decoded on a second thread, a few batches
    /// ahead of the resampler.
    private static func resizeWhileDecoding(
        _ decoder: RowDecoder, to target: (width: Int, height: Int), opaque: Bool, cmykProfile: [UInt8]?
    ) throws -> RGBAImage {
        let width = decoder.width
        let height = decoder.height
        let rowBytes = width * 4
        var convert: ((UnsafeMutableRawPointer, Int) throws(IngestError) -> Void)?
        if let cmykProfile {
            convert = { (batch, rows) throws(IngestError) in
                let cmyk = RGBAImage(
                    width: width, height: rows,
                    pixels: Array(UnsafeRawBufferPointer(start: batch, count: rows * rowBytes)))
                let rgb = try ColorConverter.toSRGB(cmyk, iccProfile: cmykProfile, isCMYK: true)
                rgb.pixels.withUnsafeBytes { batch.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
        }

        let prefetcher = RowPrefetcher(decoder: decoder, convert: convert)
        prefetcher.start()
        defer { prefetcher.stop() }
        let image = try Resampler.scale(
            inWidth: width, inHeight: height, outWidth: target.width, outHeight: target.height, opaque: opaque
        ) { row throws(IngestError) in try prefetcher.row(row) }
        try prefetcher.finish()
        return image
    }
}
