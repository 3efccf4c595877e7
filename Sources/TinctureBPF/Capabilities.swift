internal import CTinctureBPF

/// The process's Linux capabilities.
public enum Capabilities {
    /// Drops every capability for good. Call once the probes are attached and the
    /// sockets bound: reading the maps and the ring buffer needs only the file
    /// descriptors already held, and detaching needs nothing more.
    public static func dropAll() throws {
        let rc = tn_drop_all_capabilities()
        if rc < 0 {
            throw BPFError(code: BPFError.Code(raw: "dropping"), subject: "capabilities", errno: -rc, log: "")
        }
    }
}
