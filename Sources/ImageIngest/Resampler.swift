#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Decides the size an ingested image is scaled to. Images are only ever scaled down, never up.
public struct FitPolicy: Sendable, Hashable {
    /// A width and height in pixels.
    public struct Size: Sendable, Hashable, CustomStringConvertible {
        /// Width in pixels.
        public var width: Int
        /// Height in pixels.
        public var height: Int

        /// Creates a size.
        public init(width: Int, height: Int) {
            self.width = width
            self.height = height
        }

        /// `WIDTHxHEIGHT`.
        public var description: String { "\(width)x\(height)" }
    }

    /// How the target size is chosen.
    public enum Mode: Sendable, Hashable {
        /// Scale down, keeping the aspect ratio, so that the longer side is at most this many pixels.
        /// An image already within the bound keeps its size.
        case maxSide(Int)
        /// Choose the allowed size whose aspect ratio is closest to the image's (compared as
        /// `|log(ratio / imageRatio)|`; on a tie the earlier size in the list wins), then scale the
        /// image down, keeping its aspect ratio, so that it fits inside that size ("contain").
        ///
        /// No letterboxing or cropping is done: the result is the scaled image itself, whose size is
        /// within the chosen allowed size and may be smaller than it on one side. An image that
        /// already fits keeps its size. Sizes with a side below 1 are ignored; an empty list (or one
        /// with only such sizes) leaves every image at its size.
        case allowedSizes([Size])
    }

    /// How the target size is chosen. Default `.maxSide(1536)`.
    public var mode: Mode

    /// Creates a policy; the default is `.maxSide(1536)`.
    public init(mode: Mode = .maxSide(1536)) {
        self.mode = mode
    }

    /// A policy that bounds the longer side to `pixels`.
    public static func maxSide(_ pixels: Int) -> FitPolicy { FitPolicy(mode: .maxSide(pixels)) }

    /// A policy that fits images inside the allowed size closest to their aspect ratio.
    public static func allowedSizes(_ sizes: [Size]) -> FitPolicy { FitPolicy(mode: .allowedSizes(sizes)) }

    /// The size an image of `width`×`height` is scaled to: never larger than the input on either side,
    /// and at least 1×1. A non-positive input size is returned unchanged.
    public func targetSize(width: Int, height: Int) -> (width: Int, height: Int) {
        guard width > 0, height > 0 else { return (width, height) }
        switch mode {
        case .maxSide(let limit):
            return Self.contain(width: width, height: height, in: Size(width: limit, height: limit))
        case .allowedSizes(let sizes):
            let ratio = Double(width) / Double(height)
            var best: Size?
            var bestDistance = Double.infinity
            for size in sizes where size.width > 0 && size.height > 0 {
                let distance = abs(log(Double(size.width) / Double(size.height) / ratio))
                if distance < bestDistance - 1e-12 {
                    best = size
                    bestDistance = distance
                }
            }
            guard let best else { return (width, height) }
            return Self.contain(width: width, height: height, in: best)
        }
    }

    /// Scales `width`×`height` down (never up), keeping the aspect ratio, to fit inside `box`.
    static func contain(width: Int, height: Int, in box: Size) -> (width: Int, height: Int) {
        let boxWidth = max(1, box.width)
        let boxHeight = max(1, box.height)
        guard width > boxWidth || height > boxHeight else { return (width, height) }
        let scale = min(Double(boxWidth) / Double(width), Double(boxHeight) / Double(height))
        let newWidth = min(boxWidth, max(1, Int((Double(width) * scale).rounded())))
        let newHeight = min(boxHeight, max(1, Int((Double(height) * scale).rounded())))
        return (newWidth, newHeight)
    }
}

/// Resizes ``RGBAImage``s with a separable Lanczos-3 filter.
///
/// Filtering is done on premultiplied alpha (colours are weighted by their alpha before filtering and
/// divided by the filtered alpha afterwards), so the colour of fully transparent pixels never bleeds
/// into visible edges. When shrinking, the filter is widened by the scale factor so that every input
/// pixel contributes (proper low-pass filtering, no aliasing). Pixels beyond the edges repeat the
/// edge pixel. Results are rounded to the nearest 8-bit value; a pixel whose filtered alpha rounds
/// to 0 becomes transparent black.
///
/// The work is synchronous and CPU-bound: call it from a ``BlockingThreadPool`` thread, not from an
/// async task. Memory beyond the input and output is a few rows of the horizontally filtered image.
public enum Resampler {
    /// `image` scaled to `width`×`height` (both at least 1). The same size returns `image` unchanged.
    ///
    /// - Throws: ``IngestError/Code/badDimensions`` if the target size is not positive or the image's
    ///   pixel buffer does not match its size.
    public static func resize(_ image: RGBAImage, width: Int, height: Int) throws(IngestError) -> RGBAImage {
        guard width > 0, height > 0, image.width > 0, image.height > 0,
            image.pixels.count == image.width * image.height * 4
        else {
            throw IngestError(
                .badDimensions, "cannot resize a \(image.width)x\(image.height) image to \(width)x\(height)")
        }
        if width == image.width && height == image.height { return image }
        return scale(image, width: width, height: height)
    }

