internal import CLibbpf
import Glibc
import TinctureCore

/// What the running kernel offers that decides how the hooks can attach.
public struct KernelFacts: Sendable {
    public var release: String
    public var btf: Bool
    public var ringBuffer: Bool
    /// The kprobe perf PMU is registered (CONFIG_KPROBES).
    public var kprobes: Bool
    /// tracefs mounted at /sys/kernel/tracing (or under debugfs).
    public var tracefs: Bool
    /// Kernel lockdown mode ("none", "integrity", "confidentiality"), nil when unreadable.
    public var lockdown: String?

    public static func probe() -> KernelFacts {
        var uts = utsname()
        uname(&uts)
        let release = withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return KernelFacts(
            release: release,
            btf: access("/sys/kernel/btf/vmlinux", R_OK) == 0,
            ringBuffer: libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nil) == 1,
            kprobes: access("/sys/bus/event_source/devices/kprobe/type", R_OK) == 0,
            tracefs: Tracefs.isMounted,
            lockdown: readLockdown())
    }

    /// "[none] integrity confidentiality" → "none".
    static func readLockdown() -> String? {
        guard let text = readSmallFile("/sys/kernel/security/lockdown"),
              let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]"), open < close
        else { return nil }
        return String(text[text.index(after: open)..<close])
    }
}

/// tracefs: classic tracepoints and legacy kprobes need it; minimal hosts boot without it.
public enum Tracefs {
    public static let path = "/sys/kernel/tracing"

    public static var isMounted: Bool {
        access("\(path)/events", F_OK) == 0 || access("/sys/kernel/debug/tracing/events", F_OK) == 0
    }

    /// Mount tracefs at /sys/kernel/tracing unless it is already there.
    public static func ensureMounted() throws {
        if isMounted { return }
        if mount("nodev", path, "tracefs", 0, nil) != 0 {
            throw BPFError(code: BPFError.Code(raw: "mounting"), subject: "tracefs at \(path)", errno: errno, log: "")
        }
    }
}

func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 4096)
    let n = read(fd, &buf, buf.count)
    guard n >= 0 else { return nil }
    return String(decoding: buf[0..<n], as: UTF8.self)
}
