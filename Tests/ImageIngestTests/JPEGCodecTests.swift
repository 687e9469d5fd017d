import CImageShim
import Foundation
import ImageIngest
import Testing

/// Builds JPEG streams segment by segment, for metadata no encoder here writes.
enum JPEGBuilder {
    /// A marker segment: `FF marker`, a big-endian length that counts itself, then `payload`.
    static func segment(_ marker: UInt8, _ payload: [UInt8]) -> [UInt8] {
        let length = payload.count + 2
        return [0xFF, marker, UInt8(length >> 8), UInt8(length & 0xFF)] + payload
    }

    /// Inserts `segments` right after SOI.
    static func inserting(_ segments: [UInt8], afterSOI jpeg: [UInt8]) -> [UInt8] {
        Array(jpeg[0..<2]) + segments + Array(jpeg[2...])
    }

    /// An APP1 Exif segment whose little-endian IFD0 holds one SHORT orientation entry.
    static func exifOrientation(_ value: UInt16) -> [UInt8] {
        var tiff: [UInt8] = Array("II".utf8) + [42, 0, 8, 0, 0, 0]
        tiff += [1, 0]  // one entry
        tiff += [0x12, 0x01, 3, 0, 1, 0, 0, 0, UInt8(value & 0xFF), UInt8(value >> 8), 0, 0]
        tiff += [0, 0, 0, 0]  // no next IFD
        return segment(0xE1, Array("Exif".utf8) + [0, 0] + tiff)
    }

    /// APP2 ICC_PROFILE segments carrying `profile` in chunks of at most 65,519 bytes.
    static func iccSegments(_ profile: [UInt8]) -> [UInt8] {
        let chunkSize = 65_519
        let count = (profile.count + chunkSize - 1) / chunkSize
        var segments: [UInt8] = []
        for index in 0..<count {
            let chunk = profile[(index * chunkSize)..<min(profile.count, (index + 1) * chunkSize)]
            segments += segment(0xE2, Array("ICC_PROFILE".utf8) + [0, UInt8(index + 1), UInt8(count)] + chunk)
        }
        return segments
    }
}

/// A binary (P6) PPM with a maximum value of 255.
struct PPM {
    var width: Int
    var height: Int
    var rgb: [UInt8]

    init(_ bytes: [UInt8]) throws {
        var index = 0
        func token() -> String {
            while index < bytes.count {
                if bytes[index] == UInt8(ascii: "#") {
                    while index < bytes.count && bytes[index] != 0x0A { index += 1 }
                } else if bytes[index] == 0x20 || (0x09...0x0D).contains(bytes[index]) {
                    index += 1
                } else {
                    break
                }
            }
            let start = index
            while index < bytes.count, bytes[index] > 0x20 { index += 1 }
            return String(decoding: bytes[start..<index], as: UTF8.self)
        }
        let magic = token()
        let width = Int(token()) ?? 0
        let height = Int(token()) ?? 0
        let maximum = Int(token()) ?? 0
        index += 1  // the single whitespace byte before the samples
        try #require(magic == "P6" && maximum == 255 && bytes.count - index == width * height * 3)
        self.width = width
        self.height = height
        self.rgb = Array(bytes[index...])
    }

    /// The mean absolute difference of each of R, G and B between this image and `image`.
    func meanDifference(to image: RGBAImage) -> [Double] {
        var sums = [0, 0, 0]
        for pixel in 0..<(width * height) {
            for channel in 0..<3 {
                sums[channel] += abs(Int(rgb[pixel * 3 + channel]) - Int(image.pixels[pixel * 4 + channel]))
            }
        }
        return sums.map { Double($0) / Double(width * height) }
    }
}

@Suite("JPEG codec")
struct JPEGCodecTests {
    static func corpus(_ name: String) throws -> [UInt8] {
        try Corpus.bytes(Corpus.jpeg.appendingPathComponent(name))
    }

    /// A small JPEG made by the encoder under test.
    static func smallJPEG(width: Int = 48, height: Int = 32) throws -> [UInt8] {
        try JPEGCodec.encode(testPattern(width: width, height: height, alpha: false), quality: 90)
    }

