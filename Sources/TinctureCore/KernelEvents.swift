/// Linux TCP state names (include/net/tcp_states.h), as events report them.
public enum TCPState {
    static let names = [
        1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
        7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
    ]

    public static func name(_ state: UInt8) -> String { names[Int(state)] ?? "STATE_\(state)" }
}

/// One TCP retransmission (segments sent again), attributed to the socket's owner.
public struct RetransmitEvent: Equatable, Sendable {
    /// Socket owner; 0 (and comm "") when the kernel side never saw it in process context.
    public var pid: UInt32
    public var tid: UInt32
    public var segs: UInt32
    public var timestampNs: UInt64
    public var cookie: UInt64
    public var srttUs: UInt32
    public var source: SocketAddress
    public var destination: SocketAddress
    public var state: UInt8
    public var mode: AttachMode?
    public var synack: Bool
    public var ownerKnown: Bool
    /// The owner called connect(): the remote end is the service.
    public var client: Bool
    public var comm: String

    public init(pid: UInt32, tid: UInt32, segs: UInt32, timestampNs: UInt64, cookie: UInt64, srttUs: UInt32,
                source: SocketAddress, destination: SocketAddress, state: UInt8, mode: AttachMode?,
                synack: Bool, ownerKnown: Bool, client: Bool, comm: String) {
        self.pid = pid
        self.tid = tid
        self.segs = segs
        self.timestampNs = timestampNs
        self.cookie = cookie
        self.srttUs = srttUs
        self.source = source
        self.destination = destination
        self.state = state
        self.mode = mode
        self.synack = synack
        self.ownerKnown = ownerKnown
        self.client = client
        self.comm = comm
    }

    public var stateName: String { TCPState.name(state) }
    /// The service side: remote for a client's socket, local for a server's.
    public var endpoint: SocketAddress { client ? destination : source }
    /// Label value for the owner's command name.
    public var commLabel: String { ownerKnown ? comm : "unknown" }
}

/// The waiting syscalls (`enum tn_syscall`).
public enum WaitSyscall: UInt32, CaseIterable, Sendable {
    case poll = 1, ppoll, select, pselect6, epollWait, epollPwait, epollPwait2

    public var name: String {
        switch self {
        case .poll: return "poll"
        case .ppoll: return "ppoll"
        case .select: return "select"
        case .pselect6: return "pselect6"
        case .epollWait: return "epoll_wait"
        case .epollPwait: return "epoll_pwait"
        case .epollPwait2: return "epoll_pwait2"
        }
    }
}

/// One long wait for I/O readiness (at least the agent's --poll-min-duration).
public struct PollEvent: Equatable, Sendable {
    public var pid: UInt32
    public var tid: UInt32
    public var syscall: WaitSyscall
    public var endNs: UInt64
    public var startNs: UInt64
    /// Cookie of the single socket waited on; 0 when several fds, or not a socket.
    public var cookie: UInt64
    /// Requested timeout; -1 waits forever.
    public var timeoutMs: Int64
    /// Ready fds, 0 on timeout, -errno on failure (e.g. -4 when a signal interrupted it).
    public var ready: Int32
    /// The single fd waited on, -1 otherwise.
    public var fd: Int32
    public var mode: AttachMode?
    public var comm: String

    public init(pid: UInt32, tid: UInt32, syscall: WaitSyscall, endNs: UInt64, startNs: UInt64, cookie: UInt64,
                timeoutMs: Int64, ready: Int32, fd: Int32, mode: AttachMode?, comm: String) {
        self.pid = pid
        self.tid = tid
        self.syscall = syscall
        self.endNs = endNs
        self.startNs = startNs
        self.cookie = cookie
        self.timeoutMs = timeoutMs
        self.ready = ready
        self.fd = fd
        self.mode = mode
        self.comm = comm
    }

    public var durationNs: UInt64 { endNs >= startNs ? endNs - startNs : 0 }
}

/// One (comm, syscall) row of the kernel's per-CPU poll-wait histogram, summed over CPUs.
public struct PollHistogramRow: Equatable, Sendable {
    public var comm: String
    public var syscall: String
    /// Per-bucket counts (not cumulative), one per `Buckets.pollSeconds` bound and one above.
    public var counts: [UInt64]
    public var sumNs: UInt64

    public init(comm: String, syscall: String, counts: [UInt64], sumNs: UInt64) {
        self.comm = comm
        self.syscall = syscall
        self.counts = counts
        self.sumNs = sumNs
    }
}

/// One (comm, destination, outcome) row of the kernel's per-CPU connect histogram,
/// summed over CPUs. Every connect is counted there, events or not.
public struct ConnectHistogramRow: Equatable, Sendable {
    public var comm: String
    public var destination: SocketAddress
    public var result: ConnectResult
    /// Per-bucket counts (not cumulative), one per `Buckets.connectSeconds` bound and one above.
    public var counts: [UInt64]
    public var sumNs: UInt64

    public init(comm: String, destination: SocketAddress, result: ConnectResult, counts: [UInt64], sumNs: UInt64) {
        self.comm = comm
        self.destination = destination
        self.result = result
        self.counts = counts
        self.sumNs = sumNs
    }
}
