/// An input image after ingest: validated, within limits and re-encoded where supported.
public struct IngestedImage: Sendable, Equatable {
    /// `png` or `jpeg`.
    public var format: String
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// The normalized encoded image.
    public var bytes: [UInt8]
    /// The size of the upload before normalization, in bytes.
    public var originalByteCount: Int
    /// What the upload was, as read from its headers (before normalization).
    public var source: ImageHeader?
    /// The EXIF orientation the upload carried (1 when none), now applied.
    public var sourceOrientation: Int
    /// Whether the upload carried an ICC profile, now converted to sRGB and dropped.
    public var sourceHadICCProfile: Bool

    /// Creates an ingested image from its parts.
    public init(
        format: String, width: Int, height: Int, bytes: [UInt8], originalByteCount: Int, source: ImageHeader? = nil,
        sourceOrientation: Int = 1, sourceHadICCProfile: Bool = false
    ) {
        self.format = format
        self.width = width
        self.height = height
        self.bytes = bytes
        self.originalByteCount = originalByteCount
        self.source = source
        self.sourceOrientation = sourceOrientation
        self.sourceHadICCProfile = sourceHadICCProfile
    }
}

/// What an uploaded image is for.
public enum IngestRole: String, Sendable, Hashable {
    /// A picture to edit or to use as a reference. PNG or JPEG.
    case image
    /// An edit mask: transparent pixels mark the area to change. PNG only; alpha is always kept.
    case mask
}
