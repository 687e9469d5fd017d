/// Why an uploaded image was refused.
///
/// Ingest errors describe the input, so running the same job again cannot succeed:
/// ``isRetryable`` is always `false`.
public struct IngestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was wrong with the input.
    public enum Code: String, Sendable, Hashable, CaseIterable {
        /// The bytes are not a PNG or JPEG (or use a variant of them that is not supported).
        case unsupportedFormat = "unsupported_format"
        /// The bytes claim to be a supported format but are not a valid image.
        case corrupt
        /// The data ends before the image does.
        case truncated
        /// The encoded input is larger than ``IngestLimits/maxBytes``.
        case tooLarge = "too_large"
        /// The image is wider, taller or has more pixels than ``IngestLimits`` allows.
        case tooManyPixels = "too_many_pixels"
        /// The header declares a zero or impossible size.
        case badDimensions = "bad_dimensions"
        /// The image is animated (APNG); only still images are accepted.
        case animated
        /// A mask does not fit the image it goes with.
        case maskMismatch = "mask_mismatch"
        /// No bytes at all.
        case empty
        /// A JPEG declares more scans than ``IngestLimits/maxScans`` allows; it is refused before
        /// any scan is decoded.
        case tooManyScans = "too_many_scans"
    }

    /// What was wrong.
    public var code: Code
    /// A message safe to show the user and to log; it never contains image bytes.
    public var message: String

    /// Creates an error with a code and a message.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Whether submitting the same input again can succeed: never, for an ingest error.
    public var isRetryable: Bool { false }

    /// `code: message`.
    public var description: String { "\(code.rawValue): \(message)" }
}
