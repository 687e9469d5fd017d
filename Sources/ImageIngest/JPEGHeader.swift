import CImageShim

enum JPEGHeader {
    /// Parses the JPEG headers with libjpeg (no scan is decoded) and throws if it refuses them.
    static func validate(_ bytes: [UInt8]) throws(IngestError) {
        var probe = ig_probe()
        let result = IngestError.callShim { errbuf, errlen in
            bytes.withUnsafeBufferPointer { input in
                ig_jpeg_read_header(input.baseAddress, input.count, &probe, errbuf, errlen)
            }
        }
        guard result.code == IG_OK.rawValue else {
            throw IngestError(shimCode: result.code, message: result.message)
        }
    }
}