    @Test(
        "corpus JPEGs match the reference PPM",
        arguments: [("testorig.jpg", 1.0), ("testimgint.jpg", 2.0), ("testimgari.jpg", 2.0)])
    func decodesCorpus(_ name: String, bound: Double) throws {
        let decoded = try JPEGCodec.decode(Self.corpus(name))
        #expect(decoded.image.width == 227 && decoded.image.height == 149)
        #expect(decoded.sourceWidth == 227 && decoded.sourceHeight == 149)
        #expect(decoded.image.pixels.count == 227 * 149 * 4)
        #expect(decoded.image.isOpaque)
        #expect(decoded.orientation == 1)
        #expect(decoded.iccProfile == nil)
        #expect(!decoded.isCMYK)
        let reference = try PPM(Self.corpus("testorig.ppm"))
        let difference = reference.meanDifference(to: decoded.image)
        #expect(difference.allSatisfy { $0 < bound }, "\(name): mean difference per channel \(difference)")
    }

    @Test func twelveBitIsUnsupported() throws {
        let error = try #require(throws: IngestError.self) { try JPEGCodec.decode(Self.corpus("monkey12.jpg")) }
        #expect(error.code == .unsupportedFormat)
        #expect(error.message.contains("12-bit"), "\(error.message)")
    }

    @Test(
        "shrink-on-load",
        arguments: [
            (100, 60, 114, 75), (113, 74, 114, 75), (114, 75, 114, 75), (115, 75, 142, 94), (1, 1, 29, 19),
            (227, 149, 227, 149), (500, 500, 227, 149), (60, 0, 86, 56), (0, 100, 171, 112),
        ])
    func shrinkOnLoad(targetWidth: Int, targetHeight: Int, width: Int, height: Int) throws {
        let decoded = try JPEGCodec.decode(
            Self.corpus("testorig.jpg"), targetWidth: targetWidth, targetHeight: targetHeight)
        #expect(decoded.image.width == width && decoded.image.height == height)
        #expect(decoded.image.pixels.count == width * height * 4)
        #expect(decoded.sourceWidth == 227 && decoded.sourceHeight == 149)
        if targetWidth <= 227 && targetHeight <= 149 {
            #expect(decoded.image.width >= targetWidth && decoded.image.height >= targetHeight)
        }
    }

