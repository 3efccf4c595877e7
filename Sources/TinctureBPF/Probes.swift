internal import CLibbpf
internal import CTinctureBPF
import Glibc
import TinctureCore

/// The BPF programs of an attach plan, loaded and attached together so they share
/// the ring buffer and counters. `detach()` (or deinit) removes them all.
public final class LoadedProbes {
    public let plan: AttachPlan
    private let object: BPFObject
    private let countersFD: Int32
    private let pollHistFD: Int32
    private let connectHistFD: Int32
    private let controlFD: Int32
    private let possibleCPUs: Int

    /// Loads every program the plan chose and attaches them. Throws if that fails;
    /// callers check `plan.attachedHooks` is not empty first.
    public init(plan: AttachPlan, config: ProbeConfig = ProbeConfig()) throws {
        self.plan = plan
        var config = config
        config.retransmitHook = plan.mode(for: Hooks.tcpRetransmit) != nil
        config.roles = plan.roles
        Libbpf.captureLogs(verbose: false)
        object = try BPFObject(config: config)
        let programs = plan.programs
        try object.autoloadOnly(Set(programs))
        try object.load(what: "BPF object tincture")
        for program in programs { try object.attach(program: program) }
        countersFD = try object.mapFD("tn_counters")
        pollHistFD = try object.mapFD("tn_poll_hists")
        connectHistFD = try object.mapFD("tn_connect_hists")
        controlFD = try object.mapFD("tn_control")
        possibleCPUs = max(1, Int(libbpf_num_possible_cpus()))
    }

    public func detach() { object.close() }

    /// A reader on the shared ring buffer; `handler` (each record) and `idle` (an interval
    /// without records) run on the thread that calls `run()`.
    public func makeReader(handler: @escaping (UnsafeRawBufferPointer) -> Void,
                           idle: @escaping () -> Void = {}) throws -> RingBufferReader {
        try RingBufferReader(mapFD: object.mapFD("tn_events"), handler: handler, idle: idle)
    }

    /// The kernel's per-CPU counters, summed: ring-buffer losses by kind and untracked state.
    public func kernelCounters() -> (lost: [EventKind: UInt64], untracked: [String: UInt64]) {
        var lost: [EventKind: UInt64] = [:]
        for kind in EventKind.allCases { lost[kind] = readCounter(kind.rawValue) }
        var untracked: [String: UInt64] = [:]
        for (reason, slot) in Self.untrackedCounters { untracked[reason] = readCounter(slot) }
        return (lost, untracked)
    }

    /// Every `enum tn_counter` slot past the ring-loss ones, by its `reason` label
    /// (a test checks none is left out).
    static let untrackedCounters: [(reason: String, slot: UInt32)] = [
        ("owner_map_full", TN_CTR_OWNER_MAP_FULL.rawValue),
        ("connect_start_unseen", TN_CTR_CONNECT_END_UNSEEN_START.rawValue),
        ("wait_map_full", TN_CTR_WAIT_MAP_FULL.rawValue),
        ("poll_histogram_map_full", TN_CTR_POLL_HIST_MAP_FULL.rawValue),
        ("retransmit_owner_unknown", TN_CTR_RETRANSMIT_OWNER_UNKNOWN.rawValue),
        ("recv_map_full", TN_CTR_RECV_MAP_FULL.rawValue),
        ("connect_histogram_map_full", TN_CTR_CONNECT_HIST_MAP_FULL.rawValue),
    ].map { ($0.0, UInt32($0.1)) }

    /// Every row of the kernel's per-CPU poll-wait histogram, summed over CPUs.
    public func pollHistogram() -> [PollHistogramRow] {
        histogramRows(pollHistFD, emptyKey: tn_poll_hist_key(), empty: tn_poll_hist(), buckets: Int(TN_POLL_BUCKETS) + 1,
                      counts: \.counts, sum: \.sum_ns) { (key: tn_poll_hist_key, counts, sum) in
            let syscall = WaitSyscall(rawValue: key.syscall)?.name ?? "syscall_\(key.syscall)"
            return PollHistogramRow(comm: Self.comm(key.comm), syscall: syscall, counts: counts, sumNs: sum)
        }
    }

    /// Every row of the kernel's per-CPU connect histogram, summed over CPUs.
    public func connectHistogram() -> [ConnectHistogramRow] {
        histogramRows(connectHistFD, emptyKey: tn_connect_hist_key(), empty: tn_connect_hist(), buckets: Int(TN_CONNECT_BUCKETS) + 1,
                      counts: \.counts, sum: \.sum_ns) { (key: tn_connect_hist_key, counts, sum) in
            guard let family = SocketAddress.Family(rawValue: key.family) else { return nil }
            let address = withUnsafeBytes(of: key.daddr) { Array($0.prefix(family == .inet ? 4 : 16)) }
            return ConnectHistogramRow(
                comm: Self.comm(key.comm), destination: SocketAddress(family: family, bytes: address, port: key.dport),
                result: ConnectResult(established: key.established != 0, error: Int32(key.error)),
                counts: counts, sumNs: sum)
        }
    }

