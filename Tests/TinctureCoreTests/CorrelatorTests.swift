import XCTest
@testable import TinctureCore

final class CorrelatorTests: XCTestCase {
    let client = SocketAddress.ipv4(127, 0, 0, 1, port: 40000)
    let server = SocketAddress.ipv4(127, 0, 0, 1, port: 8080)
    let ms: UInt64 = 1_000_000

    func sample(_ text: String, _ direction: PayloadSample.Direction, at t: UInt64, cookie: UInt64 = 7,
                tid: UInt32 = 101, serverSide: Bool = false) -> PayloadSample {
        PayloadSample(cookie: cookie, pid: serverSide ? 200 : 100, tid: tid, comm: serverSide ? "server" : "curl",
                      direction: direction, timestampNs: t,
                      local: serverSide ? server : client, remote: serverSide ? client : server, bytes: Array(text.utf8))
    }

    func connect(cookie: UInt64 = 7, duration: UInt64, syn: UInt32) -> ConnectEvent {
        ConnectEvent(pid: 100, tid: 101, error: 0, endNs: 1000 * ms + duration, startNs: 1000 * ms, cookie: cookie,
                     synRetransmits: syn, source: client, destination: server, established: true, mode: .tracepoint,
                     comm: "curl")
    }

    func get(_ id: String? = nil, path: String = "/") -> String {
        "GET \(path) HTTP/1.1\r\nHost: s\r\n" + (id.map { "X-Request-ID: \($0)\r\n" } ?? "") + "\r\n"
    }

