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
    private let possibleCPUs: Int

    /// Loads every program the plan chose and attaches them. Throws if that fails;
    /// callers check `plan.attachedHooks` is not empty first.
    public init(plan: AttachPlan) throws {
        self.plan = plan
        Libbpf.captureLogs(verbose: false)
        object = try BPFObject()
        let programs = plan.attachedHooks.flatMap { $0.hook.programs(for: $0.mode!) }
        try object.autoloadOnly(Set(programs))
        try object.load(what: "BPF object tincture")
        for program in programs { try object.attach(program: program) }
        countersFD = try object.mapFD("tn_counters")
        possibleCPUs = max(1, Int(libbpf_num_possible_cpus()))
    }

    public func detach() { object.close() }

    /// A reader on the shared ring buffer; `handler` runs on the thread that calls `run()`.
    public func makeReader(handler: @escaping (UnsafeRawBufferPointer) -> Void) throws -> RingBufferReader {
        try RingBufferReader(mapFD: object.mapFD("tn_events"), handler: handler)
    }

    /// The kernel's per-CPU counters, summed: ring-buffer losses by kind and untracked state.
    public func kernelCounters() -> (lost: [EventKind: UInt64], untracked: [String: UInt64]) {
        var lost: [EventKind: UInt64] = [:]
        for kind in EventKind.allCases { lost[kind] = readCounter(kind.rawValue) }
        let untracked = [
            "pending_connect_map_full": readCounter(UInt32(TN_CTR_PENDING_CONNECT_FULL.rawValue)),
            "connect_start_unseen": readCounter(UInt32(TN_CTR_CONNECT_END_UNSEEN_START.rawValue)),
        ]
        return (lost, untracked)
    }

    private func readCounter(_ slot: UInt32) -> UInt64 {
        var key = slot
        var values = [UInt64](repeating: 0, count: possibleCPUs)
        guard bpf_map_lookup_elem(countersFD, &key, &values) == 0 else { return 0 }
        return values.reduce(0, &+)
    }
}