    /// Walks a per-CPU histogram map: per key, the bucket counts and sums of every
    /// CPU added up, handed to `row` (nil skips the key). Reads the map in batches
    /// (a few syscalls for thousands of keys); one key at a time where the kernel
    /// has no batch operations.
    private func histogramRows<Key, Value, Counts, Row>(
        _ fd: Int32, emptyKey: Key, empty: Value, buckets: Int, counts: KeyPath<Value, Counts>, sum: KeyPath<Value, UInt64>,
        row: (Key, [UInt64], UInt64) -> Row?
    ) -> [Row] {
        precondition(MemoryLayout<Counts>.size == buckets * 8, "bucket count does not match the map's value")
        // The kernel lays per-CPU values out at 8-byte strides, as Swift does for these structs.
        precondition(MemoryLayout<Value>.stride % 8 == 0 && MemoryLayout<Value>.stride == MemoryLayout<Value>.size)
        var rows: [Row] = []
        let cpus = possibleCPUs
        func add(_ key: Key, _ values: UnsafeBufferPointer<Value>) {
            var total = [UInt64](repeating: 0, count: buckets)
            var totalSum: UInt64 = 0
            for v in values {
                withUnsafeBytes(of: v[keyPath: counts]) { raw in
                    for i in 0..<buckets { total[i] &+= raw.load(fromByteOffset: i * 8, as: UInt64.self) }
                }
                totalSum &+= v[keyPath: sum]
            }
            if let r = row(key, total, totalSum) { rows.append(r) }
        }

        var capacity = 512
        var keys = [Key](repeating: emptyKey, count: capacity)
        var values = [Value](repeating: empty, count: capacity * cpus)
        var inBatch: UInt64 = 0, outBatch: UInt64 = 0  // hash maps: a bucket index
        var first = true
        while true {
            var count = UInt32(capacity)
            let rc = keys.withUnsafeMutableBytes { k in
                values.withUnsafeMutableBytes { v in
                    first ? bpf_map_lookup_batch(fd, nil, &outBatch, k.baseAddress, v.baseAddress, &count, nil)
                          : bpf_map_lookup_batch(fd, &inBatch, &outBatch, k.baseAddress, v.baseAddress, &count, nil)
                }
            }
            let err = errno
            if rc != 0 && err == ENOSPC && capacity < 65536 {
                // one hash bucket holds more keys than the batch: retry it larger
                capacity *= 2
                keys = [Key](repeating: emptyKey, count: capacity)
                values = [Value](repeating: empty, count: capacity * cpus)
                continue
            }
            if rc != 0 && first && err != ENOENT {
                rowsByKey(fd, emptyKey: emptyKey, empty: empty, add: add)
                return rows
            }
            values.withUnsafeBufferPointer { all in
                for i in 0..<Int(count) {
                    add(keys[i], UnsafeBufferPointer(rebasing: all[(i * cpus)..<((i + 1) * cpus)]))
                }
            }
            if rc != 0 { break }  // ENOENT: that was the last batch
            inBatch = outBatch
            first = false
        }
        return rows
    }

    /// The one-key-at-a-time walk, for kernels without batch map operations.
    private func rowsByKey<Key, Value>(_ fd: Int32, emptyKey: Key, empty: Value,
                                       add: (Key, UnsafeBufferPointer<Value>) -> Void) {
        var key = emptyKey
        var next = emptyKey
        var hasKey = false
        var values = [Value](repeating: empty, count: possibleCPUs)
        // Bounded: the map holds at most its max_entries keys.
        for _ in 0..<65536 {
            let rc = withUnsafeBytes(of: key) { k in
                withUnsafeMutableBytes(of: &next) { n in
                    bpf_map_get_next_key(fd, hasKey ? k.baseAddress : nil, n.baseAddress)
                }
            }
            if rc != 0 { break }
            hasKey = true
            key = next
            let found = withUnsafeBytes(of: key) { k in
                values.withUnsafeMutableBytes { v in bpf_map_lookup_elem(fd, k.baseAddress, v.baseAddress) }
            }
            guard found == 0 else { continue }
            values.withUnsafeBufferPointer { add(key, $0) }
        }
    }

    private static func comm<T>(_ bytes: T) -> String {
        withUnsafeBytes(of: bytes) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Whether every connect travels as an event (a live subscriber is attached)
    /// or only the slow, retried and failed ones. Returns false if the map refused.
    @discardableResult
    public func setStreamAll(_ on: Bool) -> Bool {
        var key: UInt32 = 0
        var value = tn_control(stream_all: on ? 1 : 0, reserved: 0)
        return bpf_map_update_elem(controlFD, &key, &value, UInt64(BPF_ANY)) == 0
    }

    private func readCounter(_ slot: UInt32) -> UInt64 {
        var key = slot
        var values = [UInt64](repeating: 0, count: possibleCPUs)
        guard bpf_map_lookup_elem(countersFD, &key, &values) == 0 else { return 0 }
        return values.reduce(0, &+)
    }
}
