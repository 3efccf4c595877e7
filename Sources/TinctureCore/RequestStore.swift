/// The finished requests `tincture explain` can ask about: the most recent ones and
/// the slowest ones, each bounded. Records that fall out are counted.
public struct RequestStore: Sendable {
    public let recentCapacity: Int
    public let slowestCapacity: Int
    private var recent: [RequestRecord] = []
    private var next = 0
    /// Kept sorted by duration (request to its end), slowest first.
    private var slowest: [RequestRecord] = []
    public private(set) var evicted: UInt64 = 0

    public init(recentCapacity: Int = 10_000, slowestCapacity: Int = 100) {
        precondition(recentCapacity > 0 && slowestCapacity > 0)
        self.recentCapacity = recentCapacity
        self.slowestCapacity = slowestCapacity
        recent.reserveCapacity(recentCapacity)
    }

    public mutating func add(_ r: RequestRecord) {
        if recent.count < recentCapacity {
            recent.append(r)
        } else {
            recent[next] = r
            evicted += 1
        }
        next = (next + 1) % recentCapacity
        if slowest.count < slowestCapacity || r.durationNs > slowest.last!.durationNs {
            let at = slowest.firstIndex { $0.durationNs < r.durationNs } ?? slowest.count
            slowest.insert(r, at: at)
            if slowest.count > slowestCapacity { slowest.removeLast() }
        }
    }

    /// Every stored record with this ID (a client and a server may share one), oldest first.
    public func records(withID id: String) -> [RequestRecord] {
        var seen = Set<String>()
        var out: [RequestRecord] = []
        for r in recent + slowest where r.requestID == id {
            let key = "\(r.side.rawValue)-\(r.cookie)-\(r.startNs)"
            if seen.insert(key).inserted { out.append(r) }
        }
        return out.sorted { $0.startNs < $1.startNs }
    }

    public var count: Int { recent.count }
}

/// One line saying what the kernel-side numbers of a request mean.
public enum RequestReading {
    public static func lines(_ r: RequestRecord) -> [String] {
        var out: [String] = []
        if r.synRetransmits > 0 {
            out.append("connect paid \(r.synRetransmits) SYN retransmit\(r.synRetransmits == 1 ? "" : "s"): the server dropped the first SYN\(r.synRetransmits == 1 ? "" : "s") — listen backlog full or packet loss")
        } else if r.connectNs >= 100_000_000 {
            out.append("connect took \(ms(r.connectNs)) without a SYN retransmit: a slow network path or a slow accept queue")
        }
        if r.retransmits > 0 {
            out.append("\(r.retransmits) segment\(r.retransmits == 1 ? " was" : "s were") retransmitted while the request was in flight: packet loss on an open connection")
        }
        if r.end == .responded && r.ttfbNs > 0 && r.pollWaitNs * 10 >= r.ttfbNs * 8 {
            out.append("the thread spent \(ms(r.pollWaitNs)) of the \(ms(r.ttfbNs)) to first byte waiting in poll: the time went to the peer or the network, not to this process")
        }
        switch r.end {
        case .responded: break
        case .superseded: out.append("no response was seen before the next request on the same connection")
        case .closed:
            out.append("the connection closed \(ms(r.durationNs)) after the request, with no response: this end gave up (a client timeout) or the peer closed or reset it")
        case .timedOut: out.append("no response was seen within the agent's request timeout")
        case .evicted: out.append("the record was closed early to keep the agent's memory bounded")
        }
        if out.isEmpty {
            out.append("no kernel-side delay: no SYN or data retransmits, no long waits — the time went elsewhere")
        }
        return out
    }

    static func ms(_ ns: UInt64) -> String { TailFormatter.duration(ns) }
}
