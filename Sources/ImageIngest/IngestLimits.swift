/// Bounds applied to every input before it is decoded.
///
/// The byte limit is checked before anything else; the size limits are checked against the
/// image header, so an oversized image is refused without allocating its pixels.
public struct IngestLimits: Sendable, Equatable {
    /// The largest encoded input accepted, in bytes. Default 50,000,000.
    public var maxBytes: Int
    /// The widest image accepted, in pixels. Default 16,384.
    public var maxWidth: Int
    /// The tallest image accepted, in pixels. Default 16,384.
    public var maxHeight: Int
    /// The most pixels (width × height) accepted. Default 40,000,000 (160 MB as RGBA8).
    public var maxPixels: Int
    /// The most scans (SOS markers) a JPEG may contain. Default 64.
    ///
    /// A progressive JPEG is decoded in one pass over the whole image per scan, and a stream can
    /// repeat scans thousands of times; the scans are counted before any of them is decoded.
    public var maxScans: Int

    /// Creates limits; every argument defaults to the documented default.
    public init(
        maxBytes: Int = 50_000_000, maxWidth: Int = 16_384, maxHeight: Int = 16_384,
        maxPixels: Int = 40_000_000, maxScans: Int = 64
    ) {
        self.maxBytes = maxBytes
        self.maxWidth = maxWidth
        self.maxHeight = maxHeight
        self.maxPixels = maxPixels
        self.maxScans = maxScans
    }
}

extension IngestLimits {
    /// Throws unless `width × height` is a non-empty size within the limits.
    func check(width: Int, height: Int) throws(IngestError) {
        guard width > 0, height > 0 else {
            throw IngestError(.badDimensions, "the image is \(width)x\(height)")
        }
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, width <= maxWidth, height <= maxHeight, pixels <= maxPixels else {
            throw IngestError(
                .tooManyPixels,
                "the image is \(width)x\(height); the limit is \(maxWidth)x\(maxHeight) and \(maxPixels) pixels")
        }
    }

    /// The limits as the C codecs take them (0 means unlimited there, so clamp to at least 1).
    var shimValues: (width: UInt32, height: UInt32, pixels: UInt64) {
        (
            UInt32(clamping: max(1, maxWidth)), UInt32(clamping: max(1, maxHeight)),
            UInt64(clamping: max(1, maxPixels))
        )
    }
}
