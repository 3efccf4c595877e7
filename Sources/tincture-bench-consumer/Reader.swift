import CLibbpf
import Glibc

/// Drains one BPF ring buffer on the calling thread, as the agent's
/// `RingBufferReader` does: libbpf calls back per record and the record is
/// handed to `handler` in place.
final class Reader {
    private var ring: OpaquePointer?
    private let handler: (UnsafeRawBufferPointer) -> Void
    /// The agent's poll timeout (RingBufferReader.pollTimeoutMs).
    static let pollTimeoutMs: Int32 = 20

    init(mapFD: Int32, handler: @escaping (UnsafeRawBufferPointer) -> Void) throws {
        self.handler = handler
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard let ring = ring_buffer__new(mapFD, readerSample, context, nil) else {
            throw BenchError("ring_buffer__new: \(String(cString: strerror(errno)))")
        }
        self.ring = ring
    }

    deinit { if let ring { ring_buffer__free(ring) } }

    /// One step of the agent's reader loop: a bounded poll, then whatever arrived
    /// without a wake-up.
    func poll() throws {
        let rc = ring_buffer__poll(ring, Self.pollTimeoutMs)
        if rc < 0 && rc != -EINTR {
            throw BenchError("ring_buffer__poll: \(String(cString: strerror(-rc)))")
        }
        let consumed = ring_buffer__consume(ring)
        if consumed < 0 && consumed != -EINTR {
            throw BenchError("ring_buffer__consume: \(String(cString: strerror(-consumed)))")
        }
    }

    /// Consumes every record available without waiting; returns how many.
    func consume() throws -> Int {
        let rc = ring_buffer__consume(ring)
        if rc < 0 { throw BenchError("ring_buffer__consume: \(String(cString: strerror(-rc)))") }
        return Int(rc)
    }

    fileprivate func deliver(_ data: UnsafeMutableRawPointer?, _ size: Int) {
        handler(UnsafeRawBufferPointer(start: data, count: size))
    }
}

private func readerSample(_ context: UnsafeMutableRawPointer?, _ data: UnsafeMutableRawPointer?, _ size: Int) -> Int32 {
    guard let context else { return 0 }
    // The reader outlives every poll that calls back: no retain and release per record.
    Unmanaged<Reader>.fromOpaque(context)._withUnsafeGuaranteedRef { $0.deliver(data, size) }
    return 0
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
