internal import CTinctureBPF
import Glibc
import Synchronization

/// Drains the BPF ring buffer on one dedicated thread (the caller of `run()`),
/// never on the Swift concurrency pool. Records are handed to `handler` in place:
/// it must copy what it keeps before returning.
public final class RingBufferReader: @unchecked Sendable {
    // @unchecked: `ring` and `handler` are only touched by the thread in run();
    // `stopRequested` is atomic and is the only cross-thread state.
    private var ring: OpaquePointer?  // struct tn_ring
    private let handler: (UnsafeRawBufferPointer) -> Void
    /// Runs on the reader thread after an interval that brought no record.
    private let idle: () -> Void
    private let stopRequested = Atomic<Bool>(false)
    /// How long one poll may block. The kernel side wakes the reader only once a
    /// batch has built up (TN_WAKEUP_BYTES), so this also bounds how long a record
    /// can wait to be read, and shutdown latency.
    public static let pollTimeoutMs: Int32 = 20

    init(mapFD: Int32, handler: @escaping (UnsafeRawBufferPointer) -> Void, idle: @escaping () -> Void = {}) throws {
        self.handler = handler
        self.idle = idle
        ring = try Libbpf.check(tn_ring_open(mapFD), .ringBuffer, "map tn_events")
    }

    deinit { tn_ring_close(ring) }

    /// Blocks, consuming records until `stop()` is called. Throws on a poll error.
    public func run() throws {
        // The reader outlives run(), and with it every callback: no retain per record.
        let context = Unmanaged.passUnretained(self).toOpaque()
        while !stopRequested.load(ordering: .relaxed) {
            let rc = tn_ring_wait(ring, Self.pollTimeoutMs)
            if rc < 0 && rc != -EINTR {
                try Libbpf.check(rc, .ringBuffer, "polling map tn_events")
            }
            // Records submitted without a wake-up are ready too: take them every interval.
            if tn_ring_drain(ring, ringBufferRecord, context) == 0 { idle() }
        }
        // Drain what arrived before the stop so nothing already queued is lost.
        _ = tn_ring_drain(ring, ringBufferRecord, context)
    }

    public func stop() { stopRequested.store(true, ordering: .relaxed) }

    fileprivate func deliver(_ data: UnsafeRawPointer?, _ size: Int) {
        handler(UnsafeRawBufferPointer(start: data, count: size))
    }
}

private func ringBufferRecord(_ context: UnsafeMutableRawPointer?, _ data: UnsafeRawPointer?, _ size: Int) {
    guard let context else { return }
    Unmanaged<RingBufferReader>.fromOpaque(context)._withUnsafeGuaranteedRef { $0.deliver(data, size) }
}
