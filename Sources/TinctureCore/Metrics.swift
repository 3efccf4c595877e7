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
    /// Label sets in the order first seen, and their histograms at the same index.
    public private(set) var labelSets: [[String]] = []
    public private(set) var histograms: [Histogram] = []
    private var index: [[String]: Int] = [:]
    public private(set) var folded: UInt64 = 0
    /// Per series (same index), per bucket: the latest observation that carried an
    /// exemplar; empty until the series has one.
    private var seriesExemplars: [[Exemplar?]] = []
    /// Exemplars for label sets counted elsewhere (the kernel's map), not here.
    private var otherExemplars: [[String]: [Int: Exemplar]] = [:]

    public init(name: String, help: String, labelNames: [String], bounds: [Double],
                seriesCap: Int, foldable: [String]) {
        self.name = name
        self.help = help
        self.labelNames = labelNames
        self.bounds = bounds
        self.seriesCap = seriesCap
        self.foldable = foldable.compactMap { labelNames.firstIndex(of: $0) }
    }

    /// Every series by its label set.
    public var series: [[String]: Histogram] { Dictionary(uniqueKeysWithValues: zip(labelSets, histograms)) }

    /// Per label set, per bucket index: the latest observation that carried an exemplar.
    public var exemplars: [[String]: [Int: Exemplar]] {
        var out = otherExemplars
        for (i, buckets) in seriesExemplars.enumerated() where !buckets.isEmpty {
            for (bucket, exemplar) in buckets.enumerated() {
                if let exemplar { out[labelSets[i], default: [:]][bucket] = exemplar }
            }
        }
        return out
    }

    /// Where observations for `labels` go, adding the series if new: `labels` itself,
    /// or past the cap its foldable labels as "other" (`folded` true). Indices stay
    /// valid for the family's lifetime: series are never removed.
    public mutating func seriesIndex(_ labels: [String]) -> (index: Int, folded: Bool) {
        precondition(labels.count == labelNames.count)
        if let i = index[labels] { return (i, false) }
        var key = labels
        let fold = index.count >= seriesCap
        if fold {
            for i in foldable { key[i] = "other" }
            if let i = index[key] { return (i, true) }
        }
        index[key] = histograms.count
        labelSets.append(key)
        histograms.append(Histogram(bounds: bounds))
        seriesExemplars.append([])
        return (histograms.count - 1, fold)
    }

    /// One observation into the series at `seriesIndex`, counted as folded if it was.
    public mutating func observe(at series: (index: Int, folded: Bool), _ value: Double) {
        if series.folded { folded += 1 }
        histograms[series.index].observe(value)
    }

    public mutating func observe(_ labels: [String], _ value: Double, exemplar: Exemplar? = nil) {
        let series = seriesIndex(labels)
        observe(at: series, value)
        if let exemplar { attach(exemplar, at: series.index) }
    }

    /// Attach an exemplar to the bucket its value falls in, in the series at `index`.
    public mutating func attach(_ exemplar: Exemplar, at index: Int) {
        let bucket = bounds.firstIndex { exemplar.value <= $0 } ?? bounds.count
        if seriesExemplars[index].isEmpty { seriesExemplars[index] = [Exemplar?](repeating: nil, count: bounds.count + 1) }
        seriesExemplars[index][bucket] = exemplar
    }

    /// Adds a row counted elsewhere (the kernel's histogram map) under the same series cap.
    public mutating func merge(_ labels: [String], counts: [UInt64], sum: Double) {
        let series = seriesIndex(labels)
        if series.folded { folded += 1 }
        histograms[series.index].merge(counts: counts, sum: sum)
    }

    /// Attach an exemplar to the bucket its value falls in (an observation counted
    /// elsewhere, e.g. the connect a request paid for, counted in the kernel).
    public mutating func attach(_ exemplar: Exemplar, to labels: [String]) {
        if let i = index[labels] { return attach(exemplar, at: i) }
        // The series lives in the kernel's map; bound these exemplars like the series.
        guard otherExemplars[labels] != nil || otherExemplars.count < seriesCap else { return }
        let bucket = bounds.firstIndex { exemplar.value <= $0 } ?? bounds.count
        otherExemplars[labels, default: [:]][bucket] = exemplar
    }
}

/// An OpenMetrics exemplar: a request ID pointing at one observation. Request IDs
/// are unbounded, so they travel only here, never as labels.
public struct Exemplar: Equatable, Sendable {
    public var requestID: String
    public var value: Double
    /// Unix time, seconds.
    public var timestamp: Double

