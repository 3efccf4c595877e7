/// A histogram family keyed by label values, with a cap on distinct series: past the
/// cap, new label sets fold their foldable labels into "other" and `folded` counts it.
public struct HistogramFamily: Sendable {
    public let name: String
    public let help: String
    public let labelNames: [String]
    public let bounds: [Double]
    public let seriesCap: Int
    /// Indices of labels that fold to "other" when the cap is reached.
    public let foldable: [Int]
    public private(set) var series: [[String]: Histogram] = [:]
    public private(set) var folded: UInt64 = 0

    public init(name: String, help: String, labelNames: [String], bounds: [Double],
                seriesCap: Int, foldable: [String]) {
        self.name = name
        self.help = help
        self.labelNames = labelNames
        self.bounds = bounds
        self.seriesCap = seriesCap
        self.foldable = foldable.compactMap { labelNames.firstIndex(of: $0) }
    }

    public mutating func observe(_ labels: [String], _ value: Double) {
        precondition(labels.count == labelNames.count)
        if series[labels] == nil && series.count >= seriesCap {
            var other = labels
            for i in foldable { other[i] = "other" }
            folded += 1
            series[other, default: Histogram(bounds: bounds)].observe(value)
            return
        }
        series[labels, default: Histogram(bounds: bounds)].observe(value)
    }
}

/// What the agent aggregates from decoded events. Not thread-safe: the reader
/// thread mutates it and scrapes render it under the agent's lock.
public struct Aggregates: Sendable {
    public static let defaultSeriesCap = 2000

    public var connectDuration: HistogramFamily
    public private(set) var eventsReceived: [EventKind: UInt64] = [:]
    public private(set) var decodeErrors: [String: UInt64] = [:]

    public init(seriesCap: Int = Aggregates.defaultSeriesCap) {
        connectDuration = HistogramFamily(
            name: "tincture_tcp_connect_duration_seconds",
            help: "Time from connect() to the end of the TCP handshake, by caller, service endpoint and result.",
            labelNames: ["comm", "endpoint", "result"],
            bounds: Buckets.connectSeconds,
            seriesCap: seriesCap,
            foldable: ["comm", "endpoint"])
    }

    public mutating func record(_ event: Event) {
        eventsReceived[event.kind, default: 0] += 1
        switch event {
        case .connect(let c):
            connectDuration.observe(
                [c.comm, c.destination.description, c.result.name],
                Double(c.durationNs) / 1e9)
        }
    }

    public mutating func recordDecodeError(_ error: DecodeError) {
        decodeErrors[error.reason, default: 0] += 1
    }
}
