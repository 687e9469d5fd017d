import CImageShim

/// What an image's header says, read without decoding any pixels.
public struct ImageHeader: Sendable, Equatable {
    /// The container, ``ImageFormat/png`` or ``ImageFormat/jpeg``.
    public var format: ImageFormat
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// PNG bit depth or JPEG sample precision.
    public var bitDepth: Int
    /// Channels per pixel (PNG: from the colour type, palette counts as 3; JPEG: component count).
    public var components: Int
    /// PNG: Adam7 interlaced. JPEG: progressive.
    public var isInterlaced: Bool
    /// PNG: an `acTL` chunk before the image data marks an animated PNG (APNG). Always `false` for JPEG.
    public var isAnimated: Bool

    /// Reads the header of a PNG (signature, IHDR and the chunks before IDAT) or a JPEG (markers up
    /// to the frame header). Only headers are touched, so the cost does not grow with the image size.
    ///
    /// - Throws: ``IngestError`` with ``IngestError/Code/unsupportedFormat`` for other formats,
    ///   ``IngestError/Code/empty``, ``IngestError/Code/corrupt``, ``IngestError/Code/truncated`` or
    ///   ``IngestError/Code/badDimensions``.
    public init(reading bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { throw IngestError(.empty, "no image data") }
        let format = ImageFormat(sniffing: bytes)
        var probe = ig_probe()
        let code: Int32
        switch format {
        case .png:
            code = bytes.withUnsafeBufferPointer { ig_png_probe($0.baseAddress, $0.count, &probe) }
        case .jpeg:
            code = bytes.withUnsafeBufferPointer { ig_jpeg_probe($0.baseAddress, $0.count, &probe) }
        default:
            throw IngestError(.unsupportedFormat, "\(format.rawValue) images are not supported; use PNG or JPEG")
        }
        guard code == IG_OK.rawValue else {
            throw IngestError(shimCode: code, message: Self.describe(code, format: format, probe: probe))
        }
        self.format = format
        self.width = Int(probe.width)
        self.height = Int(probe.height)
        self.bitDepth = Int(probe.bit_depth)
        self.components = Int(probe.components)
        self.isInterlaced = probe.interlaced != 0
        self.isAnimated = probe.animated != 0
    }

    private static func describe(_ code: Int32, format: ImageFormat, probe: ig_probe) -> String {
        let name = format == .png ? "PNG" : "JPEG"
        switch UInt32(bitPattern: code) {
        case IG_ERR_TRUNCATED.rawValue: return "the \(name) data ends inside its header"
        case IG_ERR_BAD_DIMENSIONS.rawValue: return "the \(name) header declares a \(probe.width)x\(probe.height) image"
        default: return "the \(name) header is invalid"
        }
    }
}
