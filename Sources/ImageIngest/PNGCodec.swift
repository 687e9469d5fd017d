import CImageShim

/// PNG decoding to and encoding from ``RGBAImage``, through libpng.
///
/// Both calls are synchronous and CPU-bound: run them on a ``BlockingThreadPool`` (or another
/// thread of your own), never directly on Swift's cooperative pool.
public enum PNGCodec {
    /// Decodes a PNG to 8-bit RGBA.
    ///
    /// Every PNG colour type and bit depth is converted: palette and grey expand to RGB, `tRNS`
    /// becomes alpha, 16-bit samples are reduced to 8 bits and gamma-tagged images are converted to
    /// sRGB. The header is checked against `limits` before any pixel memory is allocated. Critical
    /// chunks with a bad CRC, missing image data and invalid headers are errors. Ancillary chunks
    /// (text, EXIF, ICC, time) are ignored and do not survive a decode/encode round trip.
    ///
    /// - Throws: ``IngestError`` (``IngestError/Code/corrupt``, ``IngestError/Code/truncated``,
    ///   ``IngestError/Code/tooManyPixels``, ``IngestError/Code/badDimensions``,
    ///   ``IngestError/Code/tooLarge``, ``IngestError/Code/empty``).
    public static func decode(_ bytes: [UInt8], limits: IngestLimits = .init()) throws -> RGBAImage {
        guard !bytes.isEmpty else { throw IngestError(.empty, "no PNG data") }
        guard bytes.count <= limits.maxBytes else {
            throw IngestError(.tooLarge, "the PNG is \(bytes.count) bytes; the limit is \(limits.maxBytes)")
        }
        let bounds = limits.shimValues
        var output = ig_image_out()
        let result = IngestError.callShim { errbuf, errlen in
            bytes.withUnsafeBufferPointer { input in
                ig_png_decode_rgba(
                    input.baseAddress, input.count, bounds.width, bounds.height, bounds.pixels, &output,
                    errbuf, errlen)
            }
        }
        guard result.code == IG_OK.rawValue, let pixels = output.pixels else {
            ig_free(output.pixels)
            throw IngestError(shimCode: result.code, message: result.message)
        }
        defer { ig_free(pixels) }
        return RGBAImage(
            width: Int(output.width), height: Int(output.height),
            pixels: Array(UnsafeBufferPointer(start: pixels, count: output.length)))
    }

    /// Encodes an image as an 8-bit PNG with no metadata.
    ///
    /// - Parameter keepAlpha: `true` writes RGBA; `false` drops the alpha channel and writes RGB.
    /// - Throws: ``IngestError`` with ``IngestError/Code/badDimensions`` when the size is empty or
    ///   does not match `pixels.count`, ``IngestError/Code/tooManyPixels`` or
    ///   ``IngestError/Code/tooLarge`` when it cannot be encoded.
    public static func encode(_ image: RGBAImage, keepAlpha: Bool = true) throws -> [UInt8] {
        let (pixelCount, overflow) = image.width.multipliedReportingOverflow(by: image.height)
        guard image.width > 0, image.height > 0, image.width <= Int(Int32.max), image.height <= Int(Int32.max),
            !overflow, pixelCount <= Int.max / 4, pixelCount * 4 == image.pixels.count
        else {
            throw IngestError(
                .badDimensions, "cannot encode \(image.pixels.count) bytes as a \(image.width)x\(image.height) image")
        }
        var output = ig_buffer()
        let result = IngestError.callShim { errbuf, errlen in
            image.pixels.withUnsafeBufferPointer { pixels in
                ig_png_encode_rgba(
                    pixels.baseAddress, UInt32(image.width), UInt32(image.height), keepAlpha ? 1 : 0, &output,
                    errbuf, errlen)
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
