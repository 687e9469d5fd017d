import Foundation
import ImageIngest
import Testing

@Suite("PNG codec")
struct PNGCodecTests {
    @Test(arguments: [true, false])
    func roundTripIsExact(alpha: Bool) throws {
        let image = testPattern(width: 37, height: 23, alpha: alpha)
        let encoded = try PNGCodec.encode(image, keepAlpha: alpha)
        #expect(ImageFormat(sniffing: encoded) == .png)
        let decoded = try PNGCodec.decode(encoded)
        #expect(decoded == image)
        let header = try ImageHeader(reading: encoded)
        #expect(header.components == (alpha ? 4 : 3))
        #expect(header.bitDepth == 8)
    }

    @Test func encodeWithoutAlphaMakesPixelsOpaque() throws {
        let image = testPattern(width: 5, height: 4, alpha: true)
        let decoded = try PNGCodec.decode(PNGCodec.encode(image, keepAlpha: false))
        #expect(decoded.isOpaque)
        for index in stride(from: 0, to: image.pixels.count, by: 4) {
            #expect(decoded.pixels[index..<index + 3] == image.pixels[index..<index + 3])
        }
    }

    @Test func largerImageRoundTrips() throws {
        let image = testPattern(width: 1500, height: 1100, alpha: false)
        #expect(try PNGCodec.decode(PNGCodec.encode(image)) == image)
    }

