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
    public static let flags = 52
    public static let saddr = 56
    public static let daddr = 72
    public static let comm = 88
    public static let size = 104

    public static let flagUncounted: UInt32 = 1
}

/// Byte offsets of `struct tn_retransmit_event`.
public enum RetransmitEventLayout {
    public static let kind = 0
    public static let pid = 4
    public static let tid = 8
    public static let segs = 12
    public static let tsNs = 16
    public static let cookie = 24
    public static let srttUs = 32
    public static let family = 36
    public static let sport = 38
    public static let dport = 40
    public static let state = 42
    public static let mode = 43
    public static let flags = 44
    public static let saddr = 48
    public static let daddr = 64
    public static let comm = 80
    public static let size = 96

    public static let flagSynack: UInt8 = 1
    public static let flagOwnerKnown: UInt8 = 2
    public static let flagClient: UInt8 = 4
}

/// Byte offsets of `struct tn_poll_event`.
public enum PollEventLayout {
    public static let kind = 0
    public static let pid = 4
    public static let tid = 8
    public static let syscall = 12
    public static let tsNs = 16
    public static let startNs = 24
    public static let cookie = 32
    public static let timeoutMs = 40
    public static let ready = 48
    public static let fd = 52
    public static let mode = 56
    public static let comm = 64
    public static let size = 80
}

/// Byte offsets of `struct tn_payload_event`'s fixed part; `len` data bytes follow it.
public enum PayloadEventLayout {
    public static let kind = 0
    public static let pid = 4
    public static let tid = 8
    public static let len = 12
    public static let tsNs = 16
    public static let cookie = 24
    public static let total = 32
    public static let family = 36
    public static let sport = 38
    public static let dport = 40
    public static let direction = 42
    public static let mode = 43
    public static let connectUs = 44
    public static let saddr = 48
    public static let daddr = 64
    public static let comm = 80
    public static let headerSize = 96
    public static let maxData = 4096
    /// `direction` values (TN_DIR_*): a send, a receive, or the close of a socket
    /// with a request in flight (no data).
    public static let directionSend: UInt8 = 1
    public static let directionReceive: UInt8 = 2
    public static let directionClose: UInt8 = 3
}

/// Why a ring-buffer record could not be decoded; each is counted, none is fatal.
public enum DecodeError: Error, Equatable, Sendable {
    case truncated(kind: UInt32, size: Int)
    case unknownKind(UInt32)
    case badFamily(UInt16)
    case badSyscall(UInt32)
    case badDirection(UInt8)

    /// Metric label value for `tincture_decode_errors_total{reason}`.
    public var reason: String {
        switch self {
        case .truncated: return "truncated"
        case .unknownKind: return "unknown_kind"
        case .badFamily: return "bad_family"
        case .badSyscall: return "bad_syscall"
        case .badDirection: return "bad_direction"
        }
    }
}

/// Decodes ring-buffer records (native byte order, as the kernel wrote them).
public enum EventDecoder {
    /// One record, decoded in place: the agent's per-event path (no `Result` to copy through).
    /// `comms`: the reader's cache of command names (see `CommCache`).
    public static func event(_ bytes: UnsafeRawBufferPointer, comms: inout CommCache) throws(DecodeError) -> Event {
        guard bytes.count >= 4 else { throw .truncated(kind: 0, size: bytes.count) }
        let rawKind = bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
        guard let kind = EventKind(rawValue: rawKind) else { throw .unknownKind(rawKind) }
        switch kind {
        case .connect: return .connect(try decodeConnect(bytes, &comms))
        case .retransmit: return .retransmit(try decodeRetransmit(bytes, &comms))
        case .poll: return .poll(try decodePoll(bytes, &comms))
        case .payload: return .payload(try decodePayload(bytes, &comms))
        }
    }