    /// `image` scaled down to the size `policy` chooses (unchanged if that is its size).
    ///
    /// - Throws: ``IngestError/Code/badDimensions`` if the image is empty or its pixel buffer does not
    ///   match its size.
    public static func resize(_ image: RGBAImage, fitting policy: FitPolicy) throws(IngestError) -> RGBAImage {
        let target = policy.targetSize(width: image.width, height: image.height)
        return try resize(image, width: target.width, height: target.height)
    }

    /// The Lanczos-3 kernel.
    static func lanczos3(_ x: Double) -> Double {
        let x = abs(x)
        if x < 1e-9 { return 1 }
        if x >= 3 { return 0 }
        let pix = Double.pi * x
        return 3 * sin(pix) * sin(pix / 3) / (pix * pix)
    }

    /// Per-output-pixel filter taps along one axis: output `i` is the sum over `k < counts[i]` of
    /// `weights[i * stride + k]` times input `starts[i] + k`. Taps beyond the edges are folded onto the
    /// edge pixels, so every window lies inside the input and `starts` never decreases.
    struct Taps {
        var starts: [Int]
        var counts: [Int]
        var weights: [Float]
        var stride: Int

        init(input: Int, output: Int) {
            let scale = Double(input) / Double(output)
            let filterScale = max(1, scale)
            let support = 3 * filterScale
            stride = min(input, Int((2 * support).rounded(.up)) + 2)
            starts = [Int](repeating: 0, count: output)
            counts = [Int](repeating: 0, count: output)
            weights = [Float](repeating: 0, count: output * stride)
            var scratch = [Double](repeating: 0, count: input)
            for i in 0..<output {
                let center = (Double(i) + 0.5) * scale - 0.5
                let first = Int((center - support).rounded(.up))
                let last = Int((center + support).rounded(.down))
                var low = input
                var high = -1
                var total = 0.0
                for j in first...max(first, last) {
                    let w = lanczos3((Double(j) - center) / filterScale)
                    if w == 0 { continue }
                    let clamped = min(input - 1, max(0, j))
                    if low > high {
                        low = clamped
                        high = clamped
                        scratch[clamped] = 0
                    }
                    while clamped < low {
                        low -= 1
                        scratch[low] = 0
                    }
                    while clamped > high {
                        high += 1
                        scratch[high] = 0
                    }
                    scratch[clamped] += w
                    total += w
                }
                if low > high || total == 0 {
                    // Cannot happen for a sane kernel; fall back to the nearest pixel.
                    low = min(input - 1, max(0, Int(center.rounded())))
                    high = low
                    scratch[low] = 1
                    total = 1
                }
                // Trim taps that ended up exactly zero at either end.
                while high > low && scratch[low] == 0 { low += 1 }
                while high > low && scratch[high] == 0 { high -= 1 }
                precondition(high - low + 1 <= stride)
                starts[i] = low
                counts[i] = high - low + 1
                for k in 0..<counts[i] {
                    weights[i * stride + k] = Float(scratch[low + k] / total)
                }
            }
        }
    }

    static func scale(_ image: RGBAImage, width outWidth: Int, height outHeight: Int) -> RGBAImage {
        image.pixels.withUnsafeBytes { source in
            let rowBytes = image.width * 4
            // Reading rows from memory cannot fail.
            return try! scale(
                inWidth: image.width, inHeight: image.height, outWidth: outWidth, outHeight: outHeight
            ) { row throws(IngestError) in UnsafeRawPointer(source.baseAddress! + row * rowBytes) }
        }
    }

