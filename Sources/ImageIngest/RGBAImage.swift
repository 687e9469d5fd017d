/// An uncompressed image: 8-bit red, green, blue and alpha per pixel, rows top to bottom.
///
/// Alpha is straight (not premultiplied). `pixels.count` must be `width * height * 4`.
public struct RGBAImage: Sendable, Equatable {
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// `width * height` pixels of 4 bytes each (R, G, B, A), row-major, no padding.
    public var pixels: [UInt8]

    /// Wraps existing pixels.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Creates an image filled with one colour.
    public init(width: Int, height: Int, red: UInt8 = 0, green: UInt8 = 0, blue: UInt8 = 0, alpha: UInt8 = 255) {
        self.width = width
        self.height = height
        var pixels = [UInt8](repeating: 0, count: max(0, width) * max(0, height) * 4)
        pixels.withUnsafeMutableBufferPointer { buffer in
            var index = 0
            while index < buffer.count {
                buffer[index] = red
                buffer[index + 1] = green
                buffer[index + 2] = blue
                buffer[index + 3] = alpha
                index += 4
            }
        }
        self.pixels = pixels
    }

    /// Whether every pixel is fully opaque.
    public var isOpaque: Bool {
        pixels.withUnsafeBufferPointer { buffer in
            var index = 3
            while index < buffer.count {
                if buffer[index] != 255 { return false }
                index += 4
            }
            return true
        }
    }
}
