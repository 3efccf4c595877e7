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
            o.endpoints(c.source, c.destination)
            o.field("duration_ns", c.durationNs)
            o.field("result", c.result.name)
            o.field("errno", Int64(c.error))
            o.field("syn_retransmits", UInt64(c.synRetransmits))
            o.field("mode", c.mode?.rawValue ?? "unknown")
            return o.finish()
        case .retransmit(let r):
            var o = JSONObjectWriter()
            o.field("kind", "retransmit")
            o.field("ts_ns", wall(r.timestampNs, realtimeOffsetNs))
            o.field("pid", UInt64(r.pid))
            o.field("tid", UInt64(r.tid))
            o.field("comm", r.comm)
            o.field("cookie", r.cookie)
            o.endpoints(r.source, r.destination)
            o.field("state", r.stateName)
            o.field("segs", UInt64(r.segs))
            o.field("srtt_us", UInt64(r.srttUs))
            o.field("synack", r.synack)
            o.field("owner_known", r.ownerKnown)
            o.field("side", r.client ? "client" : "server")
            o.field("mode", r.mode?.rawValue ?? "unknown")
            return o.finish()
        case .poll(let p):
            var o = JSONObjectWriter()
            o.field("kind", "poll")
            o.field("ts_ns", wall(p.endNs, realtimeOffsetNs))
            o.field("start_ns", wall(p.startNs, realtimeOffsetNs))
            o.field("pid", UInt64(p.pid))
            o.field("tid", UInt64(p.tid))
            o.field("comm", p.comm)
            o.field("syscall", p.syscall.name)
            o.field("duration_ns", p.durationNs)
            o.field("timeout_ms", p.timeoutMs)
            o.field("ready", Int64(p.ready))
            o.field("fd", Int64(p.fd))
            o.field("cookie", p.cookie)
            o.field("mode", p.mode?.rawValue ?? "unknown")
            return o.finish()
        case .payload(let p):
            // Never the bytes themselves: they may hold credentials.
            var o = JSONObjectWriter()
            o.field("kind", "payload")
            o.field("ts_ns", wall(p.timestampNs, realtimeOffsetNs))
            o.field("pid", UInt64(p.pid))
            o.field("tid", UInt64(p.tid))
            o.field("comm", p.comm)
            o.field("cookie", p.cookie)
            o.field("direction", p.direction.rawValue)
            o.field("bytes", UInt64(p.bytes.count))
            return o.finish()
        }
    }

    /// A finished request record (kind "request").
    public static func encode(_ r: RequestRecord, realtimeOffsetNs: Int64) -> String {
        var o = JSONObjectWriter()
        o.field("kind", "request")
        o.field("ts_ns", wall(r.startNs &+ r.durationNs, realtimeOffsetNs))
        o.field("start_ns", wall(r.startNs, realtimeOffsetNs))
        o.field("request_id", r.requestID)
        o.field("side", r.side.rawValue)
        o.field("pid", UInt64(r.pid))
        o.field("tid", UInt64(r.tid))
        o.field("comm", r.comm)
        o.field("cookie", r.cookie)
        o.field("method", r.method)
        o.field("target", r.target)
        o.field("status", UInt64(r.status))
        o.endpoints(r.local, r.remote)
        o.field("connect_ns", r.connectNs)
        o.field("syn_retransmits", UInt64(r.synRetransmits))
        o.field("retransmits", UInt64(r.retransmits))
        o.field("poll_wait_ns", r.pollWaitNs)
        o.field("ttfb_ns", r.ttfbNs)
        o.field("duration_ns", r.durationNs)
        o.field("end", r.end.rawValue)
        return o.finish()
    }

    static func wall(_ monotonic: UInt64, _ offset: Int64) -> UInt64 {
        let v = Int64(bitPattern: monotonic) &+ offset
        return v < 0 ? 0 : UInt64(v)
    }

    /// A JSON string literal, quotes included. Control characters use \u escapes.
    public static func quote(_ s: String) -> String {
        var out: [UInt8] = []
        appendQuoted(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends `s` as a JSON string literal. Works on UTF-8 bytes: only ASCII needs
    /// escaping, and every other byte of valid UTF-8 is copied as is.
    static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.append(0x22)
        var s = s
        s.withUTF8 { bytes in
            for c in bytes {
                switch c {
                case 0x22: out.append(0x5c); out.append(0x22)
                case 0x5c: out.append(0x5c); out.append(0x5c)
                case 0x0a: out.append(0x5c); out.append(0x6e)
                case 0x0d: out.append(0x5c); out.append(0x72)
                case 0x09: out.append(0x5c); out.append(0x74)
                case 0..<0x20, 0x7f:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: [0x5c, 0x75, 0x30, 0x30, hex[Int(c >> 4)], hex[Int(c & 15)]])
                default:
                    out.append(c)
                }
            }
        }
        out.append(0x22)
    }
}

