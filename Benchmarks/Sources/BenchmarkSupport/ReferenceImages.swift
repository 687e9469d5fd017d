import ImageIngest

/// The reference images of the benchmarks, drawn deterministically (the same bytes on every run
/// and machine for the same codec libraries), so no test image has to be downloaded or committed.
public enum ReferenceImages {
    /// A photo-like opaque picture: sky and ground gradients, soft round shapes, fine grain
    /// (which keeps JPEG and PNG from compressing it unrealistically well). Default 4000 × 3000,
    /// 12 megapixels.
    public static func photo(width: Int = 4000, height: Int = 3000, seed: UInt64 = 1) -> RGBAImage {
        var random = SplitMix(seed: seed)
        let blobs = (0..<24).map { _ in
            Blob(
                x: Int(random.next() % UInt64(width)), y: Int(random.next() % UInt64(height)),
                radius: Int(random.next() % UInt64(max(1, min(width, height) / 5))) + min(width, height) / 40,
                colour: (UInt8(random.next() & 255), UInt8(random.next() & 255), UInt8(random.next() & 255)))
        }
        var pixels = [UInt8](repeating: 255, count: width * height * 4)
        let horizon = height * 11 / 20
        pixels.withUnsafeMutableBufferPointer { buffer in
            for y in 0..<height {
                var grain = SplitMix(seed: seed &+ UInt64(y) &* 0x9E37_79B9)
                let sky = y < horizon
                let t = sky ? y * 255 / max(1, horizon) : (y - horizon) * 255 / max(1, height - horizon)
                let baseR = sky ? 70 + t / 3 : 90 - t / 4
                let baseG = sky ? 120 + t / 4 : 110 - t / 5
                let baseB = sky ? 200 - t / 5 : 60 - t / 6
                for x in 0..<width {
                    var r = baseR + (x * 40 / width)
                    var g = baseG
                    var b = baseB
                    for blob in blobs {
                        let dx = x - blob.x
                        let dy = y - blob.y
                        let d2 = dx * dx + dy * dy
                        let r2 = blob.radius * blob.radius
                        if d2 < r2 {
                            // Soft edge: weight 0...256 falling off towards the rim.
                            let w = 256 - d2 * 256 / r2
                            r += (Int(blob.colour.0) - r) * w / 512
                            g += (Int(blob.colour.1) - g) * w / 512
                            b += (Int(blob.colour.2) - b) * w / 512
                        }
                    }
                    let noise = Int(grain.next() & 15) - 8
                    let offset = (y * width + x) * 4
                    buffer[offset] = clamp(r + noise)
                    buffer[offset + 1] = clamp(g + noise)
                    buffer[offset + 2] = clamp(b + noise)
                }
            }
        }
        return RGBAImage(width: width, height: height, pixels: pixels)
    }

    /// A synthetic RGBA picture with an alpha gradient, stripes and noise: the kind of large
    /// transparent PNG a user uploads for an edit. Default 4096 × 4096.
    public static func rgbaArt(side: Int = 4096, seed: UInt64 = 2) -> RGBAImage {
        var pixels = [UInt8](repeating: 0, count: side * side * 4)
        pixels.withUnsafeMutableBufferPointer { buffer in
            for y in 0..<side {
                var grain = SplitMix(seed: seed &+ UInt64(y) &* 0x85EB_CA6B)
                for x in 0..<side {
                    let offset = (y * side + x) * 4
                    let stripe = ((x + y) / 64) & 1 == 0
                    let noise = Int(grain.next() & 7)
                    buffer[offset] = UInt8(truncatingIfNeeded: (x * 255 / side) + noise)
                    buffer[offset + 1] = UInt8(truncatingIfNeeded: (y * 255 / side) + noise)
                    buffer[offset + 2] = stripe ? 200 : UInt8(truncatingIfNeeded: 40 + noise)
                    buffer[offset + 3] = UInt8(truncatingIfNeeded: 255 - ((x + y) * 255 / (2 * side)))
                }
            }
        }
        return RGBAImage(width: side, height: side, pixels: pixels)
    }

    /// ``photo(width:height:seed:)`` as a JPEG of quality 90.
    public static func photoJPEG(width: Int = 4000, height: Int = 3000) throws -> [UInt8] {
        try JPEGCodec.encode(photo(width: width, height: height), quality: 90)
    }

    /// ``rgbaArt(side:seed:)`` as a PNG.
    public static func rgbaPNG(side: Int = 4096) throws -> [UInt8] {
        try PNGCodec.encode(rgbaArt(side: side))
    }

    private struct Blob {
        var x: Int
        var y: Int
        var radius: Int
        var colour: (UInt8, UInt8, UInt8)
    }

    @inline(__always)
    private static func clamp(_ value: Int) -> UInt8 { UInt8(max(0, min(255, value))) }
}

/// SplitMix64: a tiny deterministic generator.
public struct SplitMix: Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
