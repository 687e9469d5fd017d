import CImageShim

/// How a stored image must be transformed to display upright: the EXIF/TIFF `Orientation` tag (0x0112).
///
/// The raw value is the tag value. Each case names the transform that ``applied(to:)`` performs on the
/// stored pixels to produce the upright image.
public enum ImageOrientation: Int, Sendable, Hashable, CaseIterable {
    /// 1: the stored image is upright.
    case up = 1
    /// 2: the stored image is mirrored left to right; mirror it horizontally.
    case mirrorHorizontal = 2
    /// 3: the stored image is upside down; rotate it 180°.
    case rotate180 = 3
    /// 4: the stored image is mirrored top to bottom; mirror it vertically.
    case mirrorVertical = 4
    /// 5: transpose (swap rows and columns: mirror horizontally, then rotate 90° counter-clockwise).
    case transpose = 5
    /// 6: the stored image must be rotated 90° clockwise.
    case rotate90Clockwise = 6
    /// 7: transverse (mirror horizontally, then rotate 90° clockwise).
    case transverse = 7
    /// 8: the stored image must be rotated 90° counter-clockwise.
    case rotate90CounterClockwise = 8

    /// Whether the upright image has its width and height swapped relative to the stored image.
    public var swapsDimensions: Bool { rawValue >= 5 }

    /// The upright version of `image`, which is stored with this orientation.
    ///
    /// For ``up`` the image is returned unchanged. An image whose pixel buffer does not match its
    /// size is also returned unchanged.
    public func applied(to image: RGBAImage) -> RGBAImage {
        let width = image.width
        let height = image.height
        guard self != .up, width > 0, height > 0, image.pixels.count == width * height * 4 else {
            return image
        }
        let outWidth = swapsDimensions ? height : width
        let outHeight = swapsDimensions ? width : height
        // For each output pixel (x, y), the stored pixel it comes from is
        // (sx, sy) = (x0 + x * dxx + y * dxy, y0 + x * dyx + y * dyy).
        let (x0, dxx, dxy, y0, dyx, dyy): (Int, Int, Int, Int, Int, Int)
        switch self {
        case .up: (x0, dxx, dxy, y0, dyx, dyy) = (0, 1, 0, 0, 0, 1)
        case .mirrorHorizontal: (x0, dxx, dxy, y0, dyx, dyy) = (width - 1, -1, 0, 0, 0, 1)
        case .rotate180: (x0, dxx, dxy, y0, dyx, dyy) = (width - 1, -1, 0, height - 1, 0, -1)
        case .mirrorVertical: (x0, dxx, dxy, y0, dyx, dyy) = (0, 1, 0, height - 1, 0, -1)
        // out(x, y) = in(y, x)
        case .transpose: (x0, dxx, dxy, y0, dyx, dyy) = (0, 0, 1, 0, 1, 0)
        // out(x, y) = in(y, H - 1 - x): the stored left column becomes the top row.
        case .rotate90Clockwise: (x0, dxx, dxy, y0, dyx, dyy) = (0, 0, 1, height - 1, -1, 0)
        // out(x, y) = in(W - 1 - y, H - 1 - x)
        case .transverse: (x0, dxx, dxy, y0, dyx, dyy) = (width - 1, 0, -1, height - 1, -1, 0)
        // out(x, y) = in(W - 1 - y, x): the stored right column becomes the top row.
        case .rotate90CounterClockwise: (x0, dxx, dxy, y0, dyx, dyy) = (width - 1, 0, -1, 0, 1, 0)
        }
        var output = [UInt8](repeating: 0, count: outWidth * outHeight * 4)
        image.pixels.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { destination in
                // In tiles, so that reading columns of the source stays within the cache.
                let tile = 64
                for tileY in stride(from: 0, to: outHeight, by: tile) {
                    for tileX in stride(from: 0, to: outWidth, by: tile) {
                        let endX = min(outWidth, tileX + tile)
                        for y in tileY..<min(outHeight, tileY + tile) {
                            var sx = x0 + tileX * dxx + y * dxy
                            var sy = y0 + tileX * dyx + y * dyy
                            var index = (y * outWidth + tileX) * 4
                            for _ in tileX..<endX {
                                let pixel = source.loadUnaligned(fromByteOffset: (sy * width + sx) * 4, as: UInt32.self)
                                destination.storeBytes(of: pixel, toByteOffset: index, as: UInt32.self)
                                index += 4
                                sx += dxx
                                sy += dyx
                            }
                        }
                    }
                }
            }
        }
        return RGBAImage(width: outWidth, height: outHeight, pixels: output)
    }

    /// Reads the orientation from EXIF data: a TIFF structure (byte order `II` or `MM`), optionally
    /// preceded by the `Exif\0\0` marker that starts a JPEG APP1 segment's payload.
    ///
    /// Only IFD0 is read. Missing, malformed, truncated or out-of-range data gives ``up``; this
    /// never fails.
    public static func parseEXIF(_ tiff: [UInt8]) -> ImageOrientation {
        // One parser for the whole project: the decoders read orientation with the same C code.
        let value = tiff.withUnsafeBufferPointer { ig_exif_orientation($0.baseAddress, $0.count) }
        return ImageOrientation(rawValue: Int(value)) ?? .up
    }
}
