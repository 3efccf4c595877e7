/// A fixed-bucket histogram: per-bucket counts (not cumulative), a sum and a count.
/// Observing is a short linear scan over at most a few dozen bounds, no allocation.
public struct Histogram: Equatable, Sendable {
    /// Upper bounds, ascending; +Inf is implicit.
    public let bounds: [Double]
    /// counts[i] observations in (bounds[i-1], bounds[i]]; counts[bounds.count] above the last.
    public private(set) var counts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init(bounds: [Double]) {
        precondition(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "bounds must ascend")
        self.bounds = bounds
        self.counts = [UInt64](repeating: 0, count: bounds.count + 1)
    }

    public mutating func observe(_ value: Double) {
        var i = 0
        while i < bounds.count && value > bounds[i] { i += 1 }
        counts[i] += 1
        sum += value
        count += 1
    }

    /// Adds counts kept elsewhere (per bucket, not cumulative, same bounds) and their sum.
    public mutating func merge(counts more: [UInt64], sum more_sum: Double) {
        for i in 0..<min(counts.count, more.count) {
            counts[i] += more[i]
            count += more[i]
        }
        sum += more_sum
    }

    /// Cumulative counts per bound, then +Inf: what the exposition formats print.
    public var cumulative: [UInt64] {
        var running: UInt64 = 0
        return counts.map { running += $0; return running }
    }
}

public enum Buckets {
    /// Connect latency bounds. Below 0.5 s they follow loopback-to-WAN round trips;
    /// above, each bound sits between two SYN retransmit steps, so the bucket a slow
    /// connect lands in says how many SYNs were lost. The initial SYN timeout is 1 s;
    /// it doubles (lost SYNs → 1, 3, 7, 15, 31, 63 s), except that Linux 6.x first
    /// retries linearly (`net.ipv4.tcp_syn_linear_timeouts`, default 4: 1, 2, 3, 4 s).
    public static let connectSeconds: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.5, 2.5, 3.5, 4.5, 7.5, 15.5, 31.5, 63.5,
    ]

    /// Poll-wait bounds (bpf/tincture.h TN_POLL_BOUNDS_NS, in seconds): the kernel
    /// buckets every wait with these, so the two lists must stay equal (tested).
    public static let pollSeconds: [Double] = [
        0.00001, 0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ]

    /// Request time-to-first-byte bounds.
    public static let requestSeconds: [Double] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ]
}
