/// The first bytes of one send or receive on a TCP socket, as the payload hook
/// captures them (only payloads that start like HTTP/1.x reach here).
public struct PayloadSample: Equatable, Sendable {
    /// `close`: no data; the socket left its connection (closed by this end, reset or
    /// aborted) while a request on it waited for its response.
    public enum Direction: String, Sendable { case send, receive, close }

    public var cookie: UInt64
    public var pid: UInt32
    public var tid: UInt32
    public var comm: String
    public var direction: Direction
    /// CLOCK_MONOTONIC nanoseconds.
    public var timestampNs: UInt64
    public var local: SocketAddress
    public var remote: SocketAddress
    public var bytes: [UInt8]
    /// On the first payload of a socket this side connected: what the connect took
    /// (the kernel keeps it for connects too fast to travel as events), else 0.
    public var connectNs: UInt64

    public init(cookie: UInt64, pid: UInt32, tid: UInt32, comm: String, direction: Direction, timestampNs: UInt64,
                local: SocketAddress, remote: SocketAddress, bytes: [UInt8], connectNs: UInt64 = 0) {
        self.connectNs = connectNs
        self.cookie = cookie
        self.pid = pid
        self.tid = tid
        self.comm = comm
        self.direction = direction
        self.timestampNs = timestampNs
        self.local = local
        self.remote = remote
        self.bytes = bytes
    }
}

/// What the kernel did to one HTTP request, from its request bytes to the first
/// bytes of its response (or the end that stopped it).
public struct RequestRecord: Equatable, Sendable {
    public enum Side: String, Sendable { case client, server }
    public enum End: String, Sendable, CaseIterable {
        /// First response bytes seen.
        case responded
        /// Another request started on the socket before a response was seen.
        case superseded
        /// The socket left its connection (closed by this end, reset or aborted)
        /// before a response was seen.
        case closed
        /// No response within the correlator's timeout.
        case timedOut = "timed_out"
        /// Evicted to keep memory bounded.
        case evicted
    }

    public var requestID: String
    public var side: Side
    public var pid: UInt32
    public var tid: UInt32
    public var comm: String
    public var cookie: UInt64
    public var method: String
    public var target: String
    /// 0 when no response status was seen.
    public var status: Int
    public var local: SocketAddress
    public var remote: SocketAddress
    /// CLOCK_MONOTONIC when the request bytes crossed the socket.
    public var startNs: UInt64
    /// Connect latency when this request opened the connection, else 0.
    public var connectNs: UInt64
    public var synRetransmits: UInt32
    /// Segments retransmitted on the socket while the request was in flight.
    public var retransmits: UInt32
    /// Time threads waited in poll/select/epoll on this request's socket or thread.
    public var pollWaitNs: UInt64
    /// The longest of those waits and its syscall: where this request's exemplar goes
    /// on the poll-wait histogram.
    public var longestWait: (ns: UInt64, syscall: WaitSyscall, comm: String)? = nil
    /// Request bytes to first response bytes; 0 unless `end == .responded`.
    public var ttfbNs: UInt64
    public var end: End
    /// Request bytes to the end, whichever it was (`ttfbNs` when responded).
    public var durationNs: UInt64 = 0

    /// The service end: the remote for a client, the local end for a server.
    public var endpoint: SocketAddress { side == .client ? remote : local }

    public static func == (a: RequestRecord, b: RequestRecord) -> Bool {
        a.requestID == b.requestID && a.side == b.side && a.pid == b.pid && a.tid == b.tid && a.comm == b.comm
            && a.cookie == b.cookie && a.method == b.method && a.target == b.target && a.status == b.status
            && a.local == b.local && a.remote == b.remote && a.startNs == b.startNs && a.connectNs == b.connectNs
            && a.synRetransmits == b.synRetransmits && a.retransmits == b.retransmits && a.pollWaitNs == b.pollWaitNs
            && a.ttfbNs == b.ttfbNs && a.end == b.end && a.durationNs == b.durationNs && a.longestWait?.ns == b.longestWait?.ns
            && a.longestWait?.syscall == b.longestWait?.syscall
    }

