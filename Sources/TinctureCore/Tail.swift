/// Which events `tincture tail` shows. Every set filter must match.
///
/// `--port` and `--min-duration` match only events that carry ports or a duration:
/// with `--port` set, poll waits (no ports) are left out; with `--min-duration` set,
/// retransmits (no duration) are.
public struct TailFilter: Equatable, Sendable {
    public var kinds: Set<String>?
    public var pid: UInt32?
    public var comm: String?
    /// Matches either the local or the remote port.
    public var port: UInt16?
    public var minDurationNs: UInt64?

    public init(kinds: Set<String>? = nil, pid: UInt32? = nil, comm: String? = nil, port: UInt16? = nil,
                minDurationNs: UInt64? = nil) {
        self.kinds = kinds
        self.pid = pid
        self.comm = comm
        self.port = port
        self.minDurationNs = minDurationNs
    }

    public func matches(_ r: EventRecord) -> Bool {
        if let kinds, !kinds.contains(r.kind) { return false }
        if let pid, r.pid != pid { return false }
        if let comm, r.comm != comm { return false }
        if let port, r.sport != port && r.dport != port { return false }
        if let minDurationNs, (r.durationNs ?? 0) < minDurationNs || r.durationNs == nil { return false }
        return true
    }
}

/// Human-readable tail lines: aligned columns, colour only when asked (a TTY).
public struct TailFormatter: Sendable {
    public var colour: Bool

    public init(colour: Bool) { self.colour = colour }

    /// `timeOfDay` is the caller's rendering of the event time (local clock).
    public func line(_ r: EventRecord, timeOfDay: String) -> String {
        let who = "\(r.comm.isEmpty ? "?" : r.comm)[\(r.pid)]"
        var endpoint = "", duration = "", outcome = "", detail = ""
        var colourOf: Colour? = nil
        switch r.kind {
        case "connect":
            endpoint = Self.address(r.daddr, r.dport)
            duration = r.durationNs.map(Self.duration) ?? ""
            outcome = r.result ?? ""
            let syn = r.synRetransmits ?? 0
            if syn > 0 { detail = "(\(syn) SYN retransmit\(syn == 1 ? "" : "s"))" }
            colourOf = outcome == "ok" ? (syn > 0 ? .yellow : .green) : .red
        case "retransmit":
            // The service end: remote for a client's socket, local for a server's.
            endpoint = r.side == "server" ? Self.address(r.saddr, r.sport) : Self.address(r.daddr, r.dport)
            outcome = r.state ?? ""
            let segs = r.segs ?? 0
            detail = "\(segs) seg\(segs == 1 ? "" : "s")"
            if r.synack == true { detail += " SYN-ACK" }
            if let srtt = r.srttUs, srtt > 0 { detail += ", srtt \(Self.duration(UInt64(srtt) * 1000))" }
            colourOf = .yellow
        case "request":
            endpoint = r.side == "server" ? Self.address(r.saddr, r.sport) : Self.address(r.daddr, r.dport)
            duration = r.ttfbNs.map(Self.duration) ?? ""
            outcome = (r.status ?? 0) > 0 ? "\(r.status!)" : (r.end ?? "")
            var parts = ["\(r.side ?? "?") \(r.method ?? "") \(r.target ?? "") id=\(r.requestID ?? "")"]
            if let c = r.connectNs, c > 0 { parts.append("connect \(Self.duration(c))") }
            if let s = r.synRetransmits, s > 0 { parts.append("\(s) SYN rtx") }
            if let x = r.retransmits, x > 0 { parts.append("\(x) rtx") }
            if let p = r.pollWaitNs, p > 0 { parts.append("poll \(Self.duration(p))") }
            detail = parts.joined(separator: ", ")
            colourOf = (r.status ?? 0) >= 500 || r.end != "responded" ? .red : .green
        case "poll":
            endpoint = r.syscall ?? ""
            duration = r.durationNs.map(Self.duration) ?? ""
            let ready = r.ready ?? 0
            outcome = ready > 0 ? "ready=\(ready)" : ready == 0 ? "timeout" : "err=\(-ready)"
            let timeout = r.timeoutMs.map { $0 < 0 ? "none" : Self.duration(UInt64($0) * 1_000_000) } ?? "?"
            detail = "(timeout \(timeout)\((r.fd ?? -1) >= 0 ? ", fd \(r.fd!)" : ""))"
        default:
            break
        }
        let shownOutcome = colourOf.map { paint(pad(outcome, 11), $0) } ?? pad(outcome, 11)
        return [timeOfDay, pad(who, 24), pad(r.kind, 10), pad(endpoint, 28), padLeft(duration, 10), shownOutcome, detail]
            .joined(separator: " ").trimmingTrailingSpaces()
    }

    /// "1.2.3.4:80" or "[::1]:80".
    public static func address(_ host: String?, _ port: UInt16?) -> String {
        guard let host, let port else { return "" }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
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

/// Which raw events belong to a request record, for `tail --request-id`.
public enum RequestJoin {
    public static func joins(_ e: EventRecord, _ request: EventRecord) -> Bool {
        guard let start = request.startNs, let cookie = request.cookie else { return false }
        let end = request.tsNs
        let connectStart = start &- (request.connectNs ?? 0)
        switch e.kind {
        case "connect":
            return (request.connectNs ?? 0) > 0 && e.cookie == cookie
        case "retransmit":
            return e.cookie == cookie && e.tsNs >= connectStart && e.tsNs <= end
        case "poll":
            // As the correlator joins them: a wait on the request's socket, or (client side)
            // any wait of the thread that sent it.
            let sameSocket = e.cookie == cookie
            let sameThread = request.side == "client" && e.tid == request.tid
            return (sameSocket || sameThread) && e.tsNs > start && (e.startNs ?? e.tsNs) <= end
        default:
            return false
        }
    }
}
