import ArgumentParser
import Foundation
import ImageIngest

struct IngestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Check uploads as the worker would, and say why any is refused.",
        discussion: """
            For each file: the verdict, the reason code when refused, the facts read from its \
            headers (format, size, bit depth, orientation, frames) and the normalized result. The \
            format comes from the file's bytes, never its name. Exits 1 when any file is refused.
            """)

    @OptionGroup var output: OutputOptions
    @Argument(help: "Image files.") var files: [String]
    @Option(help: "Write normalized images to this folder.") var out: String?
    @Option(help: "Largest upload in bytes. Default 50000000.") var maxBytes: Int = IngestLimits().maxBytes
    @Option(help: "Most pixels (width × height). Default 40000000.") var maxPixels: Int = IngestLimits().maxPixels
    @Option(help: "Largest width or height of an upload. Default 16384.") var maxDimension: Int = IngestLimits()
        .maxWidth
    @Option(help: "Fit the normalized image so its longer side is at most this. Default 1536.") var maxSide: Int = 1536
    @Option(help: "Fit inside WIDTHxHEIGHT instead of --max-side.") var fit: String?
    @Flag(help: "Normalize opaque images to JPEG instead of PNG.") var jpeg = false
    @Flag(help: "Check the files as edit masks (PNG with alpha).") var mask = false
    @OptionGroup var png: PNGOutputOptions

    func validate() throws {
        if let fit, FitPolicy.Size(parsing: fit) == nil { throw ValidationError("--fit: WIDTHxHEIGHT, e.g. 1024x1024") }
        guard maxSide > 0, maxPixels > 0, maxBytes > 0, maxDimension > 0 else {
            throw ValidationError("limits must be positive")
        }
    }

    func run() async throws {
        let limits = IngestLimits(
            maxBytes: maxBytes, maxWidth: maxDimension, maxHeight: maxDimension, maxPixels: maxPixels)
        let policy =
            fit.flatMap(FitPolicy.Size.init(parsing:)).map { FitPolicy.allowedSizes([$0]) } ?? .maxSide(maxSide)
        let ingestor = ImageIngestor(
            limits: limits,
            normalization: NormalizationOptions(
                fit: policy, output: jpeg ? .jpeg(quality: 90) : .png, png: png.encoding))
        if let out { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
        var refused = 0
        for path in files {
            guard let data = FileManager.default.contents(atPath: path) else {
                refused += 1
                report(path, ["verdict": "refused", "code": "unreadable", "message": "cannot read the file"])
                continue
            }
            let bytes = Array(data)
            var facts: [String: Any] = [
                "file": path, "bytes": bytes.count, "sniffed": ImageFormat(sniffing: bytes).rawValue,
            ]
            let started = ContinuousClock.now
            do {
                let image = try await ingestor.ingest(bytes, role: mask ? .mask : .image)
                facts["elapsed_ms"] = Self.milliseconds(since: started)
                facts["verdict"] = "accepted"
                if let source = image.source {
                    facts["source"] =
                        [
                            "format": source.format.rawValue, "width": source.width, "height": source.height,
                            "bit_depth": source.bitDepth, "components": source.components,
                            "interlaced": source.isInterlaced,
                            "frames": 1, "orientation": image.sourceOrientation,
                            "icc_profile": image.sourceHadICCProfile,
                        ] as [String: Any]
                }
                var normalized: [String: Any] = [
                    "format": image.format, "width": image.width, "height": image.height, "bytes": image.bytes.count,
                ]
                if let out {
                    let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
                    let target = (out as NSString).appendingPathComponent(
                        "\(name).\(image.format == "jpeg" ? "jpg" : "png")")
                    try Data(image.bytes).write(to: URL(fileURLWithPath: target))
                    normalized["path"] = target
                }
                facts["normalized"] = normalized
            } catch let error as IngestError {
                facts["elapsed_ms"] = Self.milliseconds(since: started)
                refused += 1
                facts["verdict"] = "refused"
                facts["code"] = error.code.rawValue
                facts["message"] = error.message
                if let header = try? ImageHeader(reading: bytes) {
                    facts["source"] =
                        [
                            "format": header.format.rawValue, "width": header.width, "height": header.height,
                            "bit_depth": header.bitDepth, "frames": header.isAnimated ? "several" : "1",
                        ] as [String: Any]
                }
            }
            report(path, facts)
        }
        if refused > 0 { throw ExitCode(1) }
    }

    /// The time the verdict took (sniff to encoded result), rounded to microseconds.
    static func milliseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        let microseconds = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        return Double(microseconds) / 1000
    }

    private func report(_ path: String, _ facts: [String: Any]) {
        var facts = facts
        facts["file"] = path
        if output.json {
            printJSON(facts)
            return
        }
        let verdict = facts["verdict"] as? String ?? "?"
        var line = "\(path): \(verdict)"
        if let elapsed = facts["elapsed_ms"] as? Double { line += " in \(elapsed) ms" }
        if let code = facts["code"] as? String { line += " (\(code)): \(facts["message"] as? String ?? "")" }
        if let source = facts["source"] as? [String: Any] {
            line += "\n  source: \(source["format"] ?? "?") \(source["width"] ?? "?")x\(source["height"] ?? "?")"
            line += ", \(source["bit_depth"] ?? "?")-bit, frames \(source["frames"] ?? "?")"
            if let orientation = source["orientation"] { line += ", orientation \(orientation)" }
            if source["icc_profile"] as? Bool == true { line += ", ICC profile" }
        }
        if let normalized = facts["normalized"] as? [String: Any] {
            line +=
                "\n  normalized: \(normalized["format"] ?? "?") \(normalized["width"] ?? "?")x\(normalized["height"] ?? "?")"
            line += ", \(normalized["bytes"] ?? "?") bytes"
            if let written = normalized["path"] { line += " → \(written)" }
        }
        print(line)
    }
}

extension FitPolicy.Size {
    /// Parses `WIDTHxHEIGHT`.
    init?(parsing text: String) {
        let parts = text.lowercased().split(separator: "x")
        guard parts.count == 2, let width = Int(parts[0]), let height = Int(parts[1]), width > 0, height > 0 else {
            return nil
        }
        self.init(width: width, height: height)
    }
}

/// How normalized PNGs are compressed; shared by `ingest` and `worker`.
struct PNGOutputOptions: ParsableArguments {
    @Option(help: "zlib level of normalized PNGs, 0 (stored) to 9. Default 6.")
    var pngLevel: Int = PNGEncoding().level
    @Option(
        help: """
            PNG compression: automatic (per image: run-length coding for photos, deflate for \
            screenshots), rle or deflate. Default automatic.
            """)
    var pngStrategy: PNGEncoding.Strategy = PNGEncoding().strategy

    func validate() throws {
        guard (0...9).contains(pngLevel) else { throw ValidationError("--png-level: 0 to 9") }
    }

    var encoding: PNGEncoding { PNGEncoding(level: pngLevel, strategy: pngStrategy) }
}

extension PNGEncoding.Strategy: ExpressibleByArgument {}