    /// Scales an image whose rows `row(y)` hands out, each `inWidth * 4` bytes of straight-alpha RGBA.
    /// Rows are asked for once each, in increasing order, and a row's memory is read before the next
    /// row is asked for, so `row` may reuse its buffers. `opaque` promises every alpha is 255 (a
    /// JPEG): premultiplying is then skipped.
    static func scale(
        inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int, opaque: Bool = false,
        row: (Int) throws(IngestError) -> UnsafeRawPointer
    ) throws(IngestError) -> RGBAImage {
        let horizontal = Taps(input: inWidth, output: outWidth)
        let vertical = Taps(input: inHeight, output: outHeight)

        // A ring of horizontally filtered, premultiplied rows; row r lives in slot r % ringSize.
        let ringSize = vertical.stride
        let ring = UnsafeMutableBufferPointer<SIMD4<Float>>.allocate(capacity: ringSize * outWidth)
        let premultiplied = UnsafeMutableBufferPointer<SIMD4<Float>>.allocate(capacity: inWidth)
        let sums = UnsafeMutableBufferPointer<SIMD4<Float>>.allocate(capacity: outWidth)
        defer {
            ring.deallocate()
            premultiplied.deallocate()
            sums.deallocate()
        }
        var output = [UInt8](repeating: 0, count: outWidth * outHeight * 4)
        var nextRow = 0  // the first input row not yet filtered into the ring

        for y in 0..<outHeight {
            let start = vertical.starts[y]
            let count = vertical.counts[y]
            while nextRow < start + count {
                let source = try row(nextRow)
                let destination = ring.baseAddress! + (nextRow % ringSize) * outWidth
                horizontal.weights.withUnsafeBufferPointer { weights in
                    horizontal.starts.withUnsafeBufferPointer { starts in
                        horizontal.counts.withUnsafeBufferPointer { counts in
                            Self.filterRow(
                                source: source, width: inWidth, opaque: opaque, premultiplied: premultiplied,
                                starts: starts, counts: counts, stride: horizontal.stride, weights: weights,
                                into: destination, outWidth: outWidth)
                        }
                    }
                }
                nextRow += 1
            }
            vertical.weights.withUnsafeBufferPointer { vWeights in
                output.withUnsafeMutableBytes { destination in
                    let weightBase = y * vertical.stride
                    let rowBytes = destination.baseAddress! + y * outWidth * 4
                    // Row by row over the window, so the inner loops run over contiguous memory.
                    let first = ring.baseAddress! + (start % ringSize) * outWidth
                    let firstWeight = vWeights[weightBase]
                    for x in 0..<outWidth { sums[x] = firstWeight * first[x] }
                    for k in 1..<count {
                        let source = ring.baseAddress! + ((start + k) % ringSize) * outWidth
                        let weight = vWeights[weightBase + k]
                        for x in 0..<outWidth { sums[x] += weight * source[x] }
                    }
                    if opaque {
                        for x in 0..<outWidth { Self.storeOpaque(sums[x], to: rowBytes + x * 4) }
                    } else {
                        for x in 0..<outWidth { Self.store(sums[x], to: rowBytes + x * 4) }
                    }
                }
            }
        }
        return RGBAImage(width: outWidth, height: outHeight, pixels: output)
    }

    /// Premultiplies an input row (unless it is opaque) and filters it horizontally into `destination`.
    @inline(__always)
    static func filterRow(
        source: UnsafeRawPointer, width: Int, opaque: Bool, premultiplied: UnsafeMutableBufferPointer<SIMD4<Float>>,
        starts: UnsafeBufferPointer<Int>, counts: UnsafeBufferPointer<Int>, stride: Int,
        weights: UnsafeBufferPointer<Float>, into destination: UnsafeMutablePointer<SIMD4<Float>>, outWidth: Int
    ) {
        if opaque {
            for x in 0..<width {
                premultiplied[x] = SIMD4<Float>(source.loadUnaligned(fromByteOffset: x * 4, as: SIMD4<UInt8>.self))
            }
        } else {
            for x in 0..<width {
                let pixel = source.loadUnaligned(fromByteOffset: x * 4, as: SIMD4<UInt8>.self)
                var value = SIMD4<Float>(pixel)
                let alpha = value.w * (1 / 255)
                value.x *= alpha
                value.y *= alpha
                value.z *= alpha
                premultiplied[x] = value
            }
        }
        for x in 0..<outWidth {
            let start = starts[x]
            let base = x * stride
            var sum = SIMD4<Float>.zero
            for k in 0..<counts[x] {
                sum += weights[base + k] * premultiplied[start + k]
            }
            destination[x] = sum
        }
    }

    /// Rounds (ties to even) and clamps one filtered pixel of an opaque image.
    @inline(__always)
    static func storeOpaque(_ value: SIMD4<Float>, to pointer: UnsafeMutableRawPointer) {
        // Adding 1.5 × 2^23 leaves the rounded integer in the low mantissa bits: no libm call.
        @inline(__always) func channel(_ x: Float) -> UInt32 {
            (min(255, max(0, x)) + 12_582_912).bitPattern & 0xFF
        }
        let packed = channel(value.x) | channel(value.y) << 8 | channel(value.z) << 16 | 255 << 24
        pointer.storeBytes(of: UInt32(littleEndian: packed), as: UInt32.self)
    }

    /// Unpremultiplies, rounds and clamps one filtered pixel. Scalar code: the generic SIMD
    /// rounding and integer conversions are far slower than these.
    @inline(__always)
    static func store(_ value: SIMD4<Float>, to pointer: UnsafeMutableRawPointer) {
        let alpha = min(255, max(0, value.w)).rounded()
        let filteredAlpha = min(255, max(0, value.w))
        guard alpha >= 1 else {
            pointer.storeBytes(of: 0, as: UInt32.self)
            return
        }
        let scale = 255 / filteredAlpha
        @inline(__always) func channel(_ x: Float) -> UInt32 {
            UInt32(Int32(min(255, max(0, x * scale)).rounded()))
        }
        let packed = channel(value.x) | channel(value.y) << 8 | channel(value.z) << 16 | UInt32(Int32(alpha)) << 24
        pointer.storeBytes(of: UInt32(littleEndian: packed), as: UInt32.self)
    }
}
