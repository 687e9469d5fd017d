import ImageIngest
import Testing

@Suite("Colour management")
struct ColorManagementTests {
    static func image(_ colours: [[UInt8]]) -> RGBAImage {
        RGBAImage(width: colours.count, height: 1, pixels: colours.flatMap { $0 })
    }

    static func pixel(_ image: RGBAImage, _ index: Int) -> [Int] {
        image.pixels[index * 4..<index * 4 + 4].map(Int.init)
    }

    @Test func sRGBProfileIsNearIdentity() throws {
        let profile = ColorConverter.sRGBProfile()
        #expect(profile.count > 128)
        let image = testPattern(width: 64, height: 64, alpha: true)
        let converted = try ColorConverter.toSRGB(image, iccProfile: profile)
        #expect(converted.width == 64 && converted.height == 64)
        for index in 0..<image.pixels.count {
            if index % 4 == 3 {
                #expect(converted.pixels[index] == image.pixels[index])  // alpha copied exactly
            } else {
                #expect(abs(Int(converted.pixels[index]) - Int(image.pixels[index])) <= 2)
            }
        }
    }

    @Test func adobeRGBSaturatedColoursMoveOutward() throws {
        let profile = ColorConverter.adobeRGBProfile()
        #expect(profile.count > 128)
        let image = Self.image([[0, 255, 0, 255], [128, 200, 128, 90], [255, 255, 255, 255], [0, 0, 0, 255]])
        let converted = try ColorConverter.toSRGB(image, iccProfile: profile)
        // Pure Adobe RGB green lies outside sRGB: clipped to full green.
        let green = Self.pixel(converted, 0)
        #expect(green[1] >= 250)
        #expect(green[0] <= 10)
        #expect(green[2] <= 60)
        #expect(green[3] == 255)
        // A muted green becomes more saturated in sRGB numbers; alpha is kept.
        let muted = Self.pixel(converted, 1)
        #expect(muted[1] - muted[0] > 200 - 128)
        #expect(muted[3] == 90)
        // White and black stay put.
        #expect(Self.pixel(converted, 2).allSatisfy { $0 >= 253 })
        #expect(Self.pixel(converted, 3)[0..<3].allSatisfy { $0 <= 2 })
    }

    @Test func grayProfileMapsThroughToneCurve() throws {
        // A linear (gamma 1) gray: mid level 128 is lighter when encoded as sRGB.
        let image = Self.image([[128, 128, 128, 255], [0, 0, 0, 10], [255, 255, 255, 255]])
        let converted = try ColorConverter.toSRGB(image, iccProfile: ColorConverter.grayProfile(gamma: 1))
        let mid = Self.pixel(converted, 0)
        #expect(mid[0] == mid[1] && mid[1] == mid[2])
        #expect((180...195).contains(mid[0]))
        #expect(Self.pixel(converted, 1) == [0, 0, 0, 10])
        #expect(Self.pixel(converted, 2)[0] >= 253)
    }

    @Test func garbageProfilesLeaveImageUnchanged() throws {
        let image = testPattern(width: 8, height: 8, alpha: true)
        var truncated = ColorConverter.adobeRGBProfile()
        truncated.removeLast(truncated.count / 2)
        var corrupted = ColorConverter.adobeRGBProfile()
        for index in stride(from: 128, to: corrupted.count, by: 3) { corrupted[index] ^= 0x5A }
        let garbage: [[UInt8]] = [
            [], [0], [UInt8](repeating: 0xFF, count: 4096), Array(ColorConverter.adobeRGBProfile()[0..<100]),
            truncated, corrupted,
        ]
        for profile in garbage {
            let converted = try ColorConverter.toSRGB(image, iccProfile: profile)
            if profile.count < 200 {
                #expect(converted == image)
            } else {
                // A damaged profile may still parse; it must not crash and must keep the size and alpha.
                #expect(converted.width == image.width && converted.height == image.height)
            }
        }
    }

    @Test func corpusProfiles() throws {
        // test3.icc is an RGB colour-space profile; test1.icc a CMYK printer profile.
        let rgb = try Corpus.bytes(Corpus.jpeg.appendingPathComponent("test3.icc"))
        let cmyk = try Corpus.bytes(Corpus.jpeg.appendingPathComponent("test1.icc"))
        let image = Self.image([[255, 255, 255, 255], [0, 0, 0, 255], [200, 30, 30, 128]])
        let viaRGB = try ColorConverter.toSRGB(image, iccProfile: rgb)
        #expect(Self.pixel(viaRGB, 0)[0..<3].allSatisfy { $0 >= 245 })
        #expect(Self.pixel(viaRGB, 2)[3] == 128)
        #expect(Self.pixel(viaRGB, 2)[0] > Self.pixel(viaRGB, 2)[1] + 100)
        // RGB pixels with a CMYK profile: unusable, unchanged.
        #expect(try ColorConverter.toSRGB(image, iccProfile: cmyk) == image)
        // CMYK pixels (C, M, Y, K) with the CMYK profile.
        let inks = Self.image([[0, 0, 0, 0], [0, 0, 0, 255], [255, 0, 0, 0], [0, 255, 255, 0]])
        let viaCMYK = try ColorConverter.toSRGB(inks, iccProfile: cmyk, isCMYK: true)
        let paper = Self.pixel(viaCMYK, 0)
        #expect(paper[0..<3].allSatisfy { $0 >= 200 })
        #expect(Self.pixel(viaCMYK, 1)[0..<3].allSatisfy { $0 <= 80 })
        let cyan = Self.pixel(viaCMYK, 2)
        #expect(cyan[0] < 100 && cyan[2] > 150)
        let red = Self.pixel(viaCMYK, 3)
        #expect(red[0] > 150 && red[1] < 100 && red[2] < 100)
        #expect(viaCMYK.isOpaque)
    }

    @Test func cmykWithoutProfileUsesNaiveFormula() throws {
        let inks = Self.image([[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 128]])
        let converted = try ColorConverter.toSRGB(inks, iccProfile: [], isCMYK: true)
        #expect(converted.pixels == [255, 255, 255, 255, 0, 255, 255, 255, 127, 127, 127, 255])
    }

    @Test func concurrentConversionsAgree() async throws {
        let profiles =
            [
                ColorConverter.adobeRGBProfile(), ColorConverter.sRGBProfile(), ColorConverter.grayProfile(gamma: 1.8),
            ]
            + (0..<10).map {
                ColorConverter.rgbProfile(
                    white: (0.3127, 0.3290), red: (0.64, 0.33), green: (0.3, 0.6), blue: (0.15, 0.06),
                    gamma: 1.5 + Double($0) / 10)
            }
        let image = testPattern(width: 50, height: 40, alpha: true)
        let expected = try profiles.map { try ColorConverter.toSRGB(image, iccProfile: $0) }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for round in 0..<40 {
                group.addTask {
                    let index = round % profiles.count
                    return try ColorConverter.toSRGB(image, iccProfile: profiles[index]) == expected[index]
                }
            }
            for try await same in group { #expect(same) }
        }
    }
}