    /// A socket that leaves its connection with a request in flight ends that request as
    /// closed, with how long it ran; a close with nothing in flight finishes nothing.
    func testCloseEndsTheRequestInFlight() {
        var c = Correlator()
        XCTAssertEqual(c.payload(sample(get("gone-1"), .send, at: 1000 * ms)), [])
        var close = sample("", .close, at: 3500 * ms)
        close.bytes = []
        let ended = c.payload(close)
        XCTAssertEqual(ended.map(\.requestID), ["gone-1"])
        XCTAssertEqual(ended.first?.end, .closed)
        XCTAssertEqual(ended.first?.durationNs, 2500 * ms)
        XCTAssertEqual(ended.first?.ttfbNs, 0)
        XCTAssertEqual(c.payload(close), [])
        XCTAssertEqual(c.inFlightCount, 0)
        let json = EventJSON.encode(ended[0], realtimeOffsetNs: 0)
        XCTAssertTrue(json.contains(#""end":"closed""#) && json.contains(#""duration_ns":2500000000"#), json)
        XCTAssertTrue(RequestReading.lines(ended[0]).contains { $0.hasPrefix("the connection closed 2500 ms after the request") },
                      "\(RequestReading.lines(ended[0]))")
    }

    /// With no event arriving (an idle host), the reader's idle tick still ends a request
    /// past its timeout, and records it.
    func testIdleTickEndsARequestPastItsTimeout() {
        var p = EventPipeline()
        XCTAssertEqual(p.apply(.payload(sample(get("idle-1"), .send, at: 1000 * ms)), wallTimeSeconds: { 1 }), [])
        XCTAssertEqual(p.tick(nowNs: 1000 * ms + p.correlator.limits.requestTimeoutNs, wallTimeSeconds: { 1 }), [])
        let ended = p.tick(nowNs: 1000 * ms + p.correlator.limits.requestTimeoutNs + 2000 * ms, wallTimeSeconds: { 1 })
        XCTAssertEqual(ended.map(\.requestID), ["idle-1"])
        XCTAssertEqual(ended.first?.end, .timedOut)
        XCTAssertEqual(p.store.records(withID: "idle-1").count, 1)
        XCTAssertEqual(p.correlator.inFlightCount, 0)
    }

    func testClientRequestJoinsItsConnectRetransmitsAndPollWait() {
        var c = Correlator()
        c.connected(connect(duration: 1002 * ms, syn: 1))
        XCTAssertEqual(c.payload(sample(get("test-123", path: "/slow"), .send, at: 1001 * ms)), [])
        c.retransmitted(RetransmitEvent(pid: 100, tid: 101, segs: 2, timestampNs: 1100 * ms, cookie: 7, srttUs: 50,
                                        source: client, destination: server, state: 1, mode: .tracepoint,
                                        synack: false, ownerKnown: true, client: true, comm: "curl"))
        // Waited 1000..1311 ms: only the 310 ms after the request was sent count.
        c.waited(PollEvent(pid: 100, tid: 101, syscall: .poll, endNs: 1311 * ms, startNs: 1000 * ms, cookie: 7,
                           timeoutMs: -1, ready: 1, fd: 5, mode: .tracepoint, comm: "curl"))
        let done = c.payload(sample("HTTP/1.1 200 OK\r\n\r\n", .receive, at: 1312 * ms))
        XCTAssertEqual(done.count, 1)
        let r = done[0]
        XCTAssertEqual(r.requestID, "test-123")
        XCTAssertEqual(r.side, .client)
        XCTAssertEqual(r.method, "GET")
        XCTAssertEqual(r.target, "/slow")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.connectNs, 1002 * ms)
        XCTAssertEqual(r.synRetransmits, 1)
        XCTAssertEqual(r.retransmits, 2)
        XCTAssertEqual(r.pollWaitNs, 310 * ms)
        XCTAssertEqual(r.longestWait?.ns, 311 * ms)
        XCTAssertEqual(r.longestWait?.syscall, .poll)
        XCTAssertEqual(r.ttfbNs, 311 * ms)
        XCTAssertEqual(r.end, .responded)
        XCTAssertEqual(r.endpoint, server)
        XCTAssertEqual(c.inFlightCount, 0)
    }

    func testKeepAliveGivesOneRecordPerRequestAndOnlyTheFirstPaysTheConnect() {
        var c = Correlator()
        c.connected(connect(duration: 1002 * ms, syn: 1))
        var records: [RequestRecord] = []
        for i in 0..<3 {
            let t = UInt64(1001 + 10 * i) * ms
            records += c.payload(sample(get("r\(i)"), .send, at: t))
            records += c.payload(sample("HTTP/1.1 204 No Content\r\n\r\n", .receive, at: t + 2 * ms))
        }
        XCTAssertEqual(records.map(\.requestID), ["r0", "r1", "r2"])
        XCTAssertEqual(records.map(\.connectNs), [1002 * ms, 0, 0])
        XCTAssertEqual(records.map(\.synRetransmits), [1, 0, 0])
        XCTAssertEqual(records.map(\.ttfbNs), [2 * ms, 2 * ms, 2 * ms])
    }

    func testTraceparentAndGeneratedIDs() {
        var c = Correlator()
        let tp = "GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
        _ = c.payload(sample(tp, .send, at: 1 * ms))
        var r = c.payload(sample("HTTP/1.1 200 OK\r\n", .receive, at: 2 * ms))
        XCTAssertEqual(r.first?.requestID, "4bf92f3577b34da6a3ce929d0e0e4736")
        _ = c.payload(sample(get(), .send, at: 3 * ms))
        r = c.payload(sample("HTTP/1.1 200 OK\r\n", .receive, at: 4 * ms))
        XCTAssertEqual(r.first?.requestID, "sk-7-2", "generated: cookie and the request's place on the socket")
    }

    func testServerSideRecord() {
        var c = Correlator()
        _ = c.payload(sample(get("test-123"), .receive, at: 10 * ms, cookie: 9, tid: 300, serverSide: true))
        // A response arriving (not sent) on a server socket is not this request's answer.
        XCTAssertEqual(c.payload(sample("HTTP/1.1 200 OK\r\n", .receive, at: 11 * ms, cookie: 9, serverSide: true)), [])
        let r = c.payload(sample("HTTP/1.1 500 Oops\r\n", .send, at: 310 * ms, cookie: 9, tid: 300, serverSide: true))
        XCTAssertEqual(r.first?.side, .server)
        XCTAssertEqual(r.first?.requestID, "test-123")
        XCTAssertEqual(r.first?.status, 500)
        XCTAssertEqual(r.first?.endpoint, server, "a server's service is its own end")
        XCTAssertEqual(r.first?.connectNs, 0)
    }

    func testPollJoinsByThreadWhenNoSingleSocket() {
        var c = Correlator()
        _ = c.payload(sample(get("t"), .send, at: 100 * ms, tid: 55))
        c.waited(PollEvent(pid: 100, tid: 55, syscall: .epollWait, endNs: 400 * ms, startNs: 100 * ms, cookie: 0,
                           timeoutMs: 1000, ready: 1, fd: -1, mode: .tracepoint, comm: "curl"))
        c.waited(PollEvent(pid: 100, tid: 56, syscall: .epollWait, endNs: 400 * ms, startNs: 100 * ms, cookie: 0,
                           timeoutMs: 1000, ready: 1, fd: -1, mode: .tracepoint, comm: "curl"))
        let r = c.payload(sample("HTTP/1.1 200 OK\r\n", .receive, at: 401 * ms, tid: 55))
        XCTAssertEqual(r.first?.pollWaitNs, 300 * ms, "only the sending thread's wait joins")
    }

    func testSupersededTimedOutAndEvictedAreCountedEnds() {
        var limits = Correlator.Limits()
        limits.maxInFlight = 2
        limits.requestTimeoutNs = 1000 * ms
        var c = Correlator(limits: limits)
        _ = c.payload(sample(get("a"), .send, at: 1 * ms, cookie: 1))
        let superseded = c.payload(sample(get("b"), .send, at: 2 * ms, cookie: 1))
        XCTAssertEqual(superseded.map(\.end), [.superseded])
        XCTAssertEqual(superseded.first?.ttfbNs, 0)
        _ = c.payload(sample(get("c"), .send, at: 3 * ms, cookie: 2))
        _ = c.payload(sample(get("d"), .send, at: 4 * ms, cookie: 3))  // third in flight: the oldest goes
        XCTAssertEqual(c.evictedInFlight, 1)
        XCTAssertEqual(c.inFlightCount, 2)
        let expired = c.expire(nowNs: 2000 * ms)
        XCTAssertEqual(Set(expired.map(\.requestID)), ["c", "d"])
        XCTAssertEqual(Set(expired.map(\.end)), [.timedOut])
        XCTAssertEqual(c.timedOut, 2)
        XCTAssertEqual(c.inFlightCount, 0)
    }

    func testCleanConnectReachesItsRequestThroughThePayloadAndANewConnectionForgetsTheOld() {
        var c = Correlator()
        let id: UInt64 = 1 << 63 | 0x5eed  // a masked socket address: kprobe mode, no kernel cookie
        // A connect that paid a SYN retransmit but whose socket never carried a request...
        c.connected(connect(cookie: id, duration: 1002 * ms, syn: 1))
        // ...then a clean connect on the same id (a recycled address): the old one's cost must not leak.
        c.connected(connect(cookie: id, duration: 2 * ms, syn: 0))
        var first = sample(get("fresh"), .send, at: 1003 * ms, cookie: id)
        first.connectNs = 2 * ms  // the kernel hands the clean connect's latency to the first payload
        XCTAssertEqual(c.payload(first), [])
        var records = c.payload(sample("HTTP/1.1 200 OK\r\n\r\n", .receive, at: 1004 * ms, cookie: id))
        XCTAssertEqual(records.map(\.connectNs), [2 * ms])
        XCTAssertEqual(records.map(\.synRetransmits), [0], "the earlier connection's SYN retransmit stays with it")
        XCTAssertEqual(records.map(\.requestID), ["fresh"])
        // The request count restarted too: a generated id numbers from 1 on the new connection.
        c.connected(connect(cookie: id, duration: 2 * ms, syn: 0))
        XCTAssertEqual(c.payload(sample(get(), .send, at: 1005 * ms, cookie: id)), [])
        records = c.payload(sample("HTTP/1.1 200 OK\r\n\r\n", .receive, at: 1006 * ms, cookie: id))
        XCTAssertEqual(records.map(\.requestID), ["sk-\(id)-1"])
        // A clean connect with a kernel cookie needs no table at all.
        c.connected(connect(cookie: 99, duration: 2 * ms, syn: 0))
        var other = sample(get("k"), .send, at: 1007 * ms, cookie: 99)
        other.connectNs = 2 * ms
        XCTAssertEqual(c.payload(other), [])
        records = c.payload(sample("HTTP/1.1 200 OK\r\n\r\n", .receive, at: 1008 * ms, cookie: 99))
        XCTAssertEqual(records.map(\.connectNs), [2 * ms])
    }

    func testSocketMemoryIsBounded() {
        var limits = Correlator.Limits()
        limits.maxSockets = 100
        var c = Correlator(limits: limits)
        for cookie in 1...1000 as ClosedRange<UInt64> {
            c.connected(connect(cookie: cookie, duration: ms, syn: 1))
        }
        XCTAssertGreaterThan(c.evictedSockets, 0)
        XCTAssertLessThanOrEqual(1000 - Int(c.evictedSockets), 101)
    }

    func testNonHTTPAndUnknownSocketsAreIgnored() {
        var c = Correlator()
        XCTAssertEqual(c.payload(PayloadSample(cookie: 7, pid: 1, tid: 1, comm: "x", direction: .send, timestampNs: 1,
                                               local: client, remote: server, bytes: [0x16, 0x03, 0x01, 0, 5])), [])
        XCTAssertEqual(c.payload(sample("HTTP/1.1 200 OK\r\n", .receive, at: 5)), [], "a response with no request")
        XCTAssertEqual(c.payload(sample(get("x"), .send, at: 5, cookie: 0)), [], "no cookie: cannot join")
        XCTAssertEqual(c.inFlightCount, 0)
    }
}

final class RequestStoreTests: XCTestCase {
    func record(_ id: String, ttfb: UInt64, start: UInt64, side: RequestRecord.Side = .client) -> RequestRecord {
        var r = RequestRecord(requestID: id, side: side, pid: 1, tid: 1, comm: "c", cookie: start, method: "GET",
                              target: "/", status: 200, local: .ipv4(127, 0, 0, 1, port: 1),
                              remote: .ipv4(127, 0, 0, 1, port: 2), startNs: start, connectNs: 0, synRetransmits: 0,
                              retransmits: 0, pollWaitNs: 0, ttfbNs: ttfb, end: .responded)
        r.durationNs = ttfb
        return r
    }