    @Test func frameSizeLimitsApply() throws {
        let bytes = try Self.corpus("testorig.jpg")
        for limits in [IngestLimits(maxWidth: 200), IngestLimits(maxHeight: 100), IngestLimits(maxPixels: 30_000)] {
            let error = try #require(throws: IngestError.self) { try JPEGCodec.decode(bytes, limits: limits) }
            #expect(error.code == .tooManyPixels)
        }
        let error = try #require(throws: IngestError.self) {
            try JPEGCodec.decode(bytes, limits: IngestLimits(maxBytes: 100))
        }
        #expect(error.code == .tooLarge)
        #expect(throws: IngestError(.empty, "no JPEG data")) { try JPEGCodec.decode([]) }
    }

    /// A valid JPEG followed by `count` more scan headers (each with a little entropy-coded data).
    static func manyScans(_ count: Int) throws -> [UInt8] {
        let jpeg = try smallJPEG()
        let scan: [UInt8] = JPEGBuilder.segment(0xDA, [1, 1, 0x00, 0, 63, 0]) + [0x12, 0x34, 0xFF, 0x00, 0x56]
        return Array(jpeg.dropLast(2)) + Array([[UInt8]](repeating: scan, count: count).joined()) + [0xFF, 0xD9]
    }

    @Test func tooManyScansAreRefusedBeforeDecoding() throws {
        let bytes = try Self.manyScans(5_000)
        let error = try #require(throws: IngestError.self) { try JPEGCodec.decode(bytes) }
        #expect(error.code == .tooManyScans, "\(error)")
        #expect(error.code.rawValue == "too_many_scans")
        let few = try #require(throws: IngestError.self) {
            try JPEGCodec.decode(Self.manyScans(64), limits: IngestLimits(maxScans: 64))
        }
        #expect(few.code == .tooManyScans)  // 65 scans in all
        // Within the limit the scans reach the decoder, which refuses them as damage.
        let decoded = try #require(throws: IngestError.self) {
            try JPEGCodec.decode(Self.manyScans(10), limits: IngestLimits(maxScans: 11))
        }
        #expect(decoded.code == .corrupt, "\(decoded)")
        #expect(try JPEGCodec.decode(Self.smallJPEG(), limits: IngestLimits(maxScans: 1)).image.width == 48)
    }

    @Test func truncatedJPEGIsRefused() throws {
        let bytes = try Self.corpus("testorig.jpg")
        for length in [3, 100, 400, bytes.count / 2, bytes.count - 2] {
            let error = try #require(throws: IngestError.self) { try JPEGCodec.decode(Array(bytes.prefix(length))) }
            #expect(error.code == .truncated || error.code == .corrupt, "length \(length): \(error)")
        }
        let half = try #require(throws: IngestError.self) { try JPEGCodec.decode(Array(bytes.prefix(bytes.count / 2))) }
        #expect(half.code == .truncated, "\(half)")
    }

    @Test func randomBytesAfterSOIAreCorrupt() throws {
        var generator = SplitMix64(seed: 0x1234_5678)
        for _ in 0..<20 {
            let bytes: [UInt8] = [0xFF, 0xD8] + (0..<2_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let error = try #require(throws: IngestError.self) { try JPEGCodec.decode(bytes) }
            #expect(error.code == .corrupt, "\(error)")
        }
    }

    @Test func damagedEntropyDataIsCorrupt() throws {
        var bytes = try Self.corpus("testorig.jpg")
        // Overwrite part of the scan data with bytes that are not valid Huffman codes.
        for index in (bytes.count - 1_500)..<(bytes.count - 1_000) { bytes[index] = 0xFF }
        let error = try #require(throws: IngestError.self) { try JPEGCodec.decode(bytes) }
        #expect(error.code == .corrupt || error.code == .truncated, "\(error)")
    }

    @Test(arguments: [75, 90, 100])
    func encodeDecodeRoundTrip(quality: Int) throws {
        let image = testPattern(width: 64, height: 48, alpha: true)
        let encoded = try JPEGCodec.encode(image, quality: quality)
        #expect(ImageFormat(sniffing: encoded) == .jpeg)
        let header = try ImageHeader(reading: encoded)
        #expect(header.width == 64 && header.height == 48 && header.bitDepth == 8 && !header.isInterlaced)
        let decoded = try JPEGCodec.decode(encoded)
        #expect(decoded.image.width == 64 && decoded.image.height == 48 && decoded.image.isOpaque)
        // Compare against the opaque source on smooth content: a flat colour survives almost exactly.
        let flat = RGBAImage(width: 40, height: 24, red: 200, green: 120, blue: 40)
        let flatDecoded = try JPEGCodec.decode(JPEGCodec.encode(flat, quality: quality)).image
        let worst = zip(flat.pixels, flatDecoded.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
        #expect(worst <= 3, "quality \(quality): worst difference \(worst)")
    }

    @Test func roundTripOfAPhotoIsClose() throws {
        let original = try JPEGCodec.decode(Self.corpus("testorig.jpg")).image
        let again = try JPEGCodec.decode(JPEGCodec.encode(original, quality: 95)).image
        var total = 0
        for index in 0..<original.pixels.count where index % 4 != 3 {
            total += abs(Int(original.pixels[index]) - Int(again.pixels[index]))
        }
        let mean = Double(total) / Double(original.width * original.height * 3)
        #expect(mean < 2.5, "mean difference \(mean)")
    }

    @Test func encodeRejectsBadSizes() {
        #expect(throws: IngestError.self) { try JPEGCodec.encode(RGBAImage(width: 0, height: 0, pixels: [])) }
        #expect(throws: IngestError.self) {
            try JPEGCodec.encode(RGBAImage(width: 4, height: 4, pixels: [UInt8](repeating: 0, count: 10)))
        }
        let error = try? #require(throws: IngestError.self) {
            try JPEGCodec.encode(RGBAImage(width: 70_000, height: 1))
        }
        #expect(error?.code == .tooManyPixels)
    }

    @Test func encodedJPEGCarriesNoMetadata() throws {
        let encoded = try Self.smallJPEG()
        var index = 2
        var markers: [UInt8] = []
        while index + 4 <= encoded.count, encoded[index] == 0xFF, encoded[index + 1] != 0xDA {
            markers.append(encoded[index + 1])
            index += 2 + Int(encoded[index + 2]) << 8 + Int(encoded[index + 3])
        }
        #expect(markers.allSatisfy { $0 == 0xE0 || $0 == 0xDB || $0 == 0xC0 || $0 == 0xC4 }, "\(markers)")
    }

    @Test("EXIF orientation", arguments: 1...8)
    func exifOrientation(_ value: Int) throws {
        let tagged = JPEGBuilder.inserting(JPEGBuilder.exifOrientation(UInt16(value)), afterSOI: try Self.smallJPEG())
        let decoded = try JPEGCodec.decode(tagged)
        #expect(decoded.orientation == value)
        #expect(decoded.image.width == 48 && decoded.image.height == 32)
    }

    @Test func malformedExifGivesOrientationOne() throws {
        let jpeg = try Self.smallJPEG()
        let good = JPEGBuilder.exifOrientation(6)
        var variants: [[UInt8]] = []
        // IFD offset past the end, huge, or inside the header.
        for offset: [UInt8] in [[0xFF, 0, 0, 0], [0xFF, 0xFF, 0xFF, 0xFF], [2, 0, 0, 0], [0xF0, 0xFF, 0xFF, 0xFF]] {
            var segment = good
            segment.replaceSubrange(14..<18, with: offset)
            variants.append(segment)
        }
        // An invalid value, a wrong type, a bad byte order.
        var value = good
        value[28] = 9
        variants.append(value)
        var type = good
        type[22] = 7  // UNDEFINED: neither SHORT nor LONG
        variants.append(type)
        var order = good
        order[10] = UInt8(ascii: "X")
        variants.append(order)
        // Cut short inside the header and inside the entry.
        variants.append(JPEGBuilder.segment(0xE1, Array("Exif".utf8) + [0, 0, 0x49, 0x49, 42]))
        variants.append(JPEGBuilder.segment(0xE1, Array(good[4..<26])))
        for segment in variants {
            let decoded = try JPEGCodec.decode(JPEGBuilder.inserting(segment, afterSOI: jpeg))
            #expect(decoded.orientation == 1)
        }
        #expect(ig_exif_orientation(nil, 0) == 1)
        // A directory whose entry count runs past the data: the entries that are there are read.
        var count = good
        count.replaceSubrange(18..<20, with: [0xFF, 0xFF])
        #expect(try JPEGCodec.decode(JPEGBuilder.inserting(count, afterSOI: jpeg)).orientation == 6)
        // Big-endian TIFF works too.
        let motorola: [UInt8] = Array("MM".utf8) + [0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 5, 0, 0]
        #expect(ig_exif_orientation(motorola, motorola.count) == 5)
    }

    @Test("ICC profile extraction", arguments: ["test1.icc", "test3.icc"])
    func iccProfile(_ name: String) throws {
        let profile = try Self.corpus(name)
        let tagged = JPEGBuilder.inserting(JPEGBuilder.iccSegments(profile), afterSOI: try Self.smallJPEG())
        let decoded = try JPEGCodec.decode(tagged)
        #expect(decoded.iccProfile == profile)
        #expect(!decoded.isCMYK)
    }
}