    public static func event(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> Event {
        var none = CommCache.none
        return try event(bytes, comms: &none)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Result<Event, DecodeError> {
        do { return .success(try event(bytes)) } catch { return .failure(error) }
    }

    /// Convenience for tests and fixtures.
    public static func decode(_ bytes: [UInt8]) -> Result<Event, DecodeError> {
        bytes.withUnsafeBytes { decode($0) }
    }

    static func decodeConnect(_ b: UnsafeRawBufferPointer, _ comms: inout CommCache) throws(DecodeError) -> ConnectEvent {
        typealias L = ConnectEventLayout
        guard b.count >= L.size else {
            throw .truncated(kind: EventKind.connect.rawValue, size: b.count)
        }
        let addresses = try decodeAddresses(b, family: L.family, saddr: L.saddr, sport: L.sport, daddr: L.daddr,
                                            dport: L.dport)
        let (source, destination) = addresses
        return ConnectEvent(
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
            comm: comms.string(b, at: L.comm),
            countedInKernel: b.loadUnaligned(fromByteOffset: L.flags, as: UInt32.self) & L.flagUncounted == 0)
    }

    static func decodeRetransmit(_ b: UnsafeRawBufferPointer, _ comms: inout CommCache) throws(DecodeError) -> RetransmitEvent {
        typealias L = RetransmitEventLayout
        guard b.count >= L.size else {
            throw .truncated(kind: EventKind.retransmit.rawValue, size: b.count)
        }
        let addresses = try decodeAddresses(b, family: L.family, saddr: L.saddr, sport: L.sport, daddr: L.daddr,
                                            dport: L.dport)
        let flags = b[L.flags]
        return RetransmitEvent(
            pid: b.loadUnaligned(fromByteOffset: L.pid, as: UInt32.self),
            tid: b.loadUnaligned(fromByteOffset: L.tid, as: UInt32.self),
            segs: b.loadUnaligned(fromByteOffset: L.segs, as: UInt32.self),
            timestampNs: b.loadUnaligned(fromByteOffset: L.tsNs, as: UInt64.self),
            cookie: b.loadUnaligned(fromByteOffset: L.cookie, as: UInt64.self),
            srttUs: b.loadUnaligned(fromByteOffset: L.srttUs, as: UInt32.self),
            source: addresses.0,
            destination: addresses.1,
            state: b[L.state],
            mode: AttachMode(abiValue: b[L.mode]),
            synack: flags & L.flagSynack != 0,
            ownerKnown: flags & L.flagOwnerKnown != 0,
            client: flags & L.flagClient != 0,
            comm: comms.string(b, at: L.comm))
    }

    static func decodePoll(_ b: UnsafeRawBufferPointer, _ comms: inout CommCache) throws(DecodeError) -> PollEvent {
        typealias L = PollEventLayout
        guard b.count >= L.size else {
            throw .truncated(kind: EventKind.poll.rawValue, size: b.count)
        }
        let rawSyscall = b.loadUnaligned(fromByteOffset: L.syscall, as: UInt32.self)
        guard let syscall = WaitSyscall(rawValue: rawSyscall) else { throw .badSyscall(rawSyscall) }
        return PollEvent(
            pid: b.loadUnaligned(fromByteOffset: L.pid, as: UInt32.self),
            tid: b.loadUnaligned(fromByteOffset: L.tid, as: UInt32.self),
            syscall: syscall,
            endNs: b.loadUnaligned(fromByteOffset: L.tsNs, as: UInt64.self),
            startNs: b.loadUnaligned(fromByteOffset: L.startNs, as: UInt64.self),
            cookie: b.loadUnaligned(fromByteOffset: L.cookie, as: UInt64.self),
            timeoutMs: b.loadUnaligned(fromByteOffset: L.timeoutMs, as: Int64.self),
            ready: b.loadUnaligned(fromByteOffset: L.ready, as: Int32.self),
            fd: b.loadUnaligned(fromByteOffset: L.fd, as: Int32.self),
            mode: AttachMode(abiValue: b[L.mode]),
            comm: comms.string(b, at: L.comm))
    }

    static func decodePayload(_ b: UnsafeRawBufferPointer, _ comms: inout CommCache) throws(DecodeError) -> PayloadSample {
        typealias L = PayloadEventLayout
        guard b.count >= L.headerSize else {
            throw .truncated(kind: EventKind.payload.rawValue, size: b.count)
        }
        let len = Int(b.loadUnaligned(fromByteOffset: L.len, as: UInt32.self))
        guard len <= L.maxData, b.count >= L.headerSize + len else {
            throw .truncated(kind: EventKind.payload.rawValue, size: b.count)
        }
        let direction: PayloadSample.Direction
        switch b[L.direction] {
        case L.directionSend: direction = .send
        case L.directionReceive: direction = .receive
        case L.directionClose: direction = .close
        case let other: throw .badDirection(other)
        }
        let addresses = try decodeAddresses(b, family: L.family, saddr: L.saddr, sport: L.sport, daddr: L.daddr,
                                            dport: L.dport)
        return PayloadSample(
            cookie: b.loadUnaligned(fromByteOffset: L.cookie, as: UInt64.self),
            pid: b.loadUnaligned(fromByteOffset: L.pid, as: UInt32.self),
            tid: b.loadUnaligned(fromByteOffset: L.tid, as: UInt32.self),
            comm: comms.string(b, at: L.comm),
            direction: direction,
            timestampNs: b.loadUnaligned(fromByteOffset: L.tsNs, as: UInt64.self),
            local: addresses.0, remote: addresses.1,
            bytes: Array(b[L.headerSize..<(L.headerSize + len)]),
            connectNs: UInt64(b.loadUnaligned(fromByteOffset: L.connectUs, as: UInt32.self)) * 1000)
    }

    /// Family, addresses and ports laid out the same way in every socket event.
    static func decodeAddresses(_ b: UnsafeRawBufferPointer, family: Int, saddr: Int, sport: Int, daddr: Int,
                                dport: Int) throws(DecodeError) -> (SocketAddress, SocketAddress) {
        let rawFamily = b.loadUnaligned(fromByteOffset: family, as: UInt16.self)
        guard let fam = SocketAddress.Family(rawValue: rawFamily) else { throw .badFamily(rawFamily) }
        // The buffer was checked to hold the whole fixed part, addresses included.
        let base = b.baseAddress!
        return (
            SocketAddress(family: fam, rawAddress: base + saddr,
                          port: b.loadUnaligned(fromByteOffset: sport, as: UInt16.self)),
            SocketAddress(family: fam, rawAddress: base + daddr,
                          port: b.loadUnaligned(fromByteOffset: dport, as: UInt16.self)))
    }

    /// A kernel comm: up to 16 bytes, NUL-terminated unless full; not necessarily UTF-8.
    static func decodeComm(_ b: UnsafeRawBufferPointer, at offset: Int) -> String {
        var n = 0
        while n < 16 && b[offset + n] != 0 { n += 1 }
        // A contiguous typed buffer takes String's fast path (ASCII check, inline small string).
        let start = b.baseAddress!.advanced(by: offset).assumingMemoryBound(to: UInt8.self)
        return String(decoding: UnsafeBufferPointer(start: start, count: n), as: UTF8.self)
    }
}

/// Command names the reader met recently, by their raw 16 bytes. A host runs a
/// few busy commands, and building a String from bytes (UTF-8 check, packing)
/// costs more than finding the one built last time: one hash of two words and a
/// compare. Direct-mapped; a slot holds exactly the bytes its string came from.
public struct CommCache: Sendable {
    private struct Slot: Sendable {
        var w0: UInt64 = 0
        var w1: UInt64 = 0
        // All-zero bytes are the empty name, so a fresh slot is already right.
        var name = ""
    }

    private var slots: [Slot]

    /// `slots`: a power of two; 0 keeps nothing (every name decoded afresh).
    public init(slots: Int = 64) {
        precondition(slots == 0 || slots & (slots - 1) == 0, "CommCache slots must be a power of two")
        self.slots = Array(repeating: Slot(), count: slots)
    }

    public static let none = CommCache(slots: 0)

    /// The 16-byte comm at `offset` (the caller checked the record holds it).
    mutating func string(_ b: UnsafeRawBufferPointer, at offset: Int) -> String {
        guard !slots.isEmpty else { return EventDecoder.decodeComm(b, at: offset) }
        let w0 = b.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        let w1 = b.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
        let h = (w0 ^ (w1 &* 0x9E37_79B9_7F4A_7C15)) &* 0xC2B2_AE3D_27D4_EB4F
        let i = Int(truncatingIfNeeded: h >> 40) & (slots.count - 1)
        if slots[i].w0 == w0 && slots[i].w1 == w1 { return slots[i].name }
        let name = EventDecoder.decodeComm(b, at: offset)
        slots[i] = Slot(w0: w0, w1: w1, name: name)
        return name
    }
}
