import Foundation
import ImageIngest

/// The public test corpora (PngSuite, libjpeg-turbo's test images) in `Tests/Corpus`, or where
/// `IMAGEGEN_CORPUS_DIR` points.
enum Corpus {
    /// The package root: the nearest ancestor of this file that holds a `Package.swift`.
    static let packageRoot: URL = {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory
            }
            directory = directory.deletingLastPathComponent()
        }
        fatalError("no Package.swift above \(#filePath)")
    }()

    static let root: URL = {
        if let directory = ProcessInfo.processInfo.environment["IMAGEGEN_CORPUS_DIR"] {
            return URL(fileURLWithPath: directory)
        }
        return packageRoot.appendingPathComponent("Tests/Corpus")
    }()
    static let pngSuite = root.appendingPathComponent("pngsuite")
    static let jpeg = root.appendingPathComponent("jpeg")

    static func bytes(_ url: URL) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: url))
    }

    /// The files in `directory` whose names end with `suffix`, sorted.
    static func files(in directory: URL, suffix: String) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(suffix) }
            .sorted()
            .map { directory.appendingPathComponent($0) }
    }
}

/// Builds PNG streams chunk by chunk, for headers no encoder would write.
enum PNGBuilder {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1)))
            }
        }
        return crc ^ 0xFFFF_FFFF
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typeAndData = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + typeAndData + bigEndian(crc32(typeAndData))
    }

    static func ihdr(width: UInt32, height: UInt32, depth: UInt8 = 8, colorType: UInt8 = 6) -> [UInt8] {
        chunk("IHDR", bigEndian(width) + bigEndian(height) + [depth, colorType, 0, 0, 0])
    }

    /// A PNG whose header declares `width`×`height` followed by `idatBytes` bytes of filler image data.
    static func header(width: UInt32, height: UInt32, idatBytes: Int = 4096) -> [UInt8] {
        signature + ihdr(width: width, height: height)
            + chunk("IDAT", [0x78, 0x9C] + [UInt8](repeating: 0xAB, count: idatBytes))
            + chunk("IEND", [])
    }

    /// Inserts `chunk` right after IHDR.
    static func inserting(_ chunk: [UInt8], intoAfterHeader png: [UInt8]) -> [UInt8] {
        Array(png[0..<33]) + chunk + Array(png[33...])
    }
}

/// A small opaque test picture with distinct pixels.
func testPattern(width: Int, height: Int, alpha: Bool) -> RGBAImage {
    var pixels: [UInt8] = []
    pixels.reserveCapacity(width * height * 4)
    for y in 0..<height {
        for x in 0..<width {
            let a: UInt8 = alpha ? UInt8((x + y) & 0xFF) : 255
            pixels += [UInt8(x * 7 & 0xFF), UInt8(y * 13 & 0xFF), UInt8((x ^ y) & 0xFF), a]
        }
    }
    return RGBAImage(width: width, height: height, pixels: pixels)
}

/// Reference decodes of the PngSuite by an independent decoder (pypng, `Tests/Tools/png_reference.py`),
/// made once per test run into a temporary folder.
enum PNGReference {
    struct Decode {
        var width: Int
        var height: Int
        var pixels: [UInt8]
    }

    private static let folder = Task { () throws -> URL in
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(
            "imagegen-pngref-\(UUID().uuidString)")
        let files = try Corpus.files(in: Corpus.pngSuite, suffix: ".png").filter {
            !$0.lastPathComponent.hasPrefix("x")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments =
            ["python3", Corpus.packageRoot.appendingPathComponent("Tests/Tools/png_reference.py").path, output.path]
            + files.map(\.path)
        process.standardOutput = FileHandle.nullDevice
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        guard status == 0 else {
            throw IngestError(
                .corrupt, "png_reference.py failed (status \(status)); is pypng installed? see scripts/setup.sh")
        }
        return output
    }

    static func decode(_ name: String) async throws -> Decode {
        let folder = try await folder.value
        let info =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: folder.appendingPathComponent(name + ".json"))) as? [String: Any] ?? [:]
        return Decode(
            width: info["width"] as? Int ?? 0, height: info["height"] as? Int ?? 0,
            pixels: try Corpus.bytes(folder.appendingPathComponent(name + ".rgba")))
    }
}
