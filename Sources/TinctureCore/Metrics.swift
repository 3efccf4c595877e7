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
        let key = SeriesCap.key(labels, isNew: series[labels] == nil, count: series.count, cap: seriesCap,
                                foldable: foldable, folded: &folded)
        series[key, default: Histogram(bounds: bounds)].observe(value)
    }
}

/// A counter family keyed by label values, with the same series cap as `HistogramFamily`.
public struct CounterFamily: Sendable {
    public let name: String
    public let help: String
    public let labelNames: [String]
    public let seriesCap: Int
    public let foldable: [Int]
    public private(set) var series: [[String]: UInt64] = [:]
    public private(set) var folded: UInt64 = 0

    public init(name: String, help: String, labelNames: [String], seriesCap: Int, foldable: [String]) {
        self.name = name
        self.help = help
        self.labelNames = labelNames
        self.seriesCap = seriesCap
        self.foldable = foldable.compactMap { labelNames.firstIndex(of: $0) }
    }

    public mutating func add(_ labels: [String], _ value: UInt64) {
        precondition(labels.count == labelNames.count)
        let key = SeriesCap.key(labels, isNew: series[labels] == nil, count: series.count, cap: seriesCap,
                                foldable: foldable, folded: &folded)
        series[key, default: 0] += value
    }
}

enum SeriesCap {
    /// The label set to record under: itself, or past the cap its foldable labels
    /// as "other" (counted in `folded`).
    static func key(_ labels: [String], isNew: Bool, count: Int, cap: Int, foldable: [Int],
                    folded: inout UInt64) -> [String] {
        guard isNew && count >= cap else { return labels }
        var other = labels
        for i in foldable { other[i] = "other" }
        folded += 1
        return other
    }
}

/// What the agent aggregates from decoded events. Not thread-safe: the reader
/// thread mutates it and scrapes render it under the agent's lock.
public struct Aggregates: Sendable {
    public static let defaultSeriesCap = 2000

    public var connectDuration: HistogramFamily
    public var retransmits: CounterFamily
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
        retransmits = CounterFamily(
            name: "tincture_tcp_retransmits_total",
            help: "TCP segments retransmitted (data, SYN and SYN-ACK), by owning process, service endpoint and socket state.",
            labelNames: ["comm", "endpoint", "state"],
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
        case .retransmit(let r):
            retransmits.add([r.commLabel, r.endpoint.description, r.stateName], UInt64(r.segs))
        case .poll:
            // Every wait is already counted in the kernel's histogram; events only feed the stream.
            break
        }
    }

    public mutating func recordDecodeError(_ error: DecodeError) {
        decodeErrors[error.reason, default: 0] += 1
    }
}
