import ImageIngest

/// Draws the simulated backend's pictures: deterministic, cheap, and visibly different per prompt.
enum SimulatedPainter {
    /// An 8-bit colour.
    struct Color {
        var red: UInt8
        var green: UInt8
        var blue: UInt8

        /// A colour from hue (degrees), saturation and value (0...1).
        init(hue: Double, saturation: Double, value: Double) {
            let h = (hue.truncatingRemainder(dividingBy: 360) + 360).truncatingRemainder(dividingBy: 360) / 60
            let c = value * saturation
            let x = c * (1 - abs(h.truncatingRemainder(dividingBy: 2) - 1))
            let m = value - c
            let (r, g, b): (Double, Double, Double)
            switch Int(h) {
            case 0: (r, g, b) = (c, x, 0)
            case 1: (r, g, b) = (x, c, 0)
            case 2: (r, g, b) = (0, c, x)
            case 3: (r, g, b) = (0, x, c)
            case 4: (r, g, b) = (x, 0, c)
            default: (r, g, b) = (c, 0, x)
            }
            red = UInt8(((r + m) * 255).rounded())
            green = UInt8(((g + m) * 255).rounded())
            blue = UInt8(((b + m) * 255).rounded())
        }
    }

    /// The hash every picture of a prompt starts from.
    static func promptHash(_ prompt: String) -> UInt64 {
        fnv1a64(prompt.utf8)
    }

    /// The main colour of a prompt, used to tint edits.
    static func accentColor(prompt: String, variant: Int) -> Color {
        var random = SplitMix64(seed: promptHash(prompt) ^ 0xA5A5_5A5A_0F0F_F0F0)
        let hue = random.next(in: 0...360) + Double(variant) * 37
        return Color(hue: hue, saturation: 0.75, value: 0.95)
    }

    // MARK: - Generate

    /// A picture for `prompt`: a two-colour gradient with several circles, rectangles and striped
    /// panels, all placed and coloured from the prompt's hash. `variant` (the image index) moves
    /// the shapes and shifts the colours slightly.
    static func paint(prompt: String, width: Int, height: Int, variant: Int) -> RGBAImage {
        var random = SplitMix64(seed: promptHash(prompt))
        var jitter = SplitMix64(
            seed: promptHash(prompt) &+ UInt64(truncatingIfNeeded: variant) &* 0x2545_F491_4F6C_DD1D)
        let hueShift = variant == 0 ? 0 : jitter.next(in: -18...18)
        let baseHue = random.next(in: 0...360) + hueShift

        var canvas = Canvas(width: width, height: height)
        let start = Color(hue: baseHue, saturation: random.next(in: 0.45...0.9), value: random.next(in: 0.55...1))
        let end = Color(
            hue: baseHue + random.next(in: 90...240), saturation: random.next(in: 0.4...0.9),
            value: random.next(in: 0.25...0.8))
        let direction = (x: random.next(in: -1...1), y: random.next(in: -1...1))
        canvas.fillGradient(from: start, to: end, direction: direction)

        let shapeCount = 4 + random.next(below: 5)
        for _ in 0..<shapeCount {
            let kind = random.next(below: 3)
            let color = Color(
                hue: baseHue + random.next(in: 0...360), saturation: random.next(in: 0.5...1),
                value: random.next(in: 0.5...1))
            let alpha = UInt8(random.next(in: 140...230))
            let nudge = variant == 0 ? 0 : 0.05
            let centerX = (random.next(in: 0.05...0.95) + jitter.next(in: -nudge...nudge)) * Double(width)
            let centerY = (random.next(in: 0.05...0.95) + jitter.next(in: -nudge...nudge)) * Double(height)
            let size = random.next(in: 0.08...0.3) * Double(min(width, height))
            switch kind {
            case 0:
                canvas.blendCircle(centerX: centerX, centerY: centerY, radius: size, color: color, alpha: alpha)
            case 1:
                let aspect = random.next(in: 0.4...2.5)
                canvas.blendRectangle(
                    x: centerX - size * aspect, y: centerY - size / aspect, width: 2 * size * aspect,
                    height: 2 * size / aspect, color: color, alpha: alpha)
            default:
                let period = max(2, Int(size / random.next(in: 2...5)))
                canvas.blendStripes(
                    x: centerX - size * 1.5, y: centerY - size, width: size * 3, height: size * 2, period: period,
                    diagonal: random.next(below: 2) == 0, color: color, alpha: alpha)
            }
        }
        return canvas.image
    }

    // MARK: - Edit

    /// Inverts the colours where the mask is transparent (alpha < 128) and leaves the rest alone;
    /// later variants also tint the inverted area. The mask must have the image's size.
    static func invert(_ image: RGBAImage, inside mask: RGBAImage, prompt: String, variant: Int) -> RGBAImage {
        let tint = accentColor(prompt: prompt, variant: variant)
        let weight = min(variant, 4) * 40  // out of 255
        var output = image
        output.pixels.withUnsafeMutableBufferPointer { pixels in
            mask.pixels.withUnsafeBufferPointer { mask in
                var index = 0
                while index < pixels.count {
                    if mask[index + 3] < 128 {
                        pixels[index] = mix(255 - pixels[index], tint.red, weight)
                        pixels[index + 1] = mix(255 - pixels[index + 1], tint.green, weight)
                        pixels[index + 2] = mix(255 - pixels[index + 2], tint.blue, weight)
                    }
                    index += 4
                }
            }
        }
        return output
    }

