/// How a BPF program is attached to the kernel. Ordered from cheapest to dearest
/// per event as `auto` tries them: fentry (BPF trampoline), tracepoint
/// (BTF-typed raw tracepoint), kprobe (breakpoint-based, works on the most kernels).
public enum AttachMode: String, CaseIterable, Sendable, Hashable {
    case fentry
    case tracepoint
    case kprobe

    /// The value the kernel side writes into events (`enum tn_attach_mode`).
    public init?(abiValue: UInt8) {
        switch abiValue {
        case 1: self = .fentry
        case 2: self = .kprobe
        case 3: self = .tracepoint
        default: return nil
        }
    }
}

/// The outcome of a TCP connect attempt, from the socket's error when it left SYN_SENT.
public enum ConnectResult: Hashable, Sendable {
    case ok
    case refused
    case timeout
    case reset
    /// Left SYN_SENT without an error: the application closed the socket first.
    case aborted
    case errno(Int32)

    public init(established: Bool, error: Int32) {
        if established { self = .ok; return }
        switch error {
        case 0: self = .aborted
        case Errno.ECONNREFUSED: self = .refused
        case Errno.ETIMEDOUT: self = .timeout
        case Errno.ECONNRESET: self = .reset
        default: self = .errno(error)
        }
    }

    /// The stable name used in JSON and metric labels.
    public var name: String {
        switch self {
        case .ok: return "ok"
        case .refused: return "refused"
        case .timeout: return "timeout"
        case .reset: return "reset"
        case .aborted: return "aborted"
        case .errno(let e): return Errno.name(e)
        }
    }
}

/// One finished TCP connect attempt, as the kernel reported it.
public struct ConnectEvent: Equatable, Sendable {
    public var pid: UInt32
    public var tid: UInt32
    public var error: Int32
    /// CLOCK_MONOTONIC nanoseconds when the attempt ended.
    public var endNs: UInt64
    /// CLOCK_MONOTONIC nanoseconds when connect() started.
    public var startNs: UInt64
    public var cookie: UInt64
    public var synRetransmits: UInt32
    public var source: SocketAddress
    public var destination: SocketAddress
    public var established: Bool
    public var mode: AttachMode?
    public var comm: String
    /// Whether the kernel's histogram already counted this connect (false only
    /// when its map was full: the agent then counts it from the event).
    public var countedInKernel: Bool

    public init(pid: UInt32, tid: UInt32, error: Int32, endNs: UInt64, startNs: UInt64, cookie: UInt64,
                synRetransmits: UInt32, source: SocketAddress, destination: SocketAddress,
                established: Bool, mode: AttachMode?, comm: String, countedInKernel: Bool = true) {
        self.countedInKernel = countedInKernel
        self.pid = pid
        self.tid = tid
        self.error = error
        self.endNs = endNs
        self.startNs = startNs
        self.cookie = cookie
        self.synRetransmits = synRetransmits
        self.source = source
        self.destination = destination
        self.established = established
        self.mode = mode
        self.comm = comm
    }

    public var durationNs: UInt64 { endNs >= startNs ? endNs - startNs : 0 }
    public var result: ConnectResult { ConnectResult(established: established, error: error) }
}

/// Every event kind the kernel side sends (`enum tn_event_kind`).
public enum EventKind: UInt32, CaseIterable, Sendable {
    case connect = 1
    case retransmit = 2
    case poll = 3
    case payload = 4

    public var name: String {
        switch self {
        case .connect: return "connect"
        case .retransmit: return "retransmit"
        case .poll: return "poll"
        case .payload: return "payload"
        }
    }
}

public enum Event: Equatable, Sendable {
    case connect(ConnectEvent)
    case retransmit(RetransmitEvent)
    case poll(PollEvent)
    case payload(PayloadSample)

    public var kind: EventKind {
        switch self {
        case .connect: return .connect
        case .retransmit: return .retransmit
        case .poll: return .poll
        case .payload: return .payload
        }
    }
}
