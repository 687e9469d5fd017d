import CImageShim

extension IngestError {
    /// Translates a result code of the C codecs into an ingest error.
    init(shimCode: Int32, message: String) {
        let code: Code
        switch UInt32(bitPattern: shimCode) {
        case IG_ERR_TRUNCATED.rawValue: code = .truncated
        case IG_ERR_TOO_MANY_PIXELS.rawValue: code = .tooManyPixels
        case IG_ERR_BAD_DIMENSIONS.rawValue: code = .badDimensions
        case IG_ERR_OUT_OF_MEMORY.rawValue: code = .tooLarge
        case IG_ERR_UNSUPPORTED.rawValue: code = .unsupportedFormat
        case IG_ERR_TOO_MANY_SCANS.rawValue: code = .tooManyScans
        default: code = .corrupt
        }
        self.init(code, message)
    }

    /// Runs a C call that fills a message buffer, and returns its result code and message.
    static func callShim(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) -> (code: Int32, message: String) {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            buffer.initialize(repeating: 0)
            let code = body(buffer.baseAddress!, buffer.count)
            buffer[buffer.count - 1] = 0
            return (code, String(cString: buffer.baseAddress!))
        }
    }
}
