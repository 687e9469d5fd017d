/// An image container recognised from its first bytes.
///
/// Only ``png`` and ``jpeg`` are accepted by ``ImageIngestor``; the others are recognised so the
/// refusal can name what was uploaded.
public enum ImageFormat: String, Sendable, Hashable, CaseIterable {
    /// PNG (`89 50 4E 47`).
    case png
    /// JPEG (`FF D8 FF`).
    case jpeg
    /// GIF (`GIF87a`, `GIF89a`).
    case gif
    /// WebP (`RIFF....WEBP`).
    case webp
    /// Windows bitmap (`BM`).
    case bmp
    /// TIFF and BigTIFF (`II*\0`, `MM\0*`, `II+\0`, `MM\0+`).
    case tiff
    /// HEIF/HEIC (an ISO-BMFF `ftyp` box with a HEIF brand).
    case heif
    /// AVIF (an ISO-BMFF `ftyp` box with an AVIF brand).
    case avif
    /// SVG or another XML document.
    case svg
    /// Netpbm (`P1` to `P7`: PBM, PGM, PPM, PAM).
    case netpbm
    /// Nothing recognised.
    case unknown

    /// Whether ``ImageIngestor`` accepts this format.
    public var isSupported: Bool { self == .png || self == .jpeg }

    /// Recognises a format from the magic bytes at the start of `bytes`. Never fails.
    public init(sniffing bytes: [UInt8]) {
        self = bytes.withUnsafeBufferPointer { Self.sniff($0) }
    }

    private static func sniff(_ b: UnsafeBufferPointer<UInt8>) -> ImageFormat {
        func starts(_ magic: [UInt8], at offset: Int = 0) -> Bool {
            guard b.count >= offset + magic.count else { return false }
            for (index, byte) in magic.enumerated() where b[offset + index] != byte { return false }
            return true
        }
        // A PNG whose signature was mangled after the fourth byte is still reported as PNG, so it
        // is refused as corrupt rather than as an unknown format.
        if starts([0x89, 0x50, 0x4E, 0x47]) { return .png }
        if starts([0xFF, 0xD8, 0xFF]) { return .jpeg }
        if starts(Array("GIF87a".utf8)) || starts(Array("GIF89a".utf8)) { return .gif }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return .webp }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A])
            || starts([0x49, 0x49, 0x2B, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2B])
        {
            return .tiff
        }
        if starts(Array("ftyp".utf8), at: 4), let format = isoBrandFormat(b) { return format }
        if starts(Array("BM".utf8)) && b.count >= 14 { return .bmp }
        if b.count >= 3, b[0] == UInt8(ascii: "P"), (UInt8(ascii: "1")...UInt8(ascii: "7")).contains(b[1]),
            isWhitespace(b[2])
        {
            return .netpbm
        }
        if isMarkup(b) { return .svg }
        return .unknown
    }

    /// Reads the major and compatible brands of an ISO-BMFF `ftyp` box.
    private static func isoBrandFormat(_ b: UnsafeBufferPointer<UInt8>) -> ImageFormat? {
        guard b.count >= 12 else { return nil }
        let boxSize = Int(b[0]) << 24 | Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
        let end = min(b.count, boxSize >= 16 ? boxSize : 12)
        var brands: [String] = []
        var offset = 8
        while offset + 4 <= end {
            brands.append(String(decoding: b[offset..<offset + 4], as: UTF8.self))
            offset += offset == 8 ? 8 : 4  // skip minor_version after the major brand
        }
        if brands.contains(where: { $0 == "avif" || $0 == "avis" }) { return .avif }
        let heifBrands: Set<String> = ["heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs", "mif1", "msf1"]
        if brands.contains(where: heifBrands.contains) { return .heif }
        return nil
    }

    /// Whether the data starts (after a UTF-8 byte-order mark and whitespace) like an XML or SVG document.
    private static func isMarkup(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        if b.count >= 3, b[0] == 0xEF, b[1] == 0xBB, b[2] == 0xBF { index = 3 }
        while index < b.count, isWhitespace(b[index]) { index += 1 }
        let rest = b[index..<min(b.count, index + 14)].map { $0 | 0x20 }  // lower-case ASCII letters
        for prefix in ["<?xml", "<svg", "<!doctype svg"] where rest.starts(with: Array(prefix.utf8)) {
            return true
        }
        return false
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0C || byte == 0x0B
    }
}