    /// OpenMetrics caps an exemplar's label names and values at 128 code points
    /// together; `request_id` leaves this many for the ID. A longer ID gets no exemplar.
    public static let maxRequestIDLength = 128 - "request_id".count

    public static func fits(_ requestID: String) -> Bool {
        requestID.unicodeScalars.count <= maxRequestIDLength
    }

    public init(requestID: String, value: Double, timestamp: Double) {
        self.requestID = requestID
        self.value = value
        self.timestamp = timestamp
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
    /// `isNew` is asked only at the cap: below it every label set is kept as is.
    static func key(_ labels: [String], isNew: @autoclosure () -> Bool, count: Int, cap: Int, foldable: [Int],
                    folded: inout UInt64) -> [String] {
        guard count >= cap && isNew() else { return labels }
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
    public var requestDuration: HistogramFamily
    public private(set) var requestEnds: [String: UInt64] = [:]
    /// Exemplars for the kernel-aggregated poll-wait histogram, by [comm, syscall] and bucket.
    public private(set) var pollWaitExemplars: [[String]: [Int: Exemplar]] = [:]
    public private(set) var eventsReceived = KindCounts()
    public private(set) var decodeErrors: [String: UInt64] = [:]
    private var connectFastCache = SeriesCache()
    private var requestFastCache = SeriesCache()

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
        requestDuration = HistogramFamily(
            name: "tincture_http_request_duration_seconds",
            help: "HTTP/1.x request to first response bytes, seen on the socket, by process, side and service endpoint.",
            labelNames: ["comm", "side", "endpoint"],
            bounds: Buckets.requestSeconds,
            seriesCap: seriesCap,
            foldable: ["comm", "endpoint"])
    }

    /// A finished request: its time to first byte, with its ID as the exemplar, and
    /// its ID on the connect it paid for.
    public mutating func record(_ r: RequestRecord, wallTimeSeconds: Double) {
        requestEnds[r.end.rawValue, default: 0] += 1
        guard r.end == .responded else { return }
        let seconds = Double(r.ttfbNs) / 1e9
        let series = requestSeries(r)
        requestDuration.observe(at: series, seconds)
        guard Exemplar.fits(r.requestID) else { return }
        requestDuration.attach(Exemplar(requestID: r.requestID, value: seconds, timestamp: wallTimeSeconds),
                               at: series.index)
        if r.connectNs > 0 {
            let connect = Double(r.connectNs) / 1e9
            connectDuration.attach(Exemplar(requestID: r.requestID, value: connect, timestamp: wallTimeSeconds),
                                   to: [r.comm, r.endpoint.description, ConnectResult.ok.name])
        }
        if let wait = r.longestWait {
            let value = Double(wait.ns) / 1e9
            let bucket = Buckets.pollSeconds.firstIndex { value <= $0 } ?? Buckets.pollSeconds.count
            // Bounded like the kernel map it decorates: no new label sets past the cap.
            let key = [wait.comm, wait.syscall.name]
            if pollWaitExemplars[key] != nil || pollWaitExemplars.count < requestDuration.seriesCap {
                pollWaitExemplars[key, default: [:]][bucket] =
                    Exemplar(requestID: r.requestID, value: value, timestamp: wallTimeSeconds)
            }
        }
    }

    public mutating func record(_ event: Event) {
        eventsReceived[event.kind] += 1
        switch event {
        case .connect(let c):
            // The kernel histogram counts every connect; an event it could not count is counted here.
            if !c.countedInKernel {
                connectDuration.observe(at: connectSeries(c), Double(c.durationNs) / 1e9)
            }
        case .retransmit(let r):
            retransmits.add([r.commLabel, r.endpoint.description, r.stateName], UInt64(r.segs))
        case .poll, .payload:
            // Waits are counted in the kernel's histogram; payloads become request records.
            break
        }
    }

    /// The connect series an event goes to, found from its raw fields (see `series`).
    private mutating func connectSeries(_ c: ConnectEvent) -> (index: Int, folded: Bool) {
        let outcome = UInt64(UInt32(bitPattern: c.error)) << 32 | (c.established ? 1 : 0)
        return Self.series(&connectFastCache, &connectDuration,
                           SeriesKeyWords(comm: c.comm, address: c.destination, extra: outcome)) {
            [c.comm, c.destination.description, c.result.name]
        }
    }

    /// The request-duration series of a record, found from its raw fields (see `series`).
    private mutating func requestSeries(_ r: RequestRecord) -> (index: Int, folded: Bool) {
        Self.series(&requestFastCache, &requestDuration,
                    SeriesKeyWords(comm: r.comm, address: r.endpoint, extra: r.side == .client ? 1 : 2)) {
            [r.comm, r.side.rawValue, r.endpoint.description]
        }
    }

    /// Label strings are built and hashed once per distinct key; after that the
    /// direct-mapped `cache` answers from raw fields. A key that does not fit
    /// (`nil`) or a slot taken by another key asks the family by labels.
    private static func series(_ cache: inout SeriesCache, _ family: inout HistogramFamily, _ key: SeriesKeyWords?,
                               labels: () -> [String]) -> (index: Int, folded: Bool) {
        guard let key else { return family.seriesIndex(labels()) }
        if let series = cache[key] { return series }
        let series = family.seriesIndex(labels())
        cache[key] = series
        return series
    }

    public mutating func recordDecodeError(_ error: DecodeError) {
        decodeErrors[error.reason, default: 0] += 1
    }
}

/// A counter per event kind, in place (no hashing per event).
public struct KindCounts: Equatable, Sendable {
    private var counts = [UInt64](repeating: 0, count: EventKind.allCases.count + 1)