    /// A photo-like picture: smooth gradients plus noise from a fixed-seed generator, which
    /// run-length coding of Paeth residuals compresses as well as deflate.
    static func noisyGradient(width: Int, height: Int) -> RGBAImage {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var pixels = [UInt8](repeating: 255, count: width * height * 4)
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<3 {
                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    let noise = Int(state >> 61) - 4
                    let base = (x * (c + 1) + y * (3 - c)) * 255 / (width + height) / 2
                    pixels[(y * width + x) * 4 + c] = UInt8(clamping: base + noise)
                }
            }
        }
        return RGBAImage(width: width, height: height, pixels: pixels)
    }

    /// A screenshot-like picture: flat background with a repeated glyph-like pattern, which
    /// deflate's matches compress far better than run-length coding.
    static func repeatedPattern(width: Int, height: Int) -> RGBAImage {
        var image = RGBAImage(width: width, height: height, red: 240, green: 240, blue: 244)
        for y in 0..<height where y % 12 < 7 {
            for x in 0..<width where (x * 5 + y * 3) % 11 < 3 {
                let index = (y * width + x) * 4
                image.pixels[index] = 20
                image.pixels[index + 1] = 24
                image.pixels[index + 2] = 30
            }
        }
        return image
    }

    @Test(arguments: PNGEncoding.Strategy.allCases, [0, 1, 6, 9])
    func everyStrategyAndLevelRoundTrips(strategy: PNGEncoding.Strategy, level: Int) throws {
        for image in [Self.noisyGradient(width: 97, height: 61), Self.repeatedPattern(width: 97, height: 61)] {
            for alpha in [true, false] {
                let options = PNGEncoding(level: level, strategy: strategy)
                let decoded = try PNGCodec.decode(PNGCodec.encode(image, keepAlpha: alpha, options: options))
                #expect(decoded == image)
            }
        }
    }

    /// Images of at least 2^18 pixels are compressed in two bands at once, joined into one stream.
    @Test(arguments: PNGEncoding.Strategy.allCases, [0, 6])
    func largeImagesCompressedInTwoBandsRoundTrip(strategy: PNGEncoding.Strategy, level: Int) throws {
        for image in [Self.noisyGradient(width: 613, height: 509), Self.repeatedPattern(width: 613, height: 509)] {
            for alpha in [true, false] {
                let twoBands = try PNGCodec.encode(
                    image, keepAlpha: alpha, options: PNGEncoding(level: level, strategy: strategy, threads: 2))
                let oneBand = try PNGCodec.encode(
                    image, keepAlpha: alpha, options: PNGEncoding(level: level, strategy: strategy, threads: 1))
                #expect(try PNGCodec.decode(twoBands) == image)
                #expect(try PNGCodec.decode(oneBand) == image)
                // The second band starts without the first's run (and, for deflate, with its last
                // 32 KB as dictionary): a few bytes apart at most.
                #expect(abs(twoBands.count - oneBand.count) * 100 <= oneBand.count + 1000)
            }
        }
    }

    @Test func smallImagesAreDeflatedWithoutASample() throws {
        let photo = Self.noisyGradient(width: 200, height: 150)
        let automatic = try PNGCodec.encode(photo, keepAlpha: false)
        #expect(automatic == (try PNGCodec.encode(photo, keepAlpha: false, options: .init(strategy: .deflate))))
    }

    @Test func levelZeroStoresAndHigherLevelsCompress() throws {
        let image = Self.repeatedPattern(width: 200, height: 120)
        let stored = try PNGCodec.encode(image, keepAlpha: false, options: PNGEncoding(level: 0))
        let compressed = try PNGCodec.encode(image, keepAlpha: false, options: PNGEncoding(level: 6))
        #expect(stored.count > 200 * 120 * 3)
        #expect(compressed.count * 10 < stored.count)
    }

    @Test func tinyImagesAreStoredAndLargerOnesCompressed() throws {
        let tiny = Self.repeatedPattern(width: 8, height: 8)
        let tinyStored = try PNGCodec.encode(tiny, keepAlpha: true, options: PNGEncoding(level: 0))
        #expect(try PNGCodec.encode(tiny, keepAlpha: true, options: PNGEncoding(level: 9)) == tinyStored)
        #expect(try PNGCodec.decode(tinyStored).pixels == tiny.pixels)
        let small = Self.repeatedPattern(width: 16, height: 16)
        let smallStored = try PNGCodec.encode(small, keepAlpha: true, options: PNGEncoding(level: 0))
        #expect(try PNGCodec.encode(small, keepAlpha: true, options: PNGEncoding(level: 6)).count < smallStored.count)
    }

    @Test func automaticStrategyPicksRunLengthForPhotosAndDeflateForScreenshots() throws {
        let photo = Self.noisyGradient(width: 320, height: 240)
        let automaticPhoto = try PNGCodec.encode(photo, keepAlpha: false)
        #expect(automaticPhoto == (try PNGCodec.encode(photo, keepAlpha: false, options: .init(strategy: .runLength))))
        #expect(automaticPhoto != (try PNGCodec.encode(photo, keepAlpha: false, options: .init(strategy: .deflate))))

        let screenshot = Self.repeatedPattern(width: 320, height: 240)
        let automaticShot = try PNGCodec.encode(screenshot, keepAlpha: false)
        let deflated = try PNGCodec.encode(screenshot, keepAlpha: false, options: .init(strategy: .deflate))
        let runLength = try PNGCodec.encode(screenshot, keepAlpha: false, options: .init(strategy: .runLength))
        #expect(automaticShot == deflated)
        #expect(deflated.count < runLength.count)
    }

    @Test func encodeRejectsMismatchedPixelCount() {
        let image = RGBAImage(width: 4, height: 4, pixels: [UInt8](repeating: 0, count: 10))
        #expect(throws: IngestError(.badDimensions, "cannot encode 10 bytes as a 4x4 image")) {
            try PNGCodec.encode(image)
        }
        #expect(throws: IngestError.self) { try PNGCodec.encode(RGBAImage(width: 0, height: 0, pixels: [])) }
    }

    static let pngSuite: [String] =
        (try? Corpus.files(in: Corpus.pngSuite, suffix: ".png"))?
        .map(\.lastPathComponent) ?? []

    @Test func pngSuiteIsPresent() {
        #expect(Self.pngSuite.count == 175)
        #expect(Self.pngSuite.filter { $0.hasPrefix("x") }.count == 14)
    }

    /// The size a PngSuite file's name implies: `sNN*` is N×N, the pHYs samples `cdf`, `cdh` and
    /// `cds` are 8×32, 32×8 and 8×8, the logo is 256×256 and everything else is 32×32.
    static func expectedSize(_ name: String) -> (width: Int, height: Int) {
        if name == "PngSuite.png" { return (256, 256) }
        if name.hasPrefix("s"), let side = Int(name.dropFirst().prefix(2)) { return (side, side) }
        if name.hasPrefix("cdf") { return (8, 32) }
        if name.hasPrefix("cdh") { return (32, 8) }
        if name.hasPrefix("cds") { return (8, 8) }
        return (32, 32)
    }

    @Test("PngSuite", arguments: pngSuite)
    func pngSuiteFile(_ name: String) async throws {
        let bytes = try Corpus.bytes(Corpus.pngSuite.appendingPathComponent(name))
        let ingestor = ImageIngestor(threads: 1)
        if name.hasPrefix("x") {
            #expect(throws: IngestError.self) { try PNGCodec.decode(bytes) }
            await #expect(throws: IngestError.self) { try await ingestor.ingest(bytes, role: .image) }
            await #expect(throws: IngestError.self) { try await ingestor.ingest(bytes, role: .mask) }
        } else {
            let expected = Self.expectedSize(name)
            let image = try PNGCodec.decode(bytes)
            #expect(image.width == expected.width && image.height == expected.height)
            #expect(image.pixels.count == expected.width * expected.height * 4)
            let ingested = try await ingestor.ingest(bytes, role: .image)
            #expect(ingested.format == "png")
            #expect(ingested.width == expected.width && ingested.height == expected.height)
            #expect(ingested.originalByteCount == bytes.count)
            // Normalization is lossless for 8-bit input: decoding the output gives the same pixels.
            #expect(try PNGCodec.decode(ingested.bytes) == image)

            // Pixels equal to an independent decoder's (pypng, Tests/Tools/png_reference.py).
            let reference = try await PNGReference.decode(name)
            #expect(reference.width == image.width && reference.height == image.height)
            #expect(reference.pixels == image.pixels, "\(name) differs from the reference decode")
        }
    }

    /// Interlaced and non-interlaced versions of the same picture decode to the same pixels.
    @Test(
        "interlaced equals non-interlaced",
        arguments: pngSuite.filter { $0.hasPrefix("basi") || $0.hasPrefix("s") }
            .filter { $0.dropFirst(3).first == "i" })
    func interlacedMatches(_ name: String) throws {
        var plainName = Array(name)
        plainName[3] = "n"
        let interlaced = try PNGCodec.decode(Corpus.bytes(Corpus.pngSuite.appendingPathComponent(name)))
        let plain = try PNGCodec.decode(Corpus.bytes(Corpus.pngSuite.appendingPathComponent(String(plainName))))
        #expect(interlaced == plain)
    }

    @Test func hugeHeaderIsRefusedBeforeDecoding() async throws {
        // 50,000 × 50,000 RGBA would be 10 GB; the image data is filler that would fail to inflate.
        let png = PNGBuilder.header(width: 50_000, height: 50_000)
        #expect(png.count < 8_192)
        let header = try ImageHeader(reading: png)
        #expect(header.width == 50_000 && header.height == 50_000)

        let error = try #require(throws: IngestError.self) { try PNGCodec.decode(png) }
        #expect(error.code == .tooManyPixels)
        let generous = IngestLimits(maxWidth: 100_000, maxHeight: 100_000, maxPixels: 1_000_000)
        #expect(throws: IngestError.self) { try PNGCodec.decode(png, limits: generous) }
        let ingestError = await #expect(throws: IngestError.self) {
            try await ImageIngestor().ingest(png, role: .image)
        }
        #expect(ingestError?.code == .tooManyPixels)

        // Within the side limits but over the pixel limit.
        let wide = PNGBuilder.header(width: 16_000, height: 16_000)
        let wideError = await #expect(throws: IngestError.self) { try await ImageIngestor().ingest(wide, role: .image) }
        #expect(wideError?.code == .tooManyPixels)
    }

    @Test func zeroSizeIsBadDimensions() async {
        let png = PNGBuilder.header(width: 0, height: 10)
        let error = await #expect(throws: IngestError.self) { try await ImageIngestor().ingest(png, role: .image) }
        #expect(error?.code == .badDimensions)
    }

    @Test func truncatedPNGIsRefused() async throws {
        let full = try PNGCodec.encode(testPattern(width: 64, height: 64, alpha: true))
        for length in [10, 30, 40, full.count / 2, full.count - 20] {
            let cut = Array(full.prefix(length))
            let error = try #require(throws: IngestError.self) { try PNGCodec.decode(cut) }
            #expect(error.code == .truncated || error.code == .corrupt, "length \(length): \(error)")
            let ingestError = await #expect(throws: IngestError.self) {
                try await ImageIngestor().ingest(cut, role: .image)
            }
            #expect(ingestError?.code == .truncated || ingestError?.code == .corrupt)
        }
        let half = try #require(throws: IngestError.self) { try PNGCodec.decode(Array(full.prefix(full.count / 2))) }
        #expect(half.code == .truncated)
    }

    @Test func animatedPNGIsRefused() async throws {
        let still = try PNGCodec.encode(testPattern(width: 8, height: 8, alpha: true))
        let acTL = PNGBuilder.chunk("acTL", PNGBuilder.bigEndian(2) + PNGBuilder.bigEndian(0))
        let animated = PNGBuilder.inserting(acTL, intoAfterHeader: still)
        #expect(try ImageHeader(reading: animated).isAnimated)
        #expect(try !ImageHeader(reading: still).isAnimated)
        let error = await #expect(throws: IngestError.self) {
            try await ImageIngestor().ingest(animated, role: .image)
        }
        #expect(error?.code == .animated)
    }

    @Test func metadataIsStripped() async throws {
        let still = try PNGCodec.encode(testPattern(width: 8, height: 8, alpha: false))
        let text = PNGBuilder.chunk("tEXt", Array("Comment\u{0}secret location".utf8))
        let tagged = PNGBuilder.inserting(text, intoAfterHeader: still)
        let ingested = try await ImageIngestor().ingest(tagged, role: .image)
        #expect(!String(decoding: ingested.bytes, as: UTF8.self).contains("secret"))
        #expect(try PNGCodec.decode(ingested.bytes) == PNGCodec.decode(still))
    }
}
