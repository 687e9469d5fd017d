/// Percentiles of a sample, by the nearest-rank method on the sorted values.
public struct Distribution: Sendable {
    public let sorted: [Double]

    public init(_ values: [Double]) { sorted = values.sorted() }

    public var count: Int { sorted.count }

    /// The value at fraction `p` (0...1) of the sorted sample; 0 for an empty one.
    public func percentile(_ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((Double(sorted.count) * p).rounded(.up)) - 1
        return sorted[Swift.min(sorted.count - 1, Swift.max(0, rank))]
    }

    public var p50: Double { percentile(0.5) }
    public var p99: Double { percentile(0.99) }
    public var max: Double { sorted.last ?? 0 }
    public var mean: Double { sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count) }
}

extension Duration {
    /// The duration in seconds, with its fraction.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// The duration in milliseconds, with its fraction.
    public var inMilliseconds: Double { inSeconds * 1000 }
}
