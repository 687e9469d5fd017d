import Foundation
import ImageIngest
import Testing

@Suite("JPEG probe")
struct JPEGProbeTests {
    @Test(
        "corpus JPEGs",
        arguments: [
            ("testorig.jpg", 8), ("testimgint.jpg", 8), ("testimgari.jpg", 8), ("monkey12.jpg", 12),
        ])
    func probesCorpus(_ name: String, precision: Int) throws {
        let header = try ImageHeader(reading: Corpus.bytes(Corpus.jpeg.appendingPathComponent(name)))
        #expect(header.format == .jpeg)
        #expect(header.bitDepth == precision)
        #expect(!header.isAnimated)
        if name.hasPrefix("test") {
            #expect(header.width == 227 && header.height == 149)
            #expect(header.components == 3)
        } else {
            #expect(header.width == 149 && header.height == 227)
        }
    }

    @Test func everyCorpusJPEGProbes() throws {
        let files = try Corpus.files(in: Corpus.jpeg, suffix: ".jpg")
        #expect(files.count == 4)
        for file in files {
            let header = try ImageHeader(reading: Corpus.bytes(file))
            #expect(header.width > 0 && header.width <= 16_384 && header.height > 0 && header.height <= 16_384)
        }
    }

    @Test(
        "8-bit JPEGs are decoded and normalized to PNG",
        arguments: ["testorig.jpg", "testimgint.jpg", "testimgari.jpg"])
    func normalizesToPNG(_ name: String) async throws {
        let bytes = try Corpus.bytes(Corpus.jpeg.appendingPathComponent(name))
        let ingested = try await ImageIngestor().ingest(bytes, role: .image)
        #expect(ingested.format == "png")
        #expect(ingested.width == 227 && ingested.height == 149)
        #expect(try PNGCodec.decode(ingested.bytes).width == 227)
        #expect(ingested.originalByteCount == bytes.count)
    }

    @Test func twelveBitJPEGIsUnsupported() async throws {
        let bytes = try Corpus.bytes(Corpus.jpeg.appendingPathComponent("monkey12.jpg"))
        let error = await #expect(throws: IngestError.self) { try await ImageIngestor().ingest(bytes, role: .image) }
        #expect(error?.code == .unsupportedFormat)
    }

    @Test func jpegMaskIsRefused() async throws {
        let bytes = try Corpus.bytes(Corpus.jpeg.appendingPathComponent("testorig.jpg"))
        let error = await #expect(throws: IngestError.self) { try await ImageIngestor().ingest(bytes, role: .mask) }
        #expect(error?.code == .unsupportedFormat)
    }

    @Test func truncatedJPEGHeaderIsRefused() async throws {
        let bytes = try Corpus.bytes(Corpus.jpeg.appendingPathComponent("testorig.jpg"))
        for length in [3, 20, 100] {
            let error = await #expect(throws: IngestError.self) {
                try await ImageIngestor().ingest(Array(bytes.prefix(length)), role: .image)
            }
            #expect(error?.code == .truncated, "length \(length)")
        }
    }

    @Test func jpegOverTheSizeLimitIsRefused() async throws {
        let bytes = try Corpus.bytes(Corpus.jpeg.appendingPathComponent("testorig.jpg"))
        let small = ImageIngestor(limits: IngestLimits(maxWidth: 200))
        let error = await #expect(throws: IngestError.self) { try await small.ingest(bytes, role: .image) }
        #expect(error?.code == .tooManyPixels)
    }
}
