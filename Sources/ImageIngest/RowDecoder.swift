import CImageShim

/// A PNG or JPEG decoded row by row to 8-bit RGBA, so the pipeline can resize while decoding and
/// never holds a full-size image (except an interlaced PNG, which libpng decodes whole).
///
/// The decoder reads from `bytes` without copying them: it must not outlive the buffer it was opened
/// on. It is used by one thread at a time; after a failed read it can only be discarded.
final class RowDecoder {
    private enum Handle {
        case png(OpaquePointer)
        case jpeg(OpaquePointer)
    }

    private let handle: Handle
    /// Width of the rows returned.
    private(set) var width: Int
    /// Number of rows to read.
    private(set) var height: Int
    /// The size the file declares.
    let sourceWidth: Int
    let sourceHeight: Int
    /// EXIF orientation, 1–8.
    let orientation: Int
    /// The embedded ICC profile.
    let iccProfile: [UInt8]?
    /// A CMYK or YCCK JPEG: its rows are CMYK (0 = no ink) when opened with `rawCMYK`.
    let isCMYK: Bool
    private(set) var rowsRead = 0

    private init(handle: Handle, info: ig_stream_info) {
        self.handle = handle
        self.width = Int(info.width)
        self.height = Int(info.height)
        self.sourceWidth = Int(info.source_width)
        self.sourceHeight = Int(info.source_height)
        self.orientation = Int(info.orientation)
        self.iccProfile = info.icc.map { Array(UnsafeBufferPointer(start: $0, count: info.icc_length)) }
        self.isCMYK = info.is_cmyk != 0
    }

    deinit {
        switch handle {
        case .png(let stream): ig_png_stream_close(stream)
        case .jpeg(let stream): ig_jpeg_stream_close(stream)
        }
    }

    /// Opens a PNG: headers read, limits applied, ready to read rows.
    static func png(_ bytes: UnsafeBufferPointer<UInt8>, limits: IngestLimits) throws(IngestError) -> RowDecoder {
        let bounds = limits.shimValues
        var stream: OpaquePointer?
        var info = ig_stream_info()
        let result = IngestError.callShim { errbuf, errlen in
            ig_png_stream_open(
                bytes.baseAddress, bytes.count, bounds.width, bounds.height, bounds.pixels, &stream, &info, errbuf,
                errlen)
        }
        guard result.code == IG_OK.rawValue, let stream else {
            throw IngestError(shimCode: result.code, message: result.message)
        }
        return RowDecoder(handle: .png(stream), info: info)
    }

    /// Opens a JPEG: headers read, limits and the scan count checked. Call ``startJPEG(targetWidth:targetHeight:)``
    /// before reading rows. With `rawCMYK` a CMYK JPEG's rows are CMYK for ``ColorConverter``.
    static func jpeg(_ bytes: UnsafeBufferPointer<UInt8>, limits: IngestLimits, rawCMYK: Bool) throws(IngestError)
        -> RowDecoder
    {
        let bounds = limits.shimValues
        var options = ig_jpeg_options()
        options.max_width = bounds.width
        options.max_height = bounds.height
        options.max_pixels = bounds.pixels
        options.max_scans = UInt32(clamping: max(1, limits.maxScans))
        var stream: OpaquePointer?
        var info = ig_stream_info()
        let result = IngestError.callShim { errbuf, errlen in
            ig_jpeg_stream_open(
                bytes.baseAddress, bytes.count, &options, rawCMYK ? 1 : 0, &stream, &info, errbuf, errlen)
        }
        guard result.code == IG_OK.rawValue, let stream else {
            throw IngestError(shimCode: result.code, message: result.message)
        }
        return RowDecoder(handle: .jpeg(stream), info: info)
    }

    /// Starts a JPEG with shrink-on-load: the smallest DCT scale n/8 whose output is still at least
    /// `targetWidth` × `targetHeight` (0 = unconstrained). Updates ``width`` and ``height``.
    func startJPEG(targetWidth: Int, targetHeight: Int) throws(IngestError) {
        guard case .jpeg(let stream) = handle else { return }
        var info = ig_stream_info()
        let result = IngestError.callShim { errbuf, errlen in
            ig_jpeg_stream_start(
                stream, UInt32(clamping: max(0, targetWidth)), UInt32(clamping: max(0, targetHeight)), &info, errbuf,
                errlen)
        }
        guard result.code == IG_OK.rawValue else {
            throw IngestError(shimCode: result.code, message: result.message)
        }
        width = Int(info.width)
        height = Int(info.height)
    }

    /// Decodes the next `count` rows into `destination` (`count * width * 4` bytes). The read of
    /// the last row also checks the rest of the file (through IEND or EOI).
    func read(into destination: UnsafeMutableRawPointer, rows count: Int) throws(IngestError) {
        precondition(count >= 0 && count <= height - rowsRead, "reading past the last row")
        guard count > 0 else { return }
        let rows = destination.assumingMemoryBound(to: UInt8.self)
        let result = IngestError.callShim { errbuf, errlen in
            switch handle {
            case .png(let stream): ig_png_stream_read(stream, rows, UInt32(count), errbuf, errlen)
            case .jpeg(let stream): ig_jpeg_stream_read(stream, rows, UInt32(count), errbuf, errlen)
            }
        }
        guard result.code == IG_OK.rawValue else {
            throw IngestError(shimCode: result.code, message: result.message)
        }
        rowsRead += count
    }

    /// Every remaining row, as one image.
    func readImage() throws(IngestError) -> RGBAImage {
        let width = width
        let rows = height - rowsRead
        guard rows > 0 else { return RGBAImage(width: width, height: 0, pixels: []) }
        var failure: IngestError?
        let pixels = [UInt8](unsafeUninitializedCapacity: width * rows * 4) { buffer, initialized in
            do throws(IngestError) {
                try read(into: UnsafeMutableRawPointer(buffer.baseAddress!), rows: rows)
                initialized = width * rows * 4
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return RGBAImage(width: width, height: rows, pixels: pixels)
    }
}