    public init() {}

    public subscript(kind: EventKind) -> UInt64 {
        get { counts[Int(kind.rawValue) % counts.count] }
        set { counts[Int(kind.rawValue) % counts.count] = newValue }
    }
}

/// What picks a series with a comm and an address label, as five machine words:
/// comm bytes (up to 16), address, then port, family, comm length and the caller's
/// `extra` (an outcome, a side). Equal words, equal labels.
struct SeriesKeyWords: Equatable, Sendable {
    var comm0: UInt64 = 0
    var comm1: UInt64 = 0
    var address0: UInt64
    var address1: UInt64
    var rest: UInt64
    var extra: UInt64

    /// Nil for a comm over 16 UTF-8 bytes (one with repaired bytes): those take the slow path.
    init?(comm: String, address: SocketAddress, extra: UInt64) {
        var words: (UInt64, UInt64) = (0, 0)
        var comm = comm
        // Contiguous UTF-8 (a small string is copied out of its inline storage): one copy, no loop.
        let n = comm.withUTF8 { utf8 -> Int in
            guard utf8.count <= 16 else { return -1 }
            withUnsafeMutableBytes(of: &words) { out in
                if let base = utf8.baseAddress, utf8.count > 0 { out.baseAddress!.copyMemory(from: base, byteCount: utf8.count) }
            }
            return utf8.count
        }
        guard n >= 0 else { return nil }
        (comm0, comm1) = words
        (address0, address1) = address.words
        rest = UInt64(address.port) | UInt64(address.family.rawValue) << 16 | UInt64(n) << 24
        self.extra = extra
    }

    func slot(_ count: Int) -> Int {
        var h = comm0 &* 0x9E37_79B9_7F4A_7C15
        h = (h ^ comm1 ^ address0) &* 0xC2B2_AE3D_27D4_EB4F
        h = (h ^ address1 ^ rest ^ extra) &* 0x1656_67B1_9E37_79F9
        return Int(truncatingIfNeeded: h >> 32) & (count - 1)
    }
}

/// A two-way set-associative table from raw label fields to a series: a hit costs a
/// hash of six words and one or two compares, no strings; a miss asks the family.
/// Two ways, so that two busy keys whose hashes meet do not evict each other on
/// every event (with one way, a few dozen series already collide somewhere).
struct SeriesCache: Sendable {
    static let sets = 256
    private var keys = [SeriesKeyWords?](repeating: nil, count: sets * 2)
    private var series = [(index: Int, folded: Bool)](repeating: (0, false), count: sets * 2)

    subscript(key: SeriesKeyWords) -> (index: Int, folded: Bool)? {
        get {
            let way0 = key.slot(Self.sets) &* 2
            if keys[way0] == key { return series[way0] }
            if keys[way0 + 1] == key { return series[way0 + 1] }
            return nil
        }
        set {
            let way0 = key.slot(Self.sets) &* 2
            let at = keys[way0] == key ? way0 : keys[way0 + 1] == key ? way0 + 1 : nil
            guard let newValue else {
                if let at { keys[at] = nil }
                return
            }
            if let at {
                series[at] = newValue
                return
            }
            // The newest key takes way 0; the one it displaces moves to way 1.
            keys[way0 + 1] = keys[way0]
            series[way0 + 1] = series[way0]
            keys[way0] = key
            series[way0] = newValue
        }
    }
}
