/// Byte offsets of `struct tn_connect_event` (bpf/tincture.h). The BPF test target
/// checks every offset here against the C compiler's layout of the same struct.
public enum ConnectEventLayout {
    public static let kind = 0
    public static let pid = 4
    public static let tid = 8
    public static let error = 12
    public static let tsNs = 16
    public static let startNs = 24
    public static let cookie = 32
    public static let synRetransmits = 40
    public static let family = 44
    public static let sport = 46
    public static let dport = 48
    public static let established = 50
    public static let mode = 51
    public static let saddr = 56
    public static let daddr = 72
    public static let comm = 88
    public static let size = 104
}

/// Why a ring-buffer record could not be decoded; each is counted, none is fatal.
public enum DecodeError: Error, Equatable, Sendable {
    case truncated(kind: UInt32, size: Int)
    case unknownKind(UInt32)
    case badFamily(UInt16)

    /// Metric label value for `tincture_decode_errors_total{reason}`.
    public var reason: String {
        switch self {
        case .truncated: return "truncated"
        case .unknownKind: return "unknown_kind"
        case .badFamily: return "bad_family"
        }
    }
}

/// Decodes ring-buffer records (native byte order, as the kernel wrote them).
public enum EventDecoder {
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Result<Event, DecodeError> {
        guard bytes.count >= 4 else { return .failure(.truncated(kind: 0, size: bytes.count)) }
        let rawKind = bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
        guard let kind = EventKind(rawValue: rawKind) else { return .failure(.unknownKind(rawKind)) }
        switch kind {
        case .connect:
            return decodeConnect(bytes).map(Event.connect)
        }
    }

    /// Convenience for tests and fixtures.
    public static func decode(_ bytes: [UInt8]) -> Result<Event, DecodeError> {
        bytes.withUnsafeBytes { decode($0) }
    }

    static func decodeConnect(_ b: UnsafeRawBufferPointer) -> Result<ConnectEvent, DecodeError> {
        typealias L = ConnectEventLayout
        guard b.count >= L.size else {
            return .failure(.truncated(kind: EventKind.connect.rawValue, size: b.count))
        }
        let rawFamily = b.loadUnaligned(fromByteOffset: L.family, as: UInt16.self)
        guard let family = SocketAddress.Family(rawValue: rawFamily) else {
            return .failure(.badFamily(rawFamily))
        }
        let addrLen = family == .inet ? 4 : 16
        let source = SocketAddress(
            family: family, bytes: Array(b[L.saddr..<(L.saddr + addrLen)]),
            port: b.loadUnaligned(fromByteOffset: L.sport, as: UInt16.self))
        let destination = SocketAddress(
            family: family, bytes: Array(b[L.daddr..<(L.daddr + addrLen)]),
            port: b.loadUnaligned(fromByteOffset: L.dport, as: UInt16.self))
        return .success(ConnectEvent(
            pid: b.loadUnaligned(fromByteOffset: L.pid, as: UInt32.self),
            tid: b.loadUnaligned(fromByteOffset: L.tid, as: UInt32.self),
            error: b.loadUnaligned(fromByteOffset: L.error, as: Int32.self),
            endNs: b.loadUnaligned(fromByteOffset: L.tsNs, as: UInt64.self),
            startNs: b.loadUnaligned(fromByteOffset: L.startNs, as: UInt64.self),
            cookie: b.loadUnaligned(fromByteOffset: L.cookie, as: UInt64.self),
            synRetransmits: b.loadUnaligned(fromByteOffset: L.synRetransmits, as: UInt32.self),
            source: source,
            destination: destination,
            established: b[L.established] != 0,
            mode: AttachMode(abiValue: b[L.mode]),
            comm: decodeComm(b, at: L.comm)))
    }

    /// A kernel comm: up to 16 bytes, NUL-terminated unless full; not necessarily UTF-8.
    static func decodeComm(_ b: UnsafeRawBufferPointer, at offset: Int) -> String {
        var end = offset
        while end < offset + 16 && b[end] != 0 { end += 1 }
        return String(decoding: b[offset..<end], as: UTF8.self)
    }
}