    public init(requestID: String, side: Side, pid: UInt32, tid: UInt32, comm: String, cookie: UInt64,
                method: String, target: String, status: Int, local: SocketAddress, remote: SocketAddress,
                startNs: UInt64, connectNs: UInt64, synRetransmits: UInt32, retransmits: UInt32,
                pollWaitNs: UInt64, ttfbNs: UInt64, end: End) {
        self.requestID = requestID
        self.side = side
        self.pid = pid
        self.tid = tid
        self.comm = comm
        self.cookie = cookie
        self.method = method
        self.target = target
        self.status = status
        self.local = local
        self.remote = remote
        self.startNs = startNs
        self.connectNs = connectNs
        self.synRetransmits = synRetransmits
        self.retransmits = retransmits
        self.pollWaitNs = pollWaitNs
        self.ttfbNs = ttfbNs
        self.end = end
    }
}

/// Joins HTTP requests seen on sockets with what the kernel did to them: the connect
/// that opened the socket, retransmits on it, poll waits on it or on the thread
/// that sent the request. Pure and single-threaded: the agent's reader thread owns
/// it. Memory is bounded whatever the traffic; every eviction is counted.
public struct Correlator: Sendable {
    public struct Limits: Sendable {
        public var maxInFlight = 10_000
        /// Sockets remembered (their connect, until the first request; their request count).
        public var maxSockets = 50_000
        public var requestTimeoutNs: UInt64 = 60_000_000_000
        public init() {}
    }

    struct InFlight: Sendable {
        var record: RequestRecord
    }

    public let limits: Limits
    public let extractor: RequestIDExtractor
    private var inFlight: [UInt64: InFlight] = [:]
    /// tid → cookie of the request that thread sent and still waits on.
    private var threadRequests: [UInt32: UInt64] = [:]
    /// Sockets seen: their connect until the first request takes it, their request count.
    private var sockets: SocketTable
    public private(set) var evictedInFlight: UInt64 = 0
    public private(set) var evictedSockets: UInt64 = 0
    public private(set) var timedOut: UInt64 = 0

    public init(limits: Limits = Limits(), extractor: RequestIDExtractor = RequestIDExtractor()) {
        self.limits = limits
        self.extractor = extractor
        self.sockets = SocketTable(limit: limits.maxSockets)
    }

    public var inFlightCount: Int { inFlight.count }

    /// The bit that marks a socket id made from a masked address, not a kernel cookie.
    static let maskedID: UInt64 = 1 << 63

    /// A finished connect: the first request on that socket inherits its cost.
    public mutating func connected(_ c: ConnectEvent) {
        guard c.result == .ok, c.cookie != 0 else { return }
        guard c.synRetransmits > 0 else {
            // The kernel hands a connect's latency to the first payload on its socket
            // (`PayloadSample.connectNs`), so a clean connect leaves nothing to remember.
            // A kernel cookie names one socket for good; a masked id (top bit set, where
            // no cookie was assigned) can name a new socket at a recycled address, and
            // nothing of the earlier connection may reach the new one's requests.
            if c.cookie & Self.maskedID != 0 { sockets.forget(c.cookie) }
            return
        }
        // SYN retransmits do not travel with the payload: remember them for the first
        // request. A new connect on this cookie is a new connection: its request count
        // starts over.
        changeSockets { table, keep in
            table.replace(c.cookie, with: SocketState(connectNs: c.durationNs, synRetransmits: c.synRetransmits,
                                                      hasConnect: true), keep: keep)
        }
    }

    /// Sees a socket (it becomes the most recently seen) and updates its state. Past
    /// the socket limit, the half seen longest ago is forgotten, except sockets with
    /// a request in flight; each forgotten socket is counted.
    private mutating func see(_ cookie: UInt64, _ body: (inout SocketState) -> Void) {
        changeSockets { table, keep in table.update(cookie, keep: keep, body) }
    }

    /// Changes the socket table, telling it which sockets making room must keep (those
    /// with a request in flight), and counts what it forgot. The test reads a local
    /// copy of the map (the table is being changed) and does not escape: nothing is
    /// allocated per request.
    private mutating func changeSockets(_ change: (inout SocketTable, (UInt64) -> Bool) -> Int) {
        let inFlight = self.inFlight
        evictedSockets += UInt64(change(&sockets) { inFlight[$0] != nil })
    }

