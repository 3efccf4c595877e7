/// The live stream's wire format: one JSON object per line. The field names are a
/// stable interface (README "Event JSON"); the encoder writes them by hand, in a
/// fixed order, without Foundation.
public enum EventJSON {
    /// `realtimeOffsetNs` turns the kernel's CLOCK_MONOTONIC stamps into Unix time.
    public static func encode(_ event: Event, realtimeOffsetNs: Int64) -> String {
        switch event {
        case .connect(let c):
            var o = JSONObjectWriter()
            o.field("kind", "connect")
            o.field("ts_ns", wall(c.endNs, realtimeOffsetNs))
            o.field("start_ns", wall(c.startNs, realtimeOffsetNs))
            o.field("pid", UInt64(c.pid))
            o.field("tid", UInt64(c.tid))
            o.field("comm", c.comm)
            o.field("cookie", c.cookie)
            o.field("family", c.source.family == .inet6 ? "ipv6" : "ipv4")
            o.field("saddr", c.source.host)
            o.field("sport", UInt64(c.source.port))
            o.field("daddr", c.destination.host)
            o.field("dport", UInt64(c.destination.port))
            o.field("duration_ns", c.durationNs)
            o.field("result", c.result.name)
            o.field("errno", Int64(c.error))
            o.field("syn_retransmits", UInt64(c.synRetransmits))
            o.field("mode", c.mode?.rawValue ?? "unknown")
            return o.finish()
        }
    }

    static func wall(_ monotonic: UInt64, _ offset: Int64) -> UInt64 {
        let v = Int64(bitPattern: monotonic) &+ offset
        return v < 0 ? 0 : UInt64(v)
    }

    /// A JSON string literal, quotes included. Control characters use \u escapes.
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7f {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

struct JSONObjectWriter {
    private var text = "{"

    mutating func field(_ key: String, _ value: String) { sep(key); text += EventJSON.quote(value) }
    mutating func field(_ key: String, _ value: UInt64) { sep(key); text += String(value) }
    mutating func field(_ key: String, _ value: Int64) { sep(key); text += String(value) }

    private mutating func sep(_ key: String) {
        if text.count > 1 { text += "," }
        text += "\"\(key)\":"
    }

    mutating func finish() -> String { text + "}" }
}

/// A connect event as `tincture tail` reads it back from the stream.
public struct ConnectRecord: Codable, Equatable, Sendable {
    public var kind: String
    public var tsNs: UInt64
    public var startNs: UInt64?
    public var pid: UInt32
    public var tid: UInt32
    public var comm: String
    public var cookie: UInt64
    public var family: String?
    public var saddr: String
    public var sport: UInt16
    public var daddr: String
    public var dport: UInt16
    public var durationNs: UInt64
    public var result: String
    public var errno: Int32?
    public var synRetransmits: UInt32
    public var mode: String?

    enum CodingKeys: String, CodingKey {
        case kind, pid, tid, comm, cookie, family, saddr, sport, daddr, dport, result, errno, mode
        case tsNs = "ts_ns"
        case startNs = "start_ns"
        case durationNs = "duration_ns"
        case synRetransmits = "syn_retransmits"
    }
}
