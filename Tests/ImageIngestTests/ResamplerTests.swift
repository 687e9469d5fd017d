import ImageIngest
import Testing

@Suite("Resampler and fit policy")
struct ResamplerTests {
    @Test(arguments: [
        (64, 48, 16, 12), (64, 48, 100, 75), (7, 5, 3, 2), (10, 10, 1, 1), (1, 1, 5, 3), (300, 20, 299, 20),
    ])
    func flatColourStaysFlatAndSizesAreRight(sourceWidth: Int, sourceHeight: Int, width: Int, height: Int) throws {
        for (red, green, blue, alpha) in [(12, 200, 99, 255), (250, 3, 128, 77)] as [(UInt8, UInt8, UInt8, UInt8)] {
            let image = RGBAImage(
                width: sourceWidth, height: sourceHeight, red: red, green: green, blue: blue, alpha: alpha)
            let resized = try Resampler.resize(image, width: width, height: height)
            #expect(resized.width == width)
            #expect(resized.height == height)
            #expect(
                resized == RGBAImage(width: width, height: height, red: red, green: green, blue: blue, alpha: alpha))
        }
    }

    @Test func sameSizeIsUnchanged() throws {
        let image = testPattern(width: 9, height: 4, alpha: true)
        #expect(try Resampler.resize(image, width: 9, height: 4) == image)
    }

    @Test func badSizesAreRefused() {
        let image = RGBAImage(width: 4, height: 4)
        #expect(throws: IngestError.self) { try Resampler.resize(image, width: 0, height: 4) }
        #expect(throws: IngestError.self) { try Resampler.resize(image, width: 4, height: -1) }
        #expect(throws: IngestError.self) {
            try Resampler.resize(RGBAImage(width: 4, height: 4, pixels: [1, 2, 3]), width: 2, height: 2)
        }
    }

    @Test func checkerboardAveragesToMidGrey() throws {
        var pixels: [UInt8] = []
        for y in 0..<256 {
            for x in 0..<256 {
                let value: UInt8 = (x + y) % 2 == 0 ? 255 : 0
                pixels += [value, value, value, 255]
            }
        }
        let image = RGBAImage(width: 256, height: 256, pixels: pixels)
        // An exact 4:1 reduction cancels the pattern; other ratios leave a little aliasing.
        for (size, tolerance) in [(64, 3), (37, 8), (100, 8)] {
            let resized = try Resampler.resize(image, width: size, height: size)
            for index in stride(from: 0, to: resized.pixels.count, by: 4) {
                #expect(abs(Int(resized.pixels[index]) - 128) <= tolerance)
                #expect(resized.pixels[index + 3] == 255)
            }
        }
    }

    @Test func downscaleKeepsBroadStructure() throws {
        // Left half black, right half white: far from the edge the halves keep their values.
        var pixels: [UInt8] = []
        for _ in 0..<64 {
            for x in 0..<128 {
                let value: UInt8 = x < 64 ? 0 : 255
                pixels += [value, value, value, 255]
            }
        }
        let resized = try Resampler.resize(RGBAImage(width: 128, height: 64, pixels: pixels), width: 32, height: 16)
        for y in 0..<16 {
            #expect(resized.pixels[(y * 32 + 2) * 4] == 0)
            #expect(resized.pixels[(y * 32 + 29) * 4] == 255)
        }
    }

    @Test(arguments: [(32, 32), (13, 9), (80, 80)])
    func transparentPixelsDoNotDarkenEdges(width: Int, height: Int) throws {
        // Half-transparent red disc on fully transparent black: the black must not bleed in.
        var pixels: [UInt8] = []
        for y in 0..<40 {
            for x in 0..<40 {
                let inside = (x - 20) * (x - 20) + (y - 20) * (y - 20) < 12 * 12
                pixels += inside ? [255, 0, 0, 128] : [0, 0, 0, 0]
            }
        }
        let resized = try Resampler.resize(
            RGBAImage(width: 40, height: 40, pixels: pixels), width: width, height: height)
        var visible = 0
        for index in stride(from: 0, to: resized.pixels.count, by: 4) {
            let alpha = resized.pixels[index + 3]
            if alpha == 0 {
                #expect(resized.pixels[index..<index + 3] == [0, 0, 0])
                continue
            }
            visible += 1
            // Ringing can make alpha tiny at the edge; rounding then costs precision, never the hue.
            if alpha >= 8 {
                #expect(
                    resized.pixels[index] >= 250, "dark fringe at \(index / 4): \(resized.pixels[index..<index + 4])")
            }
            #expect(resized.pixels[index + 1] <= 5)
            #expect(resized.pixels[index + 2] <= 5)
        }
        #expect(visible > 0)
    }

    @Test func maxSidePolicy() {
        let policy = FitPolicy()
        #expect(policy.mode == .maxSide(1536))
        #expect(policy.targetSize(width: 4096, height: 3072) == (1536, 1152))
        #expect(policy.targetSize(width: 1000, height: 3000) == (512, 1536))
        #expect(policy.targetSize(width: 1536, height: 100) == (1536, 100))
        // Never scales up.
        #expect(policy.targetSize(width: 800, height: 600) == (800, 600))
        #expect(FitPolicy.maxSide(64).targetSize(width: 10, height: 10) == (10, 10))
        // Extreme aspect ratios keep at least one pixel.
        #expect(FitPolicy.maxSide(100).targetSize(width: 100_000, height: 3) == (100, 1))
    }

    @Test func allowedSizesPolicy() {
        let sizes = [
            FitPolicy.Size(width: 1024, height: 1024), FitPolicy.Size(width: 1536, height: 1024),
            FitPolicy.Size(width: 1024, height: 1536),
        ]
        let policy = FitPolicy.allowedSizes(sizes)
        // Landscape 3:2 → 1536×1024.
        #expect(policy.targetSize(width: 3000, height: 2000) == (1536, 1024))
        // Landscape 16:9 → 1536×1024 (closest ratio), contained: width-bound.
        #expect(policy.targetSize(width: 3840, height: 2160) == (1536, 864))
        // Portrait 3:4 → 1024×1536, contained: width-bound.
        #expect(policy.targetSize(width: 3000, height: 4000) == (1024, 1365))
        // Square → 1024×1024.
        #expect(policy.targetSize(width: 4000, height: 4000) == (1024, 1024))
        // Nearly square, slightly wide → still the square size.
        #expect(policy.targetSize(width: 2100, height: 2000) == (1024, 975))
        // Never scales up.
        #expect(policy.targetSize(width: 600, height: 400) == (600, 400))
        #expect(policy.targetSize(width: 1200, height: 1200) == (1024, 1024))
        // Nothing usable → unchanged.
        #expect(FitPolicy.allowedSizes([]).targetSize(width: 5000, height: 10) == (5000, 10))
    }

    @Test func resizeFittingPolicy() throws {
        let image = testPattern(width: 300, height: 200, alpha: false)
        let resized = try Resampler.resize(image, fitting: .maxSide(150))
        #expect((resized.width, resized.height) == (150, 100))
        #expect(resized.isOpaque)
        #expect(try Resampler.resize(image, fitting: .maxSide(4000)) == image)
    }
}