/// Builds one JSON object into a byte buffer: keys and values appended in place,
/// integers digit by digit, no intermediate strings.
struct JSONObjectWriter {
    private var bytes: [UInt8]

    init() {
        bytes = []
        bytes.reserveCapacity(512)
        bytes.append(0x7b)
    }

    mutating func field(_ key: StaticString, _ value: String) { sep(key); EventJSON.appendQuoted(value, to: &bytes) }
    mutating func field(_ key: StaticString, _ value: UInt64) { sep(key); appendDigits(value) }
    mutating func field(_ key: StaticString, _ value: Int64) {
        sep(key)
        if value < 0 { bytes.append(0x2d) }
        appendDigits(value.magnitude)
    }
    mutating func field(_ key: StaticString, _ value: Bool) {
        sep(key)
        value ? append("true") : append("false")
    }

    /// family, saddr, sport, daddr, dport: the same five fields in every socket event.
    mutating func endpoints(_ local: SocketAddress, _ remote: SocketAddress) {
        field("family", local.family == .inet6 ? "ipv6" : "ipv4")
        field("saddr", local.host)
        field("sport", UInt64(local.port))
        field("daddr", remote.host)
        field("dport", UInt64(remote.port))
    }

    private mutating func append(_ s: StaticString) {
        s.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    private mutating func appendDigits(_ value: UInt64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: UInt64.max has 20 digits
        withUnsafeMutableBytes(of: &digits) { d in
            var v = value
            var n = 0
            repeat {
                d[n] = UInt8(truncatingIfNeeded: 48 + v % 10)
                v /= 10
                n += 1
            } while v > 0
            while n > 0 {
                n -= 1
                bytes.append(d[n])
            }
        }
    }

    private mutating func sep(_ key: StaticString) {
        if bytes.count > 1 { bytes.append(0x2c) }
        bytes.append(0x22)
        append(key)
        bytes.append(0x22)
        bytes.append(0x3a)
    }

    mutating func finish() -> String {
        bytes.append(0x7d)
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Any event as `tincture tail` reads it back from the stream: the fields every kind
/// has, and optionals for the rest (nil when the kind does not carry them).
public struct EventRecord: Codable, Equatable, Sendable {
    public var kind: String
    public var tsNs: UInt64
    public var pid: UInt32
    public var tid: UInt32?
    public var comm: String
    public var cookie: UInt64?
    public var family: String?
    public var saddr: String?
    public var sport: UInt16?
    public var daddr: String?
    public var dport: UInt16?
    public var durationNs: UInt64?
    public var startNs: UInt64?
    public var mode: String?
    // connect
    public var result: String?
    public var errno: Int32?
    public var synRetransmits: UInt32?
    // retransmit
    public var state: String?
    public var segs: UInt32?
    public var srttUs: UInt32?
    public var synack: Bool?
    public var side: String?
    // request
    public var requestID: String?
    public var method: String?
    public var target: String?
    public var status: Int?
    public var connectNs: UInt64?
    public var retransmits: UInt32?
    public var pollWaitNs: UInt64?
    public var ttfbNs: UInt64?
    public var end: String?
    // poll
    public var syscall: String?
    public var timeoutMs: Int64?
    public var ready: Int32?
    public var fd: Int32?

    public init(kind: String, tsNs: UInt64, pid: UInt32, comm: String) {
        self.kind = kind
        self.tsNs = tsNs
        self.pid = pid
        self.comm = comm
    }

    enum CodingKeys: String, CodingKey {
        case kind, pid, tid, comm, cookie, family, saddr, sport, daddr, dport, mode, result, errno, state, segs
        case synack, side, syscall, ready, fd, method, target, status, retransmits, end
        case requestID = "request_id"
        case connectNs = "connect_ns"
        case pollWaitNs = "poll_wait_ns"
        case ttfbNs = "ttfb_ns"
        case tsNs = "ts_ns"
        case startNs = "start_ns"
        case durationNs = "duration_ns"
        case synRetransmits = "syn_retransmits"
        case srttUs = "srtt_us"
        case timeoutMs = "timeout_ms"
    }
}
