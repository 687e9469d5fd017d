import CImageShim

/// JPEG decoding to and encoding from ``RGBAImage``, through libjpeg-turbo.
///
/// Both calls are synchronous and CPU-bound: run them on a ``BlockingThreadPool`` (or another
/// thread of your own), never directly on Swift's cooperative pool.
public enum JPEGCodec {
    /// Decodes an 8-bit JPEG to opaque RGBA, with its orientation and ICC profile.
    ///
    /// Baseline, progressive and arithmetic-coded JPEGs are accepted. Grey, YCbCr and RGB images are
    /// converted to RGB; CMYK and YCCK images are converted to RGB naively (Adobe-inverted data is
    /// recognised) and reported through ``DecodedImage/isCMYK``. Before any scan is decoded the scans
    /// are counted against ``IngestLimits/maxScans`` and the frame size is checked against `limits`.
    /// Damaged entropy-coded data is an error rather than a picture with made-up blocks.
    ///
    /// - Parameters:
    ///   - targetWidth: With `targetHeight`, asks for shrink-on-load: the decoder scales by n/8
    ///     (n = 1...8) to the smallest size that is still at least `targetWidth` × `targetHeight`.
    ///     0 leaves that dimension unconstrained; both 0 decode at full size.
    /// - Throws: ``IngestError`` (``IngestError/Code/corrupt``, ``IngestError/Code/truncated``,
    ///   ``IngestError/Code/tooManyPixels``, ``IngestError/Code/badDimensions``,
    ///   ``IngestError/Code/tooManyScans``, ``IngestError/Code/tooLarge``,
    ///   ``IngestError/Code/empty``, and ``IngestError/Code/unsupportedFormat`` for 12-bit JPEGs
    ///   and unknown colour spaces).
    public static func decode(
        _ bytes: [UInt8], limits: IngestLimits = .init(), targetWidth: Int = 0, targetHeight: Int = 0
    ) throws -> DecodedImage {
        guard !bytes.isEmpty else { throw IngestError(.empty, "no JPEG data") }
        guard bytes.count <= limits.maxBytes else {
            throw IngestError(.tooLarge, "the JPEG is \(bytes.count) bytes; the limit is \(limits.maxBytes)")
        }
        let bounds = limits.shimValues
        var options = ig_jpeg_options()
        options.max_width = bounds.width
        options.max_height = bounds.height
        options.max_pixels = bounds.pixels
        options.max_scans = UInt32(clamping: max(1, limits.maxScans))
        options.target_width = UInt32(clamping: max(0, targetWidth))
        options.target_height = UInt32(clamping: max(0, targetHeight))
        var output = ig_jpeg_out()
        let result = IngestError.callShim { errbuf, errlen in
            bytes.withUnsafeBufferPointer { input in
                ig_jpeg_decode(input.baseAddress, input.count, &options, &output, errbuf, errlen)
            }
        }
        defer {
            ig_free(output.pixels)
            ig_free(output.meta.icc)
        }
        guard result.code == IG_OK.rawValue, let rgba = output.pixels else {
            throw IngestError(shimCode: result.code, message: result.message)
        }
        let width = Int(output.width)
        let height = Int(output.height)
        let pixels = Array(UnsafeBufferPointer(start: rgba, count: output.length))
        return DecodedImage(
            image: RGBAImage(width: width, height: height, pixels: pixels),
            orientation: Int(output.meta.orientation),
            iccProfile: output.meta.icc.map { Array(UnsafeBufferPointer(start: $0, count: output.meta.icc_length)) },
            isCMYK: output.meta.is_cmyk != 0,
            sourceWidth: Int(output.source_width), sourceHeight: Int(output.source_height))
    }

    /// Encodes an image as a baseline JPEG (4:2:0 chroma, optimized Huffman tables) with no
    /// metadata beyond the JFIF header. The alpha channel is dropped.
    ///
    /// - Parameter quality: 1 (smallest) to 100 (best); values outside are clamped.
    /// - Throws: ``IngestError`` with ``IngestError/Code/badDimensions`` when the size is empty or
    ///   does not match `pixels.count`, ``IngestError/Code/tooManyPixels`` when a side exceeds
    ///   65,500 pixels, the JPEG maximum.
    public static func encode(_ image: RGBAImage, quality: Int = 90) throws -> [UInt8] {
        let (pixelCount, overflow) = image.width.multipliedReportingOverflow(by: image.height)
        guard image.width > 0, image.height > 0, !overflow, pixelCount <= Int.max / 4,
            pixelCount * 4 == image.pixels.count
        else {
            throw IngestError(
                .badDimensions, "cannot encode \(image.pixels.count) bytes as a \(image.width)x\(image.height) image")
        }
        guard image.width <= 65_500, image.height <= 65_500 else {
            throw IngestError(
                .tooManyPixels, "cannot encode a \(image.width)x\(image.height) JPEG; the maximum is 65500 per side")
        }
        let rgb = image.pixels.withUnsafeBufferPointer { rgba in
            [UInt8](unsafeUninitializedCapacity: pixelCount * 3) { buffer, initialized in
                for index in 0..<pixelCount {
                    buffer[index * 3] = rgba[index * 4]
                    buffer[index * 3 + 1] = rgba[index * 4 + 1]
                    buffer[index * 3 + 2] = rgba[index * 4 + 2]
                }
                initialized = pixelCount * 3
            }
        }
        var output = ig_buffer()
        let result = IngestError.callShim { errbuf, errlen in
            rgb.withUnsafeBufferPointer { pixels in
                ig_jpeg_encode_rgb(
                    pixels.baseAddress, UInt32(image.width), UInt32(image.height), Int32(clamping: quality),
                    &output, errbuf, errlen)
            }
        }
        defer { ig_free(output.data) }
        guard result.code == IG_OK.rawValue, let data = output.data else {
            throw IngestError(shimCode: result.code, message: result.message)
        }
        return Array(UnsafeBufferPointer(start: data, count: output.length))
    }
}
