internal import CLibbpf
internal import CTinctureBPF
import Glibc
import TinctureCore

/// The embedded BPF object, opened from memory. Owns the libbpf object and the
/// links attached from it; closing detaches everything.
final class BPFObject {
    private let skeleton: OpaquePointer
    private let object: OpaquePointer
    private(set) var links: [(program: String, link: OpaquePointer)] = []

    init(config: ProbeConfig) throws {
        var c = tn_config()
        c.poll_min_ns = config.pollMinNs
        c.connect_min_ns = config.connectMinNs
        c.self_tgid = config.selfTgid
        c.retransmit_hook = config.retransmitHook ? 1 : 0
        c.payload_max = config.payloadMax
        c.roles = config.roles
        c.wakeup_check = config.wakeupCheckBytes
        c.wakeup_check_live = config.wakeupCheckBytesLive
        c.id_secret = config.idSecret
        skeleton = try Libbpf.check(tn_skel_open(&c), .open, "embedded BPF object tincture")
        object = tn_skel_object(skeleton)
    }

    deinit { close() }

    private var closed = false

    /// Detach every link and free the object. Idempotent.
    func close() {
        guard !closed else { return }
        closed = true
        Self.destroyConcurrently(links.map(\.link))
        links = []
        tn_skel_destroy(skeleton)
    }

    /// Each tracepoint link waits out RCU grace periods as it goes (tens of ms).
    /// BTF tracepoint, fentry and kprobe links released together share them;
    /// classic (perf-event) tracepoints still serialise on the kernel's event
    /// mutex: the 14 syscall tracepoints of poll_wait take ~0.6 s here.
    private static func destroyConcurrently(_ links: [OpaquePointer]) {
        var threads: [pthread_t] = []
        for link in links {
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { arg in
                bpf_link__destroy(OpaquePointer(arg))
                return nil
            }, UnsafeMutableRawPointer(link))
            if rc == 0 { threads.append(thread) } else { bpf_link__destroy(link) }
        }
        for thread in threads { pthread_join(thread, nil) }
    }

    var programNames: [String] {
        var names: [String] = []
        var prog = bpf_object__next_program(object, nil)
        while let p = prog {
            names.append(String(cString: bpf_program__name(p)))
            prog = bpf_object__next_program(object, p)
        }
        return names
    }

    /// Load only these programs; the other variants are never shown to the verifier.
    func autoloadOnly(_ wanted: Set<String>) throws {
        let known = Set(programNames)
        for name in wanted where !known.contains(name) {
            throw BPFError(code: .lookup, subject: "program \(name) in the embedded object", errno: ENOENT, log: "")
        }
        var prog = bpf_object__next_program(object, nil)
        while let p = prog {
            let name = String(cString: bpf_program__name(p))
            try Libbpf.check(bpf_program__set_autoload(p, wanted.contains(name)), .load, "program \(name)")
            prog = bpf_object__next_program(object, p)
        }
    }

    func load(what: String) throws {
        try Libbpf.check(bpf_object__load(object), .load, what)
    }

    func attach(program name: String) throws {
        let prog = try Libbpf.check(bpf_object__find_program_by_name(object, name), .lookup, "program \(name)")
        let link = try Libbpf.check(bpf_program__attach(prog), .attach, "program \(name)")
        links.append((name, link))
    }

    func mapFD(_ name: String) throws -> Int32 {
        let map = try Libbpf.check(bpf_object__find_map_by_name(object, name), .lookup, "map \(name)")
        let fd = bpf_map__fd(map)
        try Libbpf.check(fd, .map, "map \(name)")
        return fd
    }
}