@Suite("PNG metadata")
struct PNGMetadataTests {
    @Test("ICC profile", arguments: ["monkey16.png", "vgl_5674_0098.png"])
    func iccProfile(_ name: String) throws {
        let bytes = try Corpus.bytes(Corpus.jpeg.appendingPathComponent(name))
        let decoded = try PNGCodec.decodeWithMetadata(bytes)
        let profile = try #require(decoded.iccProfile)
        #expect(profile.count > 128)
        // An ICC header: the declared size, then "acsp" at offset 36.
        let size = profile[0..<4].reduce(0) { $0 << 8 | Int($1) }
        #expect(size == profile.count)
        #expect(Array(profile[36..<40]) == Array("acsp".utf8))
        #expect(decoded.orientation == 1)
        #expect(!decoded.isCMYK)
        #expect(decoded.image == (try PNGCodec.decode(bytes)))
        #expect(decoded.sourceWidth == decoded.image.width && decoded.sourceHeight == decoded.image.height)
    }

    @Test func pngSuiteHasNoProfiles() throws {
        for file in try Corpus.files(in: Corpus.pngSuite, suffix: ".png") where !file.lastPathComponent.hasPrefix("x") {
            let bytes = try Corpus.bytes(file)
            let decoded = try PNGCodec.decodeWithMetadata(bytes)
            #expect(decoded.iccProfile == nil)
            #expect(decoded.orientation == 1)
            #expect(decoded.image == (try PNGCodec.decode(bytes)))
        }
    }

    @Test("eXIf orientation", arguments: 1...8)
    func exifOrientation(_ value: Int) throws {
        let png = try PNGCodec.encode(testPattern(width: 8, height: 8, alpha: false))
        let tiff: [UInt8] =
            Array("MM".utf8) + [
                0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, UInt8(value), 0, 0, 0, 0, 0, 0,
            ]
        let tagged = PNGBuilder.inserting(PNGBuilder.chunk("eXIf", tiff), intoAfterHeader: png)
        let decoded = try PNGCodec.decodeWithMetadata(tagged)
        #expect(decoded.orientation == value)
        #expect(try PNGCodec.decode(tagged) == decoded.image)
        // After the image data too.
        let trailing = Array(png.dropLast(12)) + PNGBuilder.chunk("eXIf", tiff) + Array(png.suffix(12))
        #expect(try PNGCodec.decodeWithMetadata(trailing).orientation == value)
    }

