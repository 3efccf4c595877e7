import Glibc
import TinctureCore

/// The agent's per-event path (`EventPipeline`) without its lock and live stream:
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

    struct State {
        /// What the agent keeps behind its lock.
        var pipeline = EventPipeline()
        /// Decode-only runs keep a field of each event, so the decode is not optimised away.
        var lastEndNs: UInt64 = 0
        var consumed: UInt64 = 0
        var decodeErrors: UInt64 = 0
        /// The agent's reader keeps one too.
        var comms = CommCache()
    }

    let stages: Stages
    /// Held through a pointer, as the agent's Mutex holds its state: no dynamic
    /// exclusivity check per record (a class property passed inout would get one).
    private let state: UnsafeMutablePointer<State>

    init(stages: Stages = .agent) {
        self.stages = stages
        state = .allocate(capacity: 1)
        state.initialize(to: State())
    }

    deinit {
        state.deinitialize(count: 1)
        state.deallocate()
    }

    var consumed: UInt64 { state.pointee.consumed }
    var decodeErrors: UInt64 { state.pointee.decodeErrors }
    var connectSeries: Int { state.pointee.pipeline.aggregates.connectDuration.series.count }

    /// Ring-buffer callback, on the reader thread.
    func consume(_ bytes: UnsafeRawBufferPointer) {
        switch stages {
        case .agent: Self.consume(bytes, into: &state.pointee)
        case .aggregate: Self.aggregate(bytes, into: &state.pointee)
        case .decode: Self.decode(bytes, into: &state.pointee)
        case .read: Self.read(bytes, into: &state.pointee)
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
        do {
            if case .connect(let c) = try EventDecoder.event(bytes, comms: &s.comms), c.endNs > s.lastEndNs { s.lastEndNs = c.endNs }
            s.consumed += 1
        } catch {
            s.decodeErrors += 1
        }
    }

    private static func aggregate(_ bytes: UnsafeRawBufferPointer, into s: inout State) {
        do {
            s.pipeline.aggregates.record(try EventDecoder.event(bytes, comms: &s.comms))
            s.consumed += 1
        } catch {
            s.pipeline.aggregates.recordDecodeError(error)
            s.decodeErrors += 1
        }
    }

    /// The agent's own per-event path (EventPipeline), minus its lock and the live stream.
    private static func consume(_ bytes: UnsafeRawBufferPointer, into s: inout State) {
        do {
            let event = try EventDecoder.event(bytes, comms: &s.comms)
            _ = s.pipeline.apply(event) {
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
            }
            s.consumed += 1
        } catch {
            s.pipeline.aggregates.recordDecodeError(error)
            s.decodeErrors += 1
        }
    }
}
