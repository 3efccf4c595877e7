/// What the agent does with every decoded event: aggregate it, correlate it with
/// requests in flight, and record and store the requests it finishes. One value,
/// mutated by the ring-buffer reader; the agent keeps it behind its lock.
public struct EventPipeline: Sendable {
    public var aggregates: Aggregates
    public var correlator: Correlator
    public var store = RequestStore()
    private var lastExpiryNs: UInt64 = 0

    public init(aggregates: Aggregates = Aggregates(), correlator: Correlator = Correlator()) {
        self.aggregates = aggregates
        self.correlator = correlator
    }

    /// Applies one event; returns the request records it finished. `wallTimeSeconds`
    /// (Unix time, for exemplars) is read only when a record finishes.
    public mutating func apply(_ event: Event, wallTimeSeconds: () -> Double) -> [RequestRecord] {
        aggregates.record(event)
        var finished: [RequestRecord] = []
        let nowNs: UInt64
        switch event {
        case .connect(let c): correlator.connected(c); nowNs = c.endNs
        case .retransmit(let r): correlator.retransmitted(r); nowNs = r.timestampNs
        case .poll(let p): correlator.waited(p); nowNs = p.endNs
        case .payload(let p): finished = correlator.payload(p); nowNs = p.timestampNs
        }
        return settle(finished, nowNs: nowNs, wallTimeSeconds: wallTimeSeconds)
    }

    /// No event came for a while: requests past the timeout still end (an idle host
    /// sends no event to end them). `nowNs` is CLOCK_MONOTONIC, the kernel stamps' clock.
    public mutating func tick(nowNs: UInt64, wallTimeSeconds: () -> Double) -> [RequestRecord] {
        settle([], nowNs: nowNs, wallTimeSeconds: wallTimeSeconds)
    }

    /// Ends what the timeout ends (looking once a second), then records and stores
    /// every finished request.
    private mutating func settle(_ finished: [RequestRecord], nowNs: UInt64,
                                 wallTimeSeconds: () -> Double) -> [RequestRecord] {
        var finished = finished
        if nowNs > lastExpiryNs &+ 1_000_000_000 {
            lastExpiryNs = nowNs
            finished += correlator.expire(nowNs: nowNs)
        }
        if !finished.isEmpty {
            let wall = wallTimeSeconds()
            for r in finished {
                aggregates.record(r, wallTimeSeconds: wall)
                store.add(r)
            }
        }
        return finished
    }
}
