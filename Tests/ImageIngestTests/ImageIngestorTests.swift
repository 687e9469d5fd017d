import Foundation
import ImageIngest
import Testing

@Suite("Ingestor")
struct ImageIngestorTests {
    @Test func emptyInputIsRefused() async {
        let error = await #expect(throws: IngestError.self) { try await ImageIngestor().ingest([], role: .image) }
        #expect(error?.code == .empty)
        #expect(error?.isRetryable == false)
    }

    @Test func oversizeInputIsRefusedFirst() async throws {
        let limits = IngestLimits(maxBytes: 1_000)
        // Not even a valid image: the size is checked before the content is looked at.
        let garbage = [UInt8](repeating: 0x42, count: 1_001)
        let error = await #expect(throws: IngestError.self) {
            try await ImageIngestor(limits: limits).ingest(garbage, role: .image)
        }
        #expect(error?.code == .tooLarge)

        var state: UInt32 = 12_345
        let noise = (0..<64 * 64 * 4).map { _ -> UInt8 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(state >> 24)
        }
        let png = try PNGCodec.encode(RGBAImage(width: 64, height: 64, pixels: noise))
        #expect(png.count > 1_000)
        let pngError = await #expect(throws: IngestError.self) {
            try await ImageIngestor(limits: limits).ingest(png, role: .image)
        }
        #expect(pngError?.code == .tooLarge)
    }

    @Test func defaultLimits() {
        let limits = IngestLimits()
        #expect(limits.maxBytes == 50_000_000)
        #expect(limits.maxWidth == 16_384 && limits.maxHeight == 16_384)
        #expect(limits.maxPixels == 40_000_000)
    }

    @Test(
        "unsupported corpus files are refused under any name",
        arguments: [
            "jpeg/shira_bird8.bmp", "jpeg/vgl_6434_0018a.bmp", "jpeg/vgl_6548_0026a.bmp", "jpeg/monkey16.pgm",
            "jpeg/testorig.ppm", "jpeg/test1.icc",
        ])
    func unsupportedCorpusFile(_ path: String) async throws {
        let bytes = try Corpus.bytes(Corpus.root.appendingPathComponent(path))
        for role in [IngestRole.image, .mask] {
            let error = await #expect(throws: IngestError.self) { try await ImageIngestor().ingest(bytes, role: role) }
            #expect(error?.code == .unsupportedFormat)
        }
        #expect(throws: IngestError.self) { try ImageHeader(reading: bytes) }
        #expect(throws: IngestError.self) { try PNGCodec.decode(bytes) }
    }

    @Test func unsupportedFormatsAreNamed() async throws {
        let gif = Array("GIF89a".utf8) + [1, 0, 1, 0, 0, 0, 0, 0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3B]
        let error = await #expect(throws: IngestError.self) { try await ImageIngestor().ingest(gif, role: .image) }
        #expect(error?.code == .unsupportedFormat)
        #expect(error?.message.contains("GIF") == true)

        let bmp = try Corpus.bytes(Corpus.jpeg.appendingPathComponent("shira_bird8.bmp"))
        let bmpError = await #expect(throws: IngestError.self) { try await ImageIngestor().ingest(bmp, role: .image) }
        #expect(bmpError?.message.contains("BMP") == true)
    }

    @Test func opaqueImageIsStoredWithoutAlpha() async throws {
        let png = try PNGCodec.encode(testPattern(width: 16, height: 16, alpha: false), keepAlpha: true)
        #expect(try ImageHeader(reading: png).components == 4)
        let ingested = try await ImageIngestor().ingest(png, role: .image)
        #expect(try ImageHeader(reading: ingested.bytes).components == 3)
        let mask = try await ImageIngestor().ingest(png, role: .mask)
        #expect(try ImageHeader(reading: mask.bytes).components == 4)
    }

    @Test func maskMustMatchTheImage() async throws {
        let ingestor = ImageIngestor()
        let image = try await ingestor.ingest(
            PNGCodec.encode(testPattern(width: 16, height: 16, alpha: false)), role: .image)
        let mask = try await ingestor.ingest(
            PNGCodec.encode(testPattern(width: 16, height: 8, alpha: true)), role: .mask)
        #expect(throws: IngestError.self) { try ImageIngestor.checkMask(mask, matches: image) }
        try ImageIngestor.checkMask(image, matches: image)
    }

    @Test func manyConcurrentIngestsShareThePool() async throws {
        let ingestor = ImageIngestor(threads: 2)
        let png = try PNGCodec.encode(testPattern(width: 32, height: 32, alpha: true))
        let results = try await withThrowingTaskGroup(of: IngestedImage.self) { group in
            for _ in 0..<50 {
                group.addTask { try await ingestor.ingest(png, role: .image) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 50)
        #expect(Set(results.map(\.bytes)).count == 1)
    }
}
