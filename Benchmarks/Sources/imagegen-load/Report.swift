import BenchmarkSupport
import Foundation

/// A JSON value whose objects keep their keys in the order written, so reports read well.
indirect enum JSON: Sendable {
    case number(Double)
    case int(Int)
    case string(String)
    case bool(Bool)
    case array([JSON])
    case object([(String, JSON)])
    case null

    /// `{"p50": …, "p99": …, "max": …, "count": …}` in milliseconds (or whatever `values` hold).
    static func distribution(_ distribution: Distribution) -> JSON {
        .object([
            ("p50", .number(distribution.p50)), ("p99", .number(distribution.p99)), ("max", .number(distribution.max)),
            ("mean", .number(distribution.mean)), ("count", .int(distribution.count)),
        ])
    }

    func serialized(indent: String = "") -> String {
        let inner = indent + "  "
        switch self {
        case .number(let value):
            guard value.isFinite else { return "null" }
            return value == value.rounded() && abs(value) < 1e15
                ? String(Int64(value)) : String(format: "%.4g", value).replacingOccurrences(of: "e+", with: "e")
        case .int(let value): return String(value)
        case .string(let value): return JSON.quote(value)
        case .bool(let value): return value ? "true" : "false"
        case .null: return "null"
        case .array(let values):
            if values.isEmpty { return "[]" }
            if values.allSatisfy({ if case .object = $0 { return false } else { return true } }) {
                return "[" + values.map { $0.serialized() }.joined(separator: ", ") + "]"
            }
            return "[\n" + values.map { inner + $0.serialized(indent: inner) }.joined(separator: ",\n") + "\n" + indent
                + "]"
        case .object(let pairs):
            if pairs.isEmpty { return "{}" }
            return "{\n"
                + pairs.map { inner + JSON.quote($0.0) + ": " + $0.1.serialized(indent: inner) }.joined(
                    separator: ",\n")
                + "\n" + indent + "}"
        }
    }

    private static func quote(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// What one scenario produced: figures for the table and the JSON report, and the series the
/// chart draws.
struct ScenarioResult: Sendable {
    var scenario: String
    /// Rows of the human table: figure, value, and the target where the issue sets one.
    var rows: [(String, String, String)] = []
    /// The report's figures, in order.
    var figures: [(String, JSON)] = []
    /// The latency sample the chart's histogram shows, in milliseconds, and what it is.
    var latencies: [Double] = []
    var latencyLabel = "LATENCY MS"
    /// Jobs finished per second, by time bin, and the bin's length in seconds.
    var throughput: [Double] = []
    var throughputBin = 0.25

    mutating func add(_ name: String, _ value: JSON, row: String? = nil, value text: String? = nil, target: String = "")
    {
        figures.append((name, value))
        if let row { rows.append((row, text ?? value.serialized(), target)) }
    }

    /// The human table.
    func table() -> String {
        let width = max(10, rows.map(\.0.count).max() ?? 0)
        let valueWidth = max(8, rows.map(\.1.count).max() ?? 0)
        var lines = ["", "imagegen-load \(scenario)", String(repeating: "-", count: width + valueWidth + 20)]
        for (name, value, target) in rows {
            let padded = name.padding(toLength: width, withPad: " ", startingAt: 0)
            let paddedValue = String(repeating: " ", count: max(0, valueWidth - value.count)) + value
            lines.append("\(padded)  \(paddedValue)" + (target.isEmpty ? "" : "   target \(target)"))
        }
        return lines.joined(separator: "\n")
    }
}

func format(_ value: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }
func formatMS(_ distribution: Distribution) -> String {
    "p50 \(format(distribution.p50, 2)) / p99 \(format(distribution.p99, 2)) / max \(format(distribution.max, 2))"
}