    @Test func malformedExIfGivesOrientationOne() throws {
        let png = try PNGCodec.encode(testPattern(width: 8, height: 8, alpha: false))
        let tiff: [UInt8] = Array("II".utf8) + [42, 0, 0xFF, 0xFF, 0, 0, 1, 0]
        let decoded = try PNGCodec.decodeWithMetadata(
            PNGBuilder.inserting(PNGBuilder.chunk("eXIf", tiff), intoAfterHeader: png))
        #expect(decoded.orientation == 1)
    }
}

/// A small deterministic generator, so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1330_11EB
        return z ^ (z >> 31)
    }
}

@Suite("JPEG fixtures")
struct JPEGFixtureTests {
    /// The mean R, G, B of the left and right halves of a 16×16 image.
    static func halves(_ image: RGBAImage) -> (left: [Int], right: [Int]) {
        var left = [0, 0, 0]
        var right = [0, 0, 0]
        for y in 0..<16 {
            for x in 0..<16 {
                for channel in 0..<3 {
                    let value = Int(image.pixels[(y * 16 + x) * 4 + channel])
                    // Skip the two columns next to the edge, where chroma subsampling blends the halves.
                    if x < 6 { left[channel] += value } else if x >= 10 { right[channel] += value }
                }
            }
        }
        return (left.map { $0 / 96 }, right.map { $0 / 96 })
    }

    static func isClose(_ values: [Int], _ expected: [Int], tolerance: Int = 6) -> Bool {
        zip(values, expected).allSatisfy { abs($0 - $1) <= tolerance }
    }

    @Test func progressiveDecodes() throws {
        let bytes = JPEGFixtures.progressive
        #expect(try ImageHeader(reading: bytes).isInterlaced)
        let decoded = try JPEGCodec.decode(bytes)
        #expect(decoded.image.width == 16 && decoded.image.height == 16 && !decoded.isCMYK)
        let (left, right) = Self.halves(decoded.image)
        #expect(Self.isClose(left, [250, 20, 20]), "\(left)")
        #expect(Self.isClose(right, [20, 20, 250]), "\(right)")
        let shrunk = try JPEGCodec.decode(bytes, targetWidth: 4, targetHeight: 4)
        #expect(shrunk.image.width == 4 && shrunk.image.height == 4)
    }

    @Test func progressiveScansAreCounted() throws {
        let bytes = JPEGFixtures.progressive
        #expect(try JPEGCodec.decode(bytes, limits: IngestLimits(maxScans: 10)).image.width == 16)
        let error = try #require(throws: IngestError.self) {
            try JPEGCodec.decode(bytes, limits: IngestLimits(maxScans: 9))
        }
        #expect(error.code == .tooManyScans)
    }

    @Test("Adobe CMYK and YCCK", arguments: ["cmyk", "ycck"])
    func adobeCMYK(_ kind: String) throws {
        let bytes = kind == "cmyk" ? JPEGFixtures.adobeCMYK : JPEGFixtures.adobeYCCK
        let decoded = try JPEGCodec.decode(bytes)
        #expect(decoded.isCMYK)
        #expect(decoded.image.width == 16 && decoded.image.height == 16 && decoded.image.isOpaque)
        let (left, right) = Self.halves(decoded.image)
        #expect(Self.isClose(left, [255, 0, 0]), "\(left)")
        #expect(Self.isClose(right, [0, 0, 128]), "\(right)")
    }

    @Test("a CMYK JPEG's ICC profile is applied by the ingest pipeline", arguments: ["cmyk", "ycck"])
    func adobeCMYKWithProfile(_ kind: String) async throws {
        let plain = kind == "cmyk" ? JPEGFixtures.adobeCMYK : JPEGFixtures.adobeYCCK
        let profile = try JPEGCodecTests.corpus("test1.icc")  // a CMYK printer profile
        let tagged = JPEGBuilder.inserting(JPEGBuilder.iccSegments(profile), afterSOI: plain)
        let ingestor = ImageIngestor(threads: 1)
        let naive = try PNGCodec.decode(try await ingestor.ingest(plain, role: .image).bytes)
        let managed = try PNGCodec.decode(try await ingestor.ingest(tagged, role: .image).bytes)
        #expect(naive == (try JPEGCodec.decode(plain).image))
        // The profile converts the same inks: the left half stays a red, the right half a blue, but
        // the colours are the printer's, not the naive formula's.
        #expect(managed != naive)
        let (left, right) = Self.halves(managed)
        #expect(left[0] > 150 && left[1] < 110 && left[2] < 110, "\(left)")
        #expect(right[2] > right[0] + 30 && right[2] > right[1] + 30, "\(right)")
        #expect(managed.isOpaque)
    }
}
