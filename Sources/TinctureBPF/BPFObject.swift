internal import CLibbpf
internal import CTinctureBPF
import Glibc
import TinctureCore

/// The embedded BPF object, opened from memory. Owns the libbpf object and the
/// links attached from it; closing detaches everything.
final class BPFObject {
    private let object: OpaquePointer
    private(set) var links: [(program: String, link: OpaquePointer)] = []

    init() throws {
        var size = 0
        let bytes = tn_bpf_object_bytes(&size)
        var opts = bpf_object_open_opts()
        opts.sz = MemoryLayout<bpf_object_open_opts>.size
        object = try Libbpf.check(bpf_object__open_mem(bytes, size, &opts), .open, "embedded BPF object tincture")
    }

    deinit { close() }

    private var closed = false

    /// Detach every link and free the object. Idempotent.
    func close() {
        guard !closed else { return }
        closed = true
        for (_, link) in links.reversed() { bpf_link__destroy(link) }
        links = []
        bpf_object__close(object)
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
