import ImageIngest
import Testing

@Suite("Format sniffing")
struct ImageFormatTests {
    static let samples: [(bytes: [UInt8], format: ImageFormat)] = [
        ([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13], .png),
        ([0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10], .jpeg),
        ([0xFF, 0xD8, 0xFF, 0xDB], .jpeg),
        (Array("GIF87a".utf8) + [1, 0, 1, 0], .gif),
        (Array("GIF89a".utf8) + [1, 0, 1, 0], .gif),
        (Array("RIFF".utf8) + [0x24, 0, 0, 0] + Array("WEBPVP8 ".utf8), .webp),
        (Array("BM".utf8) + [UInt8](repeating: 0, count: 52), .bmp),
        ([0x49, 0x49, 0x2A, 0x00, 8, 0, 0, 0], .tiff),
        ([0x4D, 0x4D, 0x00, 0x2A, 0, 0, 0, 8], .tiff),
        ([0x49, 0x49, 0x2B, 0x00, 8, 0, 0, 0], .tiff),
        ([0, 0, 0, 0x18] + Array("ftypheic".utf8) + [0, 0, 0, 0] + Array("mif1heic".utf8), .heif),
        ([0, 0, 0, 0x18] + Array("ftypmif1".utf8) + [0, 0, 0, 0] + Array("mif1miaf".utf8), .heif),
        ([0, 0, 0, 0x1C] + Array("ftypavif".utf8) + [0, 0, 0, 0] + Array("avifmif1miaf".utf8), .avif),
        ([0, 0, 0, 0x18] + Array("ftypmif1".utf8) + [0, 0, 0, 0] + Array("avifmiaf".utf8), .avif),
        (Array("<svg xmlns=\"http://www.w3.org/2000/svg\"/>".utf8), .svg),
        (Array("<?xml version=\"1.0\"?><svg/>".utf8), .svg),
        ([0xEF, 0xBB, 0xBF] + Array("\n  <!DOCTYPE svg PUBLIC>".utf8), .svg),
        (Array("P1\n2 2\n0 1 1 0\n".utf8), .netpbm),
        (Array("P4 8 1\n".utf8) + [0xAA], .netpbm),
        (Array("P5\n2 2\n255\n".utf8) + [0, 1, 2, 3], .netpbm),
        (Array("P6 1 1 255\n".utf8) + [1, 2, 3], .netpbm),
        (Array("P7\nWIDTH 1\n".utf8), .netpbm),
        (Array("hello world".utf8), .unknown),
        ([0, 0, 0, 0x18] + Array("ftypisom".utf8) + [0, 0, 0, 0] + Array("isomiso2".utf8), .unknown),
        (Array("P8\n".utf8), .unknown),
        ([0xFF, 0xD8], .unknown),
        ([], .unknown),
    ]

    @Test("magic bytes", arguments: 0..<samples.count)
    func sniffs(_ index: Int) {
        let sample = Self.samples[index]
        #expect(ImageFormat(sniffing: sample.bytes) == sample.format)
    }

    @Test func onlyPNGAndJPEGAreSupported() {
        #expect(ImageFormat.allCases.filter(\.isSupported) == [.png, .jpeg])
    }

    @Test(
        "corpus files",
        arguments: [
            ("jpeg/testorig.jpg", ImageFormat.jpeg), ("jpeg/monkey12.jpg", .jpeg), ("jpeg/testorig.png", .png),
            ("jpeg/shira_bird8.bmp", .bmp), ("jpeg/vgl_6434_0018a.bmp", .bmp), ("jpeg/monkey16.pgm", .netpbm),
            ("jpeg/testorig.ppm", .netpbm), ("pngsuite/basn6a08.png", .png), ("jpeg/test1.icc", .unknown),
        ])
    func sniffsCorpus(_ path: String, _ format: ImageFormat) throws {
        let bytes = try Corpus.bytes(Corpus.root.appendingPathComponent(path))
        #expect(ImageFormat(sniffing: bytes) == format)
    }
}
