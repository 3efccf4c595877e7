import Glibc
import TinctureCore

/// The agent's per-event path (`Agent.consume`) without its lock and live stream:
/// decode, aggregate, correlate, expire stale requests once a second of event time.
/// `Stages` cuts it short to measure what each step costs.
final class Consumer {
    enum Stages: String, CaseIterable {
        /// The reader alone: each record's kind and size checked, as c_consumer.c checks them.
        case read
        /// EventDecoder.decode only.
        case decode
        /// decode, then Aggregates.record.
        case aggregate
        /// The whole path, as the agent runs it.
        case agent
    }

    /// What the agent keeps behind its lock.
    struct State {
        var aggregates = Aggregates()
        var correlator = Correlator()
        var store = RequestStore()
        var lastExpiryNs: UInt64 = 0
        var consumed: UInt64 = 0
        var decodeErrors: UInt64 = 0
    }

    let stages: Stages
    private(set) var state = State()

    init(stages: Stages = .agent) { self.stages = stages }

    var consumed: UInt64 { state.consumed }
    var decodeErrors: UInt64 { state.decodeErrors }
    var connectSeries: Int { state.aggregates.connectDuration.series.count }

    /// Ring-buffer callback, on the reader thread.
    func consume(_ bytes: UnsafeRawBufferPointer) {
        switch stages {
        case .agent: Self.consume(bytes, into: &state)
        case .aggregate: Self.aggregate(bytes, into: &state)
        case .decode: Self.decode(bytes, into: &state)
        case .read: Self.read(bytes, into: &state)
        }
    }

    private static func read(_ bytes: UnsafeRawBufferPointer, into s: inout State) {
        guard bytes.count >= ConnectEventLayout.size,
              bytes.loadUnaligned(fromByteOffset: ConnectEventLayout.kind, as: UInt32.self) == EventKind.connect.rawValue
        else {
            s.decodeErrors += 1
            return
        }
        s.consumed += 1
    }

    private static func decode(_ bytes: UnsafeRawBufferPointer, into s: inout State) {
        switch EventDecoder.decode(bytes) {
        case .success(let event):
            if case .connect(let c) = event, c.endNs > s.lastExpiryNs { s.lastExpiryNs = c.endNs }
            s.consumed += 1
        case .failure:
            s.decodeErrors += 1
        }
    }

    private static func aggregate(_ bytes: UnsafeRawBufferPointer, into s: inout State) {
        switch EventDecoder.decode(bytes) {
        case .success(let event):
            s.aggregates.record(event)
            s.consumed += 1
        case .failure(let error):
            s.aggregates.recordDecodeError(error)
            s.decodeErrors += 1
        }
    }

    private static func consume(_ bytes: UnsafeRawBufferPointer, into s: inout State) {
        switch EventDecoder.decode(bytes) {
        case .success(let event):
            s.aggregates.record(event)
            var finished: [RequestRecord] = []
            var nowNs: UInt64 = 0
            switch event {
            case .connect(let c): s.correlator.connected(c); nowNs = c.endNs
            case .retransmit(let r): s.correlator.retransmitted(r); nowNs = r.timestampNs
            case .poll(let p): s.correlator.waited(p); nowNs = p.endNs
            case .payload(let p): finished = s.correlator.payload(p); nowNs = p.timestampNs
            }
            if nowNs > s.lastExpiryNs &+ 1_000_000_000 {
                s.lastExpiryNs = nowNs
                finished += s.correlator.expire(nowNs: nowNs)
            }
            if !finished.isEmpty {
                // Exemplar timestamps: read the clock only when a request finished.
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                let wall = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
                for r in finished {
                    s.aggregates.record(r, wallTimeSeconds: wall)
                    s.store.add(r)
                }
            }
            s.consumed += 1
        case .failure(let error):
            s.aggregates.recordDecodeError(error)
            s.decodeErrors += 1
        }
    }
}