    /// Posterizes to four levels per channel, tints towards the prompt's accent colour and draws a
    /// border in that colour.
    static func restyle(_ image: RGBAImage, prompt: String, variant: Int) -> RGBAImage {
        let tint = accentColor(prompt: prompt, variant: variant)
        var output = image
        output.pixels.withUnsafeMutableBufferPointer { pixels in
            var index = 0
            while index < pixels.count {
                pixels[index] = mix(posterize(pixels[index]), tint.red, 80)
                pixels[index + 1] = mix(posterize(pixels[index + 1]), tint.green, 80)
                pixels[index + 2] = mix(posterize(pixels[index + 2]), tint.blue, 80)
                index += 4
            }
        }
        var canvas = Canvas(output)
        let border = Double(max(2, min(image.width, image.height) / 24))
        let w = Double(image.width)
        let h = Double(image.height)
        for (x, y, width, height) in [
            (0, 0, w, border), (0, h - border, w, border), (0, 0, border, h), (w - border, 0, border, h),
        ] {
            canvas.blendRectangle(x: x, y: y, width: width, height: height, color: tint, alpha: 255)
        }
        return canvas.image
    }

    private static func posterize(_ value: UInt8) -> UInt8 {
        UInt8((Int(value) / 64) * 85)
    }

    /// `a` blended towards `b` by `weight`/255.
    static func mix(_ a: UInt8, _ b: UInt8, _ weight: Int) -> UInt8 {
        UInt8((Int(a) * (255 - weight) + Int(b) * weight + 127) / 255)
    }
}

/// An RGBA8 drawing surface with straight-alpha blending of opaque shapes.
struct Canvas {
    let width: Int
    let height: Int
    var pixels: [UInt8]

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        self.pixels = [UInt8](repeating: 255, count: width * height * 4)
    }

    init(_ image: RGBAImage) {
        self.width = image.width
        self.height = image.height
        self.pixels = image.pixels
    }

    var image: RGBAImage { RGBAImage(width: width, height: height, pixels: pixels) }

    mutating func fillGradient(
        from start: SimulatedPainter.Color, to end: SimulatedPainter.Color, direction: (x: Double, y: Double)
    ) {
        let length = max(1e-6, abs(direction.x) * Double(width) + abs(direction.y) * Double(height))
        let origin = min(0, direction.x * Double(width)) + min(0, direction.y * Double(height))
        let width = self.width
        let height = self.height
        pixels.withUnsafeMutableBufferPointer { pixels in
            for y in 0..<height {
                for x in 0..<width {
                    let t = (direction.x * Double(x) + direction.y * Double(y) - origin) / length
                    let weight = Int((min(1, max(0, t)) * 255).rounded())
                    let index = (y * width + x) * 4
                    pixels[index] = SimulatedPainter.mix(start.red, end.red, weight)
                    pixels[index + 1] = SimulatedPainter.mix(start.green, end.green, weight)
                    pixels[index + 2] = SimulatedPainter.mix(start.blue, end.blue, weight)
                    pixels[index + 3] = 255
                }
            }
        }
    }

    mutating func blendCircle(
        centerX: Double, centerY: Double, radius: Double, color: SimulatedPainter.Color, alpha: UInt8
    ) {
        let radiusSquared = radius * radius
        blend(
            x: centerX - radius, y: centerY - radius, width: 2 * radius, height: 2 * radius, color: color, alpha: alpha
        ) {
            x, y in
            let dx = Double(x) + 0.5 - centerX
            let dy = Double(y) + 0.5 - centerY
            return dx * dx + dy * dy <= radiusSquared
        }
    }

    mutating func blendRectangle(
        x: Double, y: Double, width: Double, height: Double, color: SimulatedPainter.Color, alpha: UInt8
    ) {
        blend(x: x, y: y, width: width, height: height, color: color, alpha: alpha) { _, _ in true }
    }

    mutating func blendStripes(
        x: Double, y: Double, width: Double, height: Double, period: Int, diagonal: Bool,
        color: SimulatedPainter.Color, alpha: UInt8
    ) {
        blend(x: x, y: y, width: width, height: height, color: color, alpha: alpha) { px, py in
            ((diagonal ? px + py : px) / period) % 2 == 0
        }
    }

    /// Blends `color` over every pixel of the clipped rectangle for which `covers` is true.
    private mutating func blend(
        x: Double, y: Double, width: Double, height: Double, color: SimulatedPainter.Color, alpha: UInt8,
        covers: (Int, Int) -> Bool
    ) {
        let x0 = max(0, Int(x.rounded(.down)))
        let y0 = max(0, Int(y.rounded(.down)))
        let x1 = min(self.width, Int((x + width).rounded(.up)))
        let y1 = min(self.height, Int((y + height).rounded(.up)))
        guard x0 < x1, y0 < y1 else { return }
        let stride = self.width
        let weight = Int(alpha)
        pixels.withUnsafeMutableBufferPointer { pixels in
            for py in y0..<y1 {
                for px in x0..<x1 where covers(px, py) {
                    let index = (py * stride + px) * 4
                    pixels[index] = SimulatedPainter.mix(pixels[index], color.red, weight)
                    pixels[index + 1] = SimulatedPainter.mix(pixels[index + 1], color.green, weight)
                    pixels[index + 2] = SimulatedPainter.mix(pixels[index + 2], color.blue, weight)
                }
            }
        }
    }
}
