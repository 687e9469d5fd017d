import Foundation
import ImageIngest
import Testing

/// The whole ingest pipeline: decode, colour, orientation, resize, re-encode without metadata.
@Suite("Ingest pipeline")
struct IngestPipelineTests {
    /// A PNG of `image` with an `eXIf` chunk carrying `orientation`.
    static func pngWithOrientation(_ image: RGBAImage, _ orientation: UInt16) throws -> [UInt8] {
        let png = try PNGCodec.encode(image, keepAlpha: true)
        let app1 = JPEGBuilder.exifOrientation(orientation)
        let tiff = Array(app1.dropFirst(4 + 6))  // marker, length, "Exif\0\0"
        return PNGBuilder.inserting(PNGBuilder.chunk("eXIf", tiff), intoAfterHeader: png)
    }

    /// The chunk types of a PNG, in order.
    static func chunkTypes(_ png: [UInt8]) -> [String] {
        var types: [String] = []
        var offset = 8
        while offset + 8 <= png.count {
            let length = png[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            types.append(String(decoding: png[offset + 4..<offset + 8], as: UTF8.self))
            offset += 12 + length
        }
        return types
    }

    @Test("EXIF orientation 1-8 (PNG eXIf) is applied pixel by pixel", arguments: 1...8)
    func orientationFromPNG(value: Int) async throws {
        let (orientation, width, height, layout) = OrientationTests.expected[value - 1]
        #expect(orientation.rawValue == value)
        let input = try Self.pngWithOrientation(OrientationTests.stored, UInt16(value))
        let ingested = try await ImageIngestor().ingest(input, role: .image)
        #expect(ingested.width == width && ingested.height == height)
        let output = try PNGCodec.decode(ingested.bytes)
        #expect(output.pixels == layout.flatMap(OrientationTests.pixel))
        #expect(!Self.chunkTypes(ingested.bytes).contains("eXIf"))
    }

    @Test("EXIF orientation 1-8 (JPEG APP1) turns the picture", arguments: 1...8)
    func orientationFromJPEG(value: Int) async throws {
        // 64×32: the left half red, the right half blue.
        var pixels: [UInt8] = []
        for _ in 0..<32 {
            for x in 0..<64 { pixels += x < 32 ? [255, 0, 0, 255] : [0, 0, 255, 255] }
        }
        let jpeg = try JPEGCodec.encode(RGBAImage(width: 64, height: 32, pixels: pixels), quality: 95)
        let input = JPEGBuilder.inserting(JPEGBuilder.exifOrientation(UInt16(value)), afterSOI: jpeg)
        let ingested = try await ImageIngestor().ingest(input, role: .image)
        let output = try PNGCodec.decode(ingested.bytes)
        let turned = value >= 5
        #expect(output.width == (turned ? 32 : 64) && output.height == (turned ? 64 : 32))
        // Where the red (left) half ends up: left (1, 4), right (2, 3), top (5, 6), bottom (7, 8).
        func red(_ x: Int, _ y: Int) -> Bool { output.pixels[(y * output.width + x) * 4] > 128 }
        let expectRed: (Int, Int) =
            switch value {
            case 1, 4: (8, 16)
            case 2, 3: (56, 16)
            case 5, 6: (16, 8)
            default: (16, 56)
            }
        #expect(red(expectRed.0, expectRed.1))
    }

    @Test("no metadata survives: EXIF, GPS, text, ICC are all gone")
    func metadataIsStripped() async throws {
        let image = testPattern(width: 40, height: 30, alpha: false)
        var png = try PNGCodec.encode(image, keepAlpha: false)
        png = PNGBuilder.inserting(PNGBuilder.chunk("tEXt", Array("GPS\u{0}51.5N 0.12W".utf8)), intoAfterHeader: png)
        png = PNGBuilder.inserting(PNGBuilder.chunk("tIME", [7, 234, 1, 1, 0, 0, 0]), intoAfterHeader: png)
        let fromPNG = try await ImageIngestor().ingest(png, role: .image)
        // Only the image itself and libpng's sRGB declaration, which says how to read the colours.
        let allowed: Set<String> = ["IHDR", "sRGB", "IDAT", "IEND"]
        #expect(Set(Self.chunkTypes(fromPNG.bytes)).isSubset(of: allowed))

        var jpeg = try JPEGCodec.encode(image, quality: 90)
        jpeg = JPEGBuilder.inserting(JPEGBuilder.exifOrientation(1), afterSOI: jpeg)
        jpeg = JPEGBuilder.inserting(JPEGBuilder.iccSegments(ColorConverter.sRGBProfile()), afterSOI: jpeg)
        jpeg = JPEGBuilder.inserting(JPEGBuilder.segment(0xFE, Array("shot at home".utf8)), afterSOI: jpeg)
        let fromJPEG = try await ImageIngestor().ingest(jpeg, role: .image)
        #expect(fromJPEG.format == "png")
        #expect(Set(Self.chunkTypes(fromJPEG.bytes)).isSubset(of: allowed))
        #expect(!fromJPEG.bytes.contains(sequence: Array("Exif".utf8)))
        #expect(!fromJPEG.bytes.contains(sequence: Array("shot at home".utf8)))
    }

    @Test("trailing bytes after the image's end are ignored and never reach the output")
    func trailingData() async throws {
        let junk = Array("TRAILING-SECRET".utf8) + [UInt8](repeating: 0x5A, count: 1000)
        let image = testPattern(width: 24, height: 16, alpha: false)
        for input in [try PNGCodec.encode(image, keepAlpha: false), try JPEGCodec.encode(image, quality: 90)] {
            let ingested = try await ImageIngestor().ingest(input + junk, role: .image)
            #expect(ingested.width == 24 && ingested.height == 16)
            #expect(!ingested.bytes.contains(sequence: Array("TRAILING-SECRET".utf8)))
        }
    }

    @Test("an embedded ICC profile is converted to sRGB")
    func iccIsConverted() async throws {
        var pixels: [UInt8] = []
        for _ in 0..<(16 * 16) { pixels += [0, 255, 0, 255] }  // pure green in the source space
        let jpeg = try JPEGCodec.encode(RGBAImage(width: 16, height: 16, pixels: pixels), quality: 100)
        let tagged = JPEGBuilder.inserting(JPEGBuilder.iccSegments(ColorConverter.adobeRGBProfile()), afterSOI: jpeg)
        let plain = try PNGCodec.decode(try await ImageIngestor().ingest(jpeg, role: .image).bytes)
        let converted = try PNGCodec.decode(try await ImageIngestor().ingest(tagged, role: .image).bytes)
        // Adobe RGB green lies outside sRGB: it stays fully green but loses its red and blue tint.
        #expect(converted.pixels[1] > 240)
        #expect(converted.pixels != plain.pixels)
    }

    @Test("images are fitted to the backend's size, never scaled up; big JPEGs shrink while decoding")
    func fitting() async throws {
        let big = try PNGCodec.encode(testPattern(width: 1200, height: 800, alpha: false), keepAlpha: false)
        let fitted = try await ImageIngestor(normalization: NormalizationOptions(fit: .maxSide(600))).ingest(
            big, role: .image)
        #expect(fitted.width == 600 && fitted.height == 400)

        let small = try PNGCodec.encode(testPattern(width: 300, height: 200, alpha: false), keepAlpha: false)
        #expect(try await ImageIngestor().ingest(small, role: .image).width == 300)

        let photo = try JPEGCodec.encode(testPattern(width: 1600, height: 1200, alpha: false), quality: 80)
        let ingestor = ImageIngestor(normalization: NormalizationOptions(fit: .maxSide(300)))
        let shrunk = try await ingestor.ingest(photo, role: .image)
        #expect(shrunk.width == 300 && shrunk.height == 225)

        let sizes = ImageIngestor(
            normalization: NormalizationOptions(
                fit: .allowedSizes([.init(width: 512, height: 512), .init(width: 768, height: 512)])))
        let landscape = try await sizes.ingest(big, role: .image)
        #expect(landscape.width == 768 && landscape.height == 512)
    }

    @Test("JPEG output for opaque images, PNG for transparent ones")
    func outputFormats() async throws {
        let ingestor = ImageIngestor(normalization: NormalizationOptions(output: .jpeg(quality: 85)))
        let opaque = try PNGCodec.encode(testPattern(width: 20, height: 20, alpha: false), keepAlpha: false)
        let transparent = try PNGCodec.encode(testPattern(width: 20, height: 20, alpha: true), keepAlpha: true)
        #expect(try await ingestor.ingest(opaque, role: .image).format == "jpeg")
        #expect(try await ingestor.ingest(transparent, role: .image).format == "png")
        #expect(try await ingestor.ingest(opaque, role: .mask).format == "png")
    }

    @Test("a deterministic mutation fuzz of the corpus: every case is accepted or refused with a code")
    func mutationFuzz() async throws {
        var seeds: [[UInt8]] = []
        for name in ["testorig.jpg", "testimgint.jpg", "testimgari.jpg", "testorig.png"] {
            seeds.append(try Corpus.bytes(Corpus.jpeg.appendingPathComponent(name)))
        }
        for name in ["basn6a08.png", "basi3p02.png", "basn0g16.png", "tbrn2c08.png", "s09i3p02.png"] {
            seeds.append(try Corpus.bytes(Corpus.pngSuite.appendingPathComponent(name)))
        }
        let ingestor = ImageIngestor(limits: IngestLimits(maxPixels: 4_000_000))
        var generator = SplitMix64(seed: 0x1A6E)
        var accepted = 0
        var refused: [IngestError.Code: Int] = [:]
        for case_ in 0..<3000 {
            var bytes = seeds[case_ % seeds.count]
            switch generator.next() % 4 {
            case 0:  // flip a few bytes
                for _ in 0..<(1 + Int(generator.next() % 8)) {
                    bytes[Int(generator.next() % UInt64(bytes.count))] ^= UInt8(
                        truncatingIfNeeded: generator.next() | 1)
                }
            case 1:  // truncate
                bytes = Array(bytes.prefix(Int(generator.next() % UInt64(bytes.count))))
            case 2:  // insert random bytes
                let at = Int(generator.next() % UInt64(bytes.count))
                bytes.insert(
                    contentsOf: (0..<(1 + Int(generator.next() % 16))).map { _ in
                        UInt8(truncatingIfNeeded: generator.next())
                    }, at: at)
            default:  // overwrite a run near the start, where the headers are
                let at = Int(generator.next() % UInt64(min(bytes.count, 200)))
                for index in at..<min(bytes.count, at + 4) {
                    bytes[index] = UInt8(truncatingIfNeeded: generator.next())
                }
            }
            do {
                _ = try await ingestor.ingest(bytes, role: .image)
                accepted += 1
            } catch let error as IngestError {
                refused[error.code, default: 0] += 1
            }
        }
        #expect(accepted + refused.values.reduce(0, +) == 3000)
        #expect(refused.count >= 3)  // several distinct codes, not one catch-all
    }
}

extension Array where Element == UInt8 {
    func contains(sequence: [UInt8]) -> Bool {
        guard !sequence.isEmpty, count >= sequence.count else { return false }
        return (0...(count - sequence.count)).contains { self[$0..<$0 + sequence.count].elementsEqual(sequence) }
    }
}