    /// A captured payload; returns the records it finished (a response, or a request
    /// that a new one superseded).
    public mutating func payload(_ p: PayloadSample) -> [RequestRecord] {
        if p.direction == .close {
            return finish(p.cookie, end: .closed, status: 0, atNs: p.timestampNs).map { [$0] } ?? []
        }
        guard p.cookie != 0, let head = HTTPParser.parse(p.bytes, keeping: extractor.headerNames) else { return [] }
        switch head {
        case .request(let request):
            var finished: [RequestRecord] = []
            if let previous = finish(p.cookie, end: .superseded, status: 0, atNs: p.timestampNs) {
                finished.append(previous)
            }
            begin(request, p)
            return finished
        case .response(let response):
            // A client receives its response; a server sends it. (Reads the side alone:
            // the whole record is not copied to look at it.)
            guard let side = inFlight[p.cookie]?.record.side else { return [] }
            guard p.direction == (side == .client ? .receive : .send) else { return [] }
            return finish(p.cookie, end: .responded, status: response.status, atNs: p.timestampNs).map { [$0] } ?? []
        }
    }

    public mutating func retransmitted(_ r: RetransmitEvent) {
        guard r.cookie != 0, inFlight[r.cookie] != nil else { return }
        inFlight[r.cookie]!.record.retransmits += r.segs
    }

    /// A long wait joins the request on its single socket, else the request its thread sent.
    public mutating func waited(_ w: PollEvent) {
        var cookie = w.cookie != 0 && inFlight[w.cookie] != nil ? w.cookie : nil
        if cookie == nil, let byThread = threadRequests[w.tid], inFlight[byThread] != nil { cookie = byThread }
        guard let cookie, let current = inFlight[cookie], w.endNs > current.record.startNs else { return }
        // Only the part of the wait after the request was sent belongs to it.
        inFlight[cookie]!.record.pollWaitNs += w.endNs - max(w.startNs, current.record.startNs)
        if w.durationNs > current.record.longestWait?.ns ?? 0 {
            inFlight[cookie]!.record.longestWait = (w.durationNs, w.syscall, w.comm)
        }
    }

    /// Ends requests with no response after the timeout; returns them.
    public mutating func expire(nowNs: UInt64) -> [RequestRecord] {
        let stale = inFlight.filter { nowNs > $0.value.record.startNs &+ limits.requestTimeoutNs }.keys
        return stale.compactMap { cookie in
            timedOut += 1
            return finish(cookie, end: .timedOut, status: 0, atNs: nowNs)
        }
    }

    private mutating func begin(_ request: HTTPRequestHead, _ p: PayloadSample) {
        if inFlight.count >= limits.maxInFlight,
           let oldest = inFlight.min(by: { $0.value.record.startNs < $1.value.record.startNs })?.key {
            _ = finish(oldest, end: .evicted, status: 0, atNs: p.timestampNs)
            evictedInFlight += 1
        }
        let side: RequestRecord.Side = p.direction == .send ? .client : .server
        var socket = SocketState()
        see(p.cookie) { state in
            state.requests += 1
            socket = state
            // The request that first used a freshly connected socket pays for the connect (below).
            if side == .client { state.hasConnect = false }
        }
        let n = socket.requests
        var record = RequestRecord(
            requestID: extractor.requestID(of: request) ?? "sk-\(p.cookie)-\(n)",
            side: side, pid: p.pid, tid: p.tid, comm: p.comm, cookie: p.cookie,
            method: request.method, target: request.target, status: 0, local: p.local, remote: p.remote,
            startNs: p.timestampNs, connectNs: 0, synRetransmits: 0, retransmits: 0, pollWaitNs: 0, ttfbNs: 0,
            end: .responded)
        if side == .client && socket.hasConnect {
            record.connectNs = socket.connectNs
            record.synRetransmits = socket.synRetransmits
        } else if side == .client && p.connectNs > 0 {
            // A fast, clean connect: no event travelled, the kernel handed its latency over.
            record.connectNs = p.connectNs
        }
        inFlight[p.cookie] = InFlight(record: record)
        if side == .client { threadRequests[p.tid] = p.cookie }
    }

    private mutating func finish(_ cookie: UInt64, end: RequestRecord.End, status: Int, atNs: UInt64) -> RequestRecord? {
        guard var record = inFlight.removeValue(forKey: cookie)?.record else { return nil }
        if threadRequests[record.tid] == cookie { threadRequests[record.tid] = nil }
        record.end = end
        record.status = status
        record.durationNs = atNs > record.startNs ? atNs - record.startNs : 0
        record.ttfbNs = end == .responded ? record.durationNs : 0
        return record
    }
}
