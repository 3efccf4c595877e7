import Glibc

/// Whether this process may load and attach BPF tracing programs.
public enum Privileges {
    static let capSysAdmin = 21
    static let capPerfmon = 38
    static let capBPF = 39

    /// Names of what is missing, empty when the process can load BPF. The kernel
    /// accepts CAP_SYS_ADMIN in place of CAP_BPF and CAP_PERFMON.
    public static func missing() -> [String] {
        guard let effective = effectiveCapabilities() else { return geteuid() == 0 ? [] : ["root"] }
        func has(_ bit: Int) -> Bool { effective & (1 << UInt64(bit)) != 0 }
        if has(capSysAdmin) { return [] }
        var missing: [String] = []
        if !has(capBPF) { missing.append("CAP_BPF") }
        if !has(capPerfmon) { missing.append("CAP_PERFMON") }
        return missing
    }

    /// CapEff from /proc/self/status.
    static func effectiveCapabilities() -> UInt64? {
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 8192)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return nil }
        let text = String(decoding: buf[0..<n], as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst("CapEff:".count).filter { !$0.isWhitespace }, radix: 16)
        }
        return nil
    }
}
