/// Which events `tincture tail` shows. Every set filter must match.
public struct TailFilter: Equatable, Sendable {
    public var pid: UInt32?
    public var comm: String?
    /// Matches either the local or the remote port.
    public var port: UInt16?
    public var minDurationNs: UInt64?

    public init(pid: UInt32? = nil, comm: String? = nil, port: UInt16? = nil, minDurationNs: UInt64? = nil) {
        self.pid = pid
        self.comm = comm
        self.port = port
        self.minDurationNs = minDurationNs
    }

    public func matches(_ r: ConnectRecord) -> Bool {
        if let pid, r.pid != pid { return false }
        if let comm, r.comm != comm { return false }
        if let port, r.sport != port && r.dport != port { return false }
        if let minDurationNs, r.durationNs < minDurationNs { return false }
        return true
    }
}

/// Human-readable tail lines: aligned columns, colour only when asked (a TTY).
public struct TailFormatter: Sendable {
    public var colour: Bool

    public init(colour: Bool) { self.colour = colour }

    /// `timeOfDay` is the caller's rendering of the event time (local clock).
    public func line(_ r: ConnectRecord, timeOfDay: String) -> String {
        let who = "\(r.comm)[\(r.pid)]"
        let remote = r.daddr.contains(":") ? "[\(r.daddr)]:\(r.dport)" : "\(r.daddr):\(r.dport)"
        var detail = ""
        if r.synRetransmits > 0 {
            detail = "(\(r.synRetransmits) SYN retransmit\(r.synRetransmits == 1 ? "" : "s"))"
        }
        let result = paint(pad(r.result, 8), r.result == "ok" ? (r.synRetransmits > 0 ? .yellow : .green) : .red)
        return [timeOfDay, pad(who, 24), pad(r.kind, 8), pad(remote, 28),
                padLeft(Self.duration(r.durationNs), 10), result, detail]
            .joined(separator: " ").trimmingTrailingSpaces()
    }

    /// "412 µs", "3.5 ms", "1002 ms", "12.3 s".
    public static func duration(_ ns: UInt64) -> String {
        switch ns {
        case ..<1_000_000: return "\(ns / 1000) µs"
        case ..<10_000_000:
            let tenths = (ns + 50_000) / 100_000
            return "\(tenths / 10).\(tenths % 10) ms"
        case ..<10_000_000_000: return "\((ns + 500_000) / 1_000_000) ms"
        default:
            let tenths = (ns + 50_000_000) / 100_000_000
            return "\(tenths / 10).\(tenths % 10) s"
        }
    }

    enum Colour: String { case red = "31", green = "32", yellow = "33" }

    private func paint(_ s: String, _ c: Colour) -> String {
        colour ? "\u{1b}[\(c.rawValue)m\(s)\u{1b}[0m" : s
    }

    private func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }

    private func padLeft(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}
