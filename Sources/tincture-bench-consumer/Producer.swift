import CLibbpf
import Glibc

/// Tests/bench/consumer/producer.bpf.o, loaded: its test-run program and ring.
final class ProducerObject {
    private let object: OpaquePointer
    let programFD: Int32
    let ringFD: Int32

    init(path: String) throws {
        guard let object = bpf_object__open_file(path, nil) else {
            throw BenchError("opening \(path): \(String(cString: strerror(errno)))")
        }
        self.object = object
        let rc = bpf_object__load(object)
        guard rc == 0 else {
            bpf_object__close(object)
            throw BenchError("loading \(path): \(String(cString: strerror(-rc)))")
        }
        guard let program = bpf_object__find_program_by_name(object, "tn_bench_produce") else {
            bpf_object__close(object)
            throw BenchError("\(path) has no program tn_bench_produce")
        }
        programFD = bpf_program__fd(program)
        ringFD = bpf_object__find_map_fd_by_name(object, "tn_bench_ring")
        guard ringFD >= 0 else {
            bpf_object__close(object)
            throw BenchError("\(path) has no map tn_bench_ring")
        }
    }

    deinit { bpf_object__close(object) }

    /// `tn_bench_lost`, the program's own count of reserve failures (its .bss map).
    func kernelLost() -> UInt64? {
        var map = bpf_object__next_map(object, nil)
        while let m = map {
            if String(cString: bpf_map__name(m)).hasSuffix(".bss") {
                var key: UInt32 = 0
                var value = [UInt64](repeating: 0, count: (Int(bpf_map__value_size(m)) + 7) / 8)
                guard bpf_map_lookup_elem(bpf_map__fd(m), &key, &value) == 0 else { return nil }
                return value[0]
            }
            map = bpf_object__next_map(object, m)
        }
        return nil
    }
}

/// Drives the producer with BPF_PROG_TEST_RUN on its own thread until `events`
/// records were written, as c_consumer.c's producer thread does.
final class ProducerThread {
    /// `struct tn_bench_ctx` (Tests/bench/consumer/producer.h): five __u64.
    struct Context {
        var seq: UInt64 = 0
        var count: UInt64 = 0
        var counted: UInt64 = 0
        var written: UInt64 = 0
        var lost: UInt64 = 0
    }

    static let batchMax: UInt64 = 256
    /// When the ring is nearly full, pause rather than spin on it (c_consumer.c's FULL_PAUSE_NS).
    static let fullPauseNs = 20_000

    let events: UInt64
    private let programFD: Int32
    private let counted: Bool
    private let cpu: Int32
    private var handle = pthread_t()
    private(set) var written: UInt64 = 0
    private(set) var lost: UInt64 = 0
    private(set) var runs: UInt64 = 0
    private(set) var shortRuns: UInt64 = 0
    private(set) var error: Int32 = 0

    init(programFD: Int32, events: UInt64, counted: Bool, cpu: Int32) {
        self.programFD = programFD
        self.events = events
        self.counted = counted
        self.cpu = cpu
    }

    func start() {
        let me = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&handle, nil, { arg in
            let producer = Unmanaged<ProducerThread>.fromOpaque(arg!).takeRetainedValue()
            producer.run()
            return nil
        }, me)
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    /// Waits for the thread; its counters are final afterwards.
    func join() { pthread_join(handle, nil) }

    private func run() {
        pinToCPU(cpu)
        while written < events && error == 0 {
            if !produceBatch() {
                var pause = timespec(tv_sec: 0, tv_nsec: Self.fullPauseNs)
                nanosleep(&pause, nil)
            }
        }
    }

    /// Without a thread: writes batches until the ring is nearly full or every record was written.
    func fill() {
        while written < events && produceBatch() {}
    }

    /// One test run of up to a batch; true when the ring had room for all of it.
    private func produceBatch() -> Bool {
        var ctx = Context()
        ctx.seq = written
        ctx.count = min(events - written, Self.batchMax)
        ctx.counted = counted ? 1 : 0
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        opts.ctx_size_in = UInt32(MemoryLayout<Context>.size)
        let rc = withUnsafeMutablePointer(to: &ctx) { p -> Int32 in
            opts.ctx_in = UnsafeRawPointer(p)
            return bpf_prog_test_run_opts(programFD, &opts)
        }
        if rc != 0 {
            error = -rc
            return false
        }
        runs += 1
        written += ctx.written
        lost += ctx.lost
        if ctx.written < ctx.count {
            shortRuns += 1
            return false
        }
        return true
    }
}

/// Pins the calling thread to one CPU when there are at least two.
func pinToCPU(_ cpu: Int32) {
    guard sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2 else { return }
    var set = cpu_set_t()
    withUnsafeMutableBytes(of: &set) { raw in
        raw[Int(cpu) / 8] |= UInt8(1) << UInt8(Int(cpu) % 8)
    }
    _ = setAffinity?(0, MemoryLayout<cpu_set_t>.size, &set)
}

/// glibc's sched_setaffinity, which the Glibc module leaves out (it is _GNU_SOURCE only).
private let setAffinity: (@convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32)? = {
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "sched_setaffinity") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32).self)
}()
