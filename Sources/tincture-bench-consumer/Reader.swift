import CTinctureBPF
import Glibc

/// Drains one BPF ring buffer on the calling thread, as the agent's
/// `RingBufferReader` does: the ring is read through its memory mapping
/// (`tn_ring_*`), each record handed to `handler` in place.
final class Reader {
    private var ring: OpaquePointer?  // struct tn_ring
    private let handler: (UnsafeRawBufferPointer) -> Void
    /// The agent's poll timeout (RingBufferReader.pollTimeoutMs).
    static let pollTimeoutMs: Int32 = 20

    init(mapFD: Int32, handler: @escaping (UnsafeRawBufferPointer) -> Void) throws {
        self.handler = handler
        guard let ring = tn_ring_open(mapFD) else {
            throw BenchError("tn_ring_open: \(String(cString: strerror(errno)))")
        }
        self.ring = ring
    }

    deinit { tn_ring_close(ring) }

    /// One step of the agent's reader loop: a bounded wait for a wake-up, then
    /// whatever is waiting (records submitted without a wake-up too).
    func poll() throws {
        let rc = tn_ring_wait(ring, Self.pollTimeoutMs)
        if rc < 0 && rc != -EINTR {
            throw BenchError("tn_ring_wait: \(String(cString: strerror(-rc)))")
        }
        _ = tn_ring_drain(ring, readerRecord, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Consumes every record available without waiting; returns how many.
    func consume() throws -> Int {
        Int(tn_ring_drain(ring, readerRecord, Unmanaged.passUnretained(self).toOpaque()))
    }

    fileprivate func deliver(_ data: UnsafeRawPointer?, _ size: Int) {
        handler(UnsafeRawBufferPointer(start: data, count: size))
    }
}

private func readerRecord(_ context: UnsafeMutableRawPointer?, _ data: UnsafeRawPointer?, _ size: Int) {
    guard let context else { return }
    // The reader outlives every drain that calls back: no retain and release per record.
    Unmanaged<Reader>.fromOpaque(context)._withUnsafeGuaranteedRef { $0.deliver(data, size) }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