    func testRecentAndSlowestAreBoundedAndSearchable() {
        var store = RequestStore(recentCapacity: 3, slowestCapacity: 2)
        store.add(record("slow", ttfb: 9_000, start: 1))
        for i in 2...10 { store.add(record("r\(i)", ttfb: UInt64(i), start: UInt64(i))) }
        XCTAssertEqual(store.count, 3)
        XCTAssertEqual(store.evicted, 7)
        XCTAssertEqual(store.records(withID: "slow").count, 1, "the slowest survive eviction from the recent ring")
        XCTAssertEqual(store.records(withID: "r10").count, 1)
        XCTAssertTrue(store.records(withID: "r3").isEmpty)
    }

    func testClientAndServerShareAnID() {
        var store = RequestStore()
        store.add(record("x", ttfb: 5, start: 2, side: .client))
        store.add(record("x", ttfb: 4, start: 3, side: .server))
        XCTAssertEqual(store.records(withID: "x").map(\.side), [.client, .server])
    }

    func testReadings() {
        var r = record("x", ttfb: 310_000_000, start: 1)
        XCTAssertEqual(RequestReading.lines(r), ["no kernel-side delay: no SYN or data retransmits, no long waits — the time went elsewhere"])
        r.synRetransmits = 1
        r.connectNs = 1_002_000_000
        r.retransmits = 2
        r.pollWaitNs = 300_000_000
        XCTAssertEqual(RequestReading.lines(r), [
            "connect paid 1 SYN retransmit: the server dropped the first SYN — listen backlog full or packet loss",
            "2 segments were retransmitted while the request was in flight: packet loss on an open connection",
            "the thread spent 300 ms of the 310 ms to first byte waiting in poll: the time went to the peer or the network, not to this process",
        ])
    }
}

final class OpenMetricsTests: XCTestCase {
    func testExemplarsOnlyInOpenMetricsAndEOF() {
        var a = Aggregates()
        let r = RequestRecord(requestID: "test-123", side: .client, pid: 1, tid: 1, comm: "curl", cookie: 7,
                              method: "GET", target: "/", status: 200, local: .ipv4(127, 0, 0, 1, port: 40000),
                              remote: .ipv4(127, 0, 0, 1, port: 8080), startNs: 0, connectNs: 0, synRetransmits: 0,
                              retransmits: 0, pollWaitNs: 0, ttfbNs: 300_000_000, end: .responded)
        a.record(r, wallTimeSeconds: 1_795_296_294.1994)
        let om = ExpositionWriter.render(a, SelfObservation(), openMetrics: true)
        XCTAssertTrue(om.contains(#"tincture_http_request_duration_seconds_bucket{comm="curl",side="client",endpoint="127.0.0.1:8080",le="0.5"} 1 # {request_id="test-123"} 0.3 1795296294.199"# + "\n"), om)
        XCTAssertTrue(om.contains("# TYPE tincture_tcp_retransmits counter\n"), "OpenMetrics counter families drop _total")
        XCTAssertTrue(om.hasSuffix("# EOF\n"))
        let text = ExpositionWriter.render(a, SelfObservation())
        XCTAssertFalse(text.contains("request_id"))
        XCTAssertFalse(text.contains("# EOF"))
        XCTAssertTrue(text.contains("# TYPE tincture_tcp_retransmits_total counter\n"))
    }

    /// OpenMetrics allows 128 code points of exemplar labels: an ID that would not fit
    /// is still observed, without an exemplar, and the output stays valid.
    func testRequestIDTooLongForAnExemplarIsObservedWithoutOne() {
        var a = Aggregates()
        for (i, id) in [String(repeating: "a", count: 118), String(repeating: "b", count: 119)].enumerated() {
            let r = RequestRecord(requestID: id, side: .client, pid: 1, tid: 1, comm: "c\(i)", cookie: 7,
                                  method: "GET", target: "/", status: 200, local: .ipv4(127, 0, 0, 1, port: 40000),
                                  remote: .ipv4(127, 0, 0, 1, port: 8080), startNs: 0, connectNs: 0, synRetransmits: 0,
                                  retransmits: 0, pollWaitNs: 0, ttfbNs: 300_000_000, end: .responded)
            a.record(r, wallTimeSeconds: 1)
        }
        let om = ExpositionWriter.render(a, SelfObservation(), openMetrics: true)
        XCTAssertTrue(om.contains(#"{request_id="\#(String(repeating: "a", count: 118))"}"#))
        XCTAssertFalse(om.contains(String(repeating: "b", count: 119)))
        XCTAssertTrue(om.contains(#"tincture_http_request_duration_seconds_count{comm="c1",side="client",endpoint="127.0.0.1:8080"} 1"#), om)
    }

    func testPollWaitExemplarLandsOnTheKernelRow() {
        var a = Aggregates()
        var r = RequestRecord(requestID: "slow-1", side: .client, pid: 1, tid: 1, comm: "curl", cookie: 7,
                              method: "GET", target: "/", status: 200, local: .ipv4(127, 0, 0, 1, port: 40000),
                              remote: .ipv4(127, 0, 0, 1, port: 8080), startNs: 0, connectNs: 0, synRetransmits: 0,
                              retransmits: 0, pollWaitNs: 300_000_000, ttfbNs: 301_000_000, end: .responded)
        r.longestWait = (300_000_000, .poll, "curl")
        a.record(r, wallTimeSeconds: 1000)
        var counts = [UInt64](repeating: 0, count: Buckets.pollSeconds.count + 1)
        counts[9] = 1
        var o = SelfObservation()
        o.pollWaits = [PollHistogramRow(comm: "curl", syscall: "poll", counts: counts, sumNs: 300_000_000)]
        let om = ExpositionWriter.render(a, o, openMetrics: true)
        XCTAssertTrue(om.contains(#"tincture_poll_wait_seconds_bucket{comm="curl",syscall="poll",le="0.5"} 1 # {request_id="slow-1"} 0.3 1000.000"#), om)
    }

    func testAcceptNegotiation() {
        XCTAssertTrue(ExpositionWriter.wantsOpenMetrics(accept: "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"))
        XCTAssertFalse(ExpositionWriter.wantsOpenMetrics(accept: "text/plain"))
        XCTAssertFalse(ExpositionWriter.wantsOpenMetrics(accept: nil))
    }
}
