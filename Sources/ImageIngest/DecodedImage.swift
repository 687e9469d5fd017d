/// A decoded image together with the metadata that decides how its pixels are to be shown.
///
/// The pixels are exactly as stored: the EXIF orientation has not been applied and no colour
/// conversion has been made with the ICC profile.
public struct DecodedImage: Sendable, Equatable {
    /// The pixels as stored in the file (after shrink-on-load, if it was requested).
    public var image: RGBAImage
    /// The EXIF orientation, 1 to 8 (1 is upright); 1 when the file has no readable EXIF data.
    public var orientation: Int
    /// The embedded ICC profile, or `nil` when the file has none.
    public var iccProfile: [UInt8]?
    /// Whether the source was a CMYK (or YCCK) JPEG, in which case ``iccProfile`` describes CMYK
    /// data; the pixels have already been converted to RGB without it.
    public var isCMYK: Bool
    /// The width declared by the file, before any shrink-on-load.
    public var sourceWidth: Int
    /// The height declared by the file, before any shrink-on-load.
    public var sourceHeight: Int

    /// Creates a decoded image from its parts.
    public init(
        image: RGBAImage, orientation: Int = 1, iccProfile: [UInt8]? = nil, isCMYK: Bool = false,
        sourceWidth: Int, sourceHeight: Int
    ) {
        self.image = image
        self.orientation = orientation
        self.iccProfile = iccProfile
        self.isCMYK = isCMYK
        self.sourceWidth = sourceWidth
        self.sourceHeight = sourceHeight
    }
}
