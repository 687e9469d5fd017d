import ImageIngest
import Testing

@Suite("EXIF orientation")
struct OrientationTests {
    /// A 3×2 image whose pixels are labelled a…f, stored as
    ///
    ///     a b c
    ///     d e f
    static let stored = RGBAImage(width: 3, height: 2, pixels: "abcdef".flatMap(pixel))

    static func pixel(_ label: Character) -> [UInt8] {
        let value = label.asciiValue!
        return [value, 255 - value, value &* 3, 200 + value % 50]
    }

    /// The upright image for each orientation, worked out by hand from the EXIF definitions.
    static let expected: [(ImageOrientation, Int, Int, String)] = [
        (.up, 3, 2, "abc" + "def"),
        (.mirrorHorizontal, 3, 2, "cba" + "fed"),
        (.rotate180, 3, 2, "fed" + "cba"),
        (.mirrorVertical, 3, 2, "def" + "abc"),
        (.transpose, 2, 3, "ad" + "be" + "cf"),
        (.rotate90Clockwise, 2, 3, "da" + "eb" + "fc"),
        (.transverse, 2, 3, "fc" + "eb" + "da"),
        (.rotate90CounterClockwise, 2, 3, "cf" + "be" + "ad"),
    ]

    @Test(arguments: 0..<8)
    func appliedGivesUprightLayout(index: Int) {
        let (orientation, width, height, layout) = Self.expected[index]
        #expect(orientation.rawValue == index + 1)
        let upright = orientation.applied(to: Self.stored)
        #expect(upright.width == width)
        #expect(upright.height == height)
        #expect(upright.pixels == layout.flatMap(Self.pixel))
        #expect(orientation.swapsDimensions == (width != 3))
    }

    @Test func rotationsCompose() {
        let image = testPattern(width: 17, height: 9, alpha: true)
        let once = ImageOrientation.rotate90Clockwise.applied(to: image)
        let twice = ImageOrientation.rotate90Clockwise.applied(to: once)
        #expect(twice == ImageOrientation.rotate180.applied(to: image))
        #expect(ImageOrientation.rotate90CounterClockwise.applied(to: once) == image)
        #expect(ImageOrientation.transpose.applied(to: ImageOrientation.transpose.applied(to: image)) == image)
    }

    /// A TIFF structure with IFD0 at offset 8 holding `entries` (tag, type, count, value bytes).
    static func tiff(bigEndian: Bool, entries: [(UInt16, UInt16, UInt32, UInt16)], ifdOffset: UInt32 = 8) -> [UInt8] {
        func u16(_ v: UInt16) -> [UInt8] {
            bigEndian ? [UInt8(v >> 8), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8)]
        }
        func u32(_ v: UInt32) -> [UInt8] {
            let bytes = [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
            return bigEndian ? bytes : bytes.reversed()
        }
        var bytes: [UInt8] = bigEndian ? [0x4D, 0x4D] : [0x49, 0x49]
        bytes += u16(42) + u32(ifdOffset) + u16(UInt16(entries.count))
        for (tag, type, count, value) in entries {
            bytes += u16(tag) + u16(type) + u32(count) + u16(value) + [0, 0]
        }
        return bytes + u32(0)
    }

    @Test(arguments: [false, true])
    func parsesBothByteOrders(bigEndian: Bool) {
        for value in 1...8 {
            let entries: [(UInt16, UInt16, UInt32, UInt16)] = [
                (0x010F, 2, 4, 0x4142), (0x0112, 3, 1, UInt16(value)), (0x011A, 5, 1, 0x0100),
            ]
            let bytes = Self.tiff(bigEndian: bigEndian, entries: entries)
            #expect(ImageOrientation.parseEXIF(bytes).rawValue == value)
            #expect(ImageOrientation.parseEXIF(Array("Exif".utf8) + [0, 0] + bytes).rawValue == value)
        }
    }

    @Test func malformedInputGivesUp() {
        let good = Self.tiff(bigEndian: true, entries: [(0x0112, 3, 1, 6)])
        #expect(ImageOrientation.parseEXIF(good) == .rotate90Clockwise)
        // Missing tag.
        #expect(ImageOrientation.parseEXIF(Self.tiff(bigEndian: false, entries: [(0x010F, 2, 4, 1)])) == .up)
        // No entries at all.
        #expect(ImageOrientation.parseEXIF(Self.tiff(bigEndian: false, entries: [])) == .up)
        // Out-of-range value, wrong type.
        #expect(ImageOrientation.parseEXIF(Self.tiff(bigEndian: false, entries: [(0x0112, 3, 1, 9)])) == .up)
        #expect(ImageOrientation.parseEXIF(Self.tiff(bigEndian: false, entries: [(0x0112, 3, 1, 0)])) == .up)
        #expect(ImageOrientation.parseEXIF(Self.tiff(bigEndian: false, entries: [(0x0112, 2, 1, 6)])) == .up)
        // IFD offset past the end, or pointing into the header.
        #expect(
            ImageOrientation.parseEXIF(Self.tiff(bigEndian: true, entries: [(0x0112, 3, 1, 6)], ifdOffset: 4000)) == .up
        )
        #expect(
            ImageOrientation.parseEXIF(Self.tiff(bigEndian: true, entries: [(0x0112, 3, 1, 6)], ifdOffset: 2)) == .up)
        #expect(
            ImageOrientation.parseEXIF(Self.tiff(bigEndian: true, entries: [(0x0112, 3, 1, 6)], ifdOffset: 0xFFFF_FFFF))
                == .up)
        // Every truncation of a valid structure.
        for length in 0..<(good.count - 6) {
            #expect(ImageOrientation.parseEXIF(Array(good[0..<length])) == .up)
        }
        // Entry count larger than the data, tag missing.
        var lying = Self.tiff(bigEndian: true, entries: [(0x010F, 3, 1, 6)])
        lying[9] = 0xFF
        #expect(ImageOrientation.parseEXIF(lying) == .up)
        // Bad byte order marks and magic.
        #expect(ImageOrientation.parseEXIF([0x49, 0x4D] + good[2...]) == .up)
        var badMagic = good
        badMagic[3] = 43
        #expect(ImageOrientation.parseEXIF(badMagic) == .up)
        #expect(ImageOrientation.parseEXIF([]) == .up)
        #expect(ImageOrientation.parseEXIF(Array("Exif".utf8) + [0, 0]) == .up)
    }
}
