import BenchmarkSupport
import ImageIngest

/// Draws a run's two pictures side by side into pixels — the latency distribution (histogram)
/// and the throughput over time — and encodes them with the project's own PNG encoder.
struct Chart {
    private var canvas: Canvas

    static let width = 1200
    static let height = 480

    init() { canvas = Canvas(width: Chart.width, height: Chart.height) }

    /// The PNG of `result`'s latency sample and throughput series.
    static func png(for result: ScenarioResult) throws -> [UInt8] {
        var chart = Chart()
        chart.canvas.text("IMAGEGEN-LOAD \(result.scenario.uppercased())", x: 20, y: 12, scale: 3, colour: .ink)
        chart.histogram(result.latencies, label: result.latencyLabel, x: 20, y: 60, width: 560, height: 380)
        chart.series(result.throughput, bin: result.throughputBin, x: 620, y: 60, width: 560, height: 380)
        return try PNGCodec.encode(chart.canvas.image, keepAlpha: false)
    }

    private mutating func histogram(_ values: [Double], label: String, x: Int, y: Int, width: Int, height: Int) {
        let distribution = Distribution(values)
        canvas.text(
            "\(label)  N \(values.count)  P50 \(format(distribution.p50, 2))  P99 \(format(distribution.p99, 2))",
            x: x, y: y, scale: 2, colour: .ink)
        let plotTop = y + 24
        let plotHeight = height - 50
        canvas.frame(x: x, y: plotTop, width: width, height: plotHeight)
        guard !values.isEmpty else { return }
        // Up to the 99.9th percentile; the rest piles into the last bin.
        let upper = max(distribution.percentile(0.999), 1e-9)
        let binCount = 60
        var bins = [Int](repeating: 0, count: binCount)
        for value in values { bins[min(binCount - 1, max(0, Int(value / upper * Double(binCount))))] += 1 }
        let tallest = max(1, bins.max() ?? 1)
        let barWidth = (width - 4) / binCount
        for (index, count) in bins.enumerated() {
            let barHeight = count * (plotHeight - 4) / tallest
            canvas.fill(
                x: x + 2 + index * barWidth, y: plotTop + plotHeight - 2 - barHeight, width: max(1, barWidth - 1),
                height: barHeight, colour: .blue)
        }
        for (p, colour) in [(distribution.p50, Colour.green), (distribution.p99, Colour.red)] {
            let px = x + 2 + Int(min(1, p / upper) * Double(width - 4))
            canvas.fill(x: px, y: plotTop + 1, width: 2, height: plotHeight - 2, colour: colour)
        }
        canvas.text("0", x: x, y: plotTop + plotHeight + 6, scale: 2, colour: .ink)
        let right = format(upper, 2)
        canvas.text(right, x: x + width - right.count * 8, y: plotTop + plotHeight + 6, scale: 2, colour: .ink)
    }

    private mutating func series(_ values: [Double], bin: Double, x: Int, y: Int, width: Int, height: Int) {
        let peak = values.max() ?? 0
        canvas.text("JOBS/S OVER TIME  PEAK \(format(peak, 0))", x: x, y: y, scale: 2, colour: .ink)
        let plotTop = y + 24
        let plotHeight = height - 50
        canvas.frame(x: x, y: plotTop, width: width, height: plotHeight)
        guard values.count > 0, peak > 0 else { return }
        var previous: (Int, Int)?
        for (index, value) in values.enumerated() {
            let px = x + 2 + index * (width - 4) / max(1, values.count - 1)
            let py = plotTop + plotHeight - 2 - Int(value / peak * Double(plotHeight - 4))
            if let previous { canvas.line(from: previous, to: (px, py), colour: .blue) }
            previous = (px, py)
        }
        canvas.text("0 S", x: x, y: plotTop + plotHeight + 6, scale: 2, colour: .ink)
        let right = "\(format(Double(values.count) * bin, 1)) S"
        canvas.text(right, x: x + width - right.count * 8, y: plotTop + plotHeight + 6, scale: 2, colour: .ink)
    }
}

struct Colour {
    var r, g, b: UInt8
    static let ink = Colour(r: 30, g: 30, b: 40)
    static let blue = Colour(r: 40, g: 100, b: 200)
    static let green = Colour(r: 20, g: 160, b: 60)
    static let red = Colour(r: 210, g: 40, b: 40)
    static let grey = Colour(r: 170, g: 170, b: 180)
}

