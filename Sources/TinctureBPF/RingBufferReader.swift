internal import CLibbpf
import Glibc
import Synchronization

/// Drains the BPF ring buffer on one dedicated thread (the caller of `run()`),
/// never on the Swift concurrency pool. Records are handed to `handler` in place:
/// it must copy what it keeps before returning.
public final class RingBufferReader: @unchecked Sendable {
    // @unchecked: `ring` and `handler` are only touched by the thread in run();
    // `stopRequested` is atomic and is the only cross-thread state.
    private var ring: OpaquePointer?
    private let handler: (UnsafeRawBufferPointer) -> Void
    private let stopRequested = Atomic<Bool>(false)
    /// How long one poll may block. The kernel side wakes the reader only once a
    /// batch has built up (TN_WAKEUP_BYTES), so this also bounds how long a record
    /// can wait to be read, and shutdown latency.
    public static let pollTimeoutMs: Int32 = 20

    init(mapFD: Int32, handler: @escaping (UnsafeRawBufferPointer) -> Void) throws {
        self.handler = handler
        let context = Unmanaged.passUnretained(self).toOpaque()
        ring = try Libbpf.check(ring_buffer__new(mapFD, ringBufferSample, context, nil), .ringBuffer, "map tn_events")
    }

    deinit { if let ring { ring_buffer__free(ring) } }

    /// Blocks, consuming records until `stop()` is called. Throws on a poll error.
    public func run() throws {
        while !stopRequested.load(ordering: .relaxed) {
            let rc = ring_buffer__poll(ring, Self.pollTimeoutMs)
            if rc < 0 && rc != -EINTR {
                try Libbpf.check(rc, .ringBuffer, "polling map tn_events")
            }
            // Records submitted without a wake-up are ready too: take them every interval.
            let consumed = ring_buffer__consume(ring)
            if consumed < 0 && consumed != -EINTR {
                try Libbpf.check(consumed, .ringBuffer, "consuming map tn_events")
            }
        }
        // Drain what arrived before the stop so nothing already queued is lost.
        _ = ring_buffer__consume(ring)
    }

    public func stop() { stopRequested.store(true, ordering: .relaxed) }

    fileprivate func deliver(_ data: UnsafeMutableRawPointer?, _ size: Int) {
        handler(UnsafeRawBufferPointer(start: data, count: size))
    }
}

private func ringBufferSample(_ context: UnsafeMutableRawPointer?, _ data: UnsafeMutableRawPointer?, _ size: Int) -> Int32 {
    guard let context else { return 0 }
    // The reader outlives every poll that calls back: no retain and release per record.
    Unmanaged<RingBufferReader>.fromOpaque(context)._withUnsafeGuaranteedRef { $0.deliver(data, size) }
    return 0
}