/// An opaque RGBA canvas with rectangles, lines and a 3 × 5 pixel font.
struct Canvas {
    private(set) var image: RGBAImage

    init(width: Int, height: Int) {
        image = RGBAImage(width: width, height: height, red: 255, green: 255, blue: 255, alpha: 255)
    }

    mutating func set(_ x: Int, _ y: Int, _ colour: Colour) {
        guard x >= 0, y >= 0, x < image.width, y < image.height else { return }
        let offset = (y * image.width + x) * 4
        image.pixels[offset] = colour.r
        image.pixels[offset + 1] = colour.g
        image.pixels[offset + 2] = colour.b
        image.pixels[offset + 3] = 255
    }

    mutating func fill(x: Int, y: Int, width: Int, height: Int, colour: Colour) {
        guard width > 0, height > 0 else { return }
        for row in y..<(y + height) { for column in x..<(x + width) { set(column, row, colour) } }
    }

    mutating func frame(x: Int, y: Int, width: Int, height: Int) {
        fill(x: x, y: y, width: width, height: 1, colour: .grey)
        fill(x: x, y: y + height - 1, width: width, height: 1, colour: .grey)
        fill(x: x, y: y, width: 1, height: height, colour: .grey)
        fill(x: x + width - 1, y: y, width: 1, height: height, colour: .grey)
    }

    /// Bresenham, two pixels thick.
    mutating func line(from start: (Int, Int), to end: (Int, Int), colour: Colour) {
        var (x0, y0) = start
        let (x1, y1) = end
        let dx = abs(x1 - x0)
        let dy = -abs(y1 - y0)
        let sx = x0 < x1 ? 1 : -1
        let sy = y0 < y1 ? 1 : -1
        var error = dx + dy
        while true {
            set(x0, y0, colour)
            set(x0, y0 + 1, colour)
            if x0 == x1 && y0 == y1 { break }
            let e2 = 2 * error
            if e2 >= dy {
                error += dy
                x0 += sx
            }
            if e2 <= dx {
                error += dx
                y0 += sy
            }
        }
    }

    /// Upper-case text; characters without a glyph are left blank.
    mutating func text(_ string: String, x: Int, y: Int, scale: Int, colour: Colour) {
        var cursor = x
        for character in string.uppercased() {
            if let rows = Canvas.glyphs[character] {
                for (row, bits) in rows.enumerated() {
                    for (column, bit) in bits.enumerated() where bit == "1" {
                        fill(
                            x: cursor + column * scale, y: y + row * scale, width: scale, height: scale, colour: colour)
                    }
                }
            }
            cursor += 4 * scale
        }
    }

    private static let glyphs: [Character: [Substring]] = {
        let table: [(Character, String)] = [
            ("0", "111101101101111"), ("1", "010110010010111"), ("2", "111001111100111"), ("3", "111001111001111"),
            ("4", "101101111001001"), ("5", "111100111001111"), ("6", "111100111101111"), ("7", "111001001001001"),
            ("8", "111101111101111"), ("9", "111101111001111"), ("A", "010101111101101"), ("B", "110101110101110"),
            ("C", "011100100100011"), ("D", "110101101101110"), ("E", "111100110100111"), ("F", "111100110100100"),
            ("G", "011100101101011"), ("H", "101101111101101"), ("I", "111010010010111"), ("J", "001001001101010"),
            ("K", "101101110101101"), ("L", "100100100100111"), ("M", "101111111101101"), ("N", "110101101101101"),
            ("O", "010101101101010"), ("P", "110101110100100"), ("Q", "010101101110011"), ("R", "110101110101101"),
            ("S", "011100010001110"), ("T", "111010010010010"), ("U", "101101101101111"), ("V", "101101101101010"),
            ("W", "101101111111101"), ("X", "101101010101101"), ("Y", "101101010010010"), ("Z", "111001010100111"),
            (".", "000000000000010"), ("/", "001001010100100"), ("%", "101001010100101"), ("-", "000000111000000"),
            (":", "000010000010000"), ("(", "010100100100010"), (")", "010001001001010"), ("_", "000000000000111"),
            ("=", "000111000111000"), (">", "100010001010100"), ("<", "001010100010001"),
        ]
        var glyphs: [Character: [Substring]] = [:]
        for (character, bits) in table {
            var rows: [Substring] = []
            var index = bits.startIndex
            for _ in 0..<5 {
                let next = bits.index(index, offsetBy: 3)
                rows.append(bits[index..<next])
                index = next
            }
            glyphs[character] = rows
        }
        return glyphs
    }()
}
