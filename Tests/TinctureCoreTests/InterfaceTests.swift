import Foundation
import XCTest
@testable import TinctureCore

final class EventJSONTests: XCTestCase {
    func testExactLineAndRoundTrip() throws {
        guard case .success(let event) = EventDecoder.decode(Fixtures.connectV4) else { return XCTFail() }
        let line = EventJSON.encode(event, realtimeOffsetNs: 1_000)
        XCTAssertEqual(line, #"{"kind":"connect","ts_ns":5001002001000,"start_ns":5000000001000,"pid":4711,"tid":4712,"comm":"python3","cookie":11259375,"family":"ipv4","saddr":"127.0.0.1","sport":40000,"daddr":"127.0.0.1","dport":8080,"duration_ns":1002000000,"result":"ok","errno":0,"syn_retransmits":1,"mode":"tracepoint"}"#)
        let record = try JSONDecoder().decode(EventRecord.self, from: Data(line.utf8))
        XCTAssertEqual(record.pid, 4711)
        XCTAssertEqual(record.durationNs, 1_002_000_000)
        XCTAssertEqual(record.synRetransmits, 1)
        XCTAssertEqual(record.result, "ok")
    }

    func testRetransmitAndPollLines() throws {
        guard case .success(let r) = EventDecoder.decode(Fixtures.retransmitV4),
              case .success(let p) = EventDecoder.decode(Fixtures.pollEpoll) else { return XCTFail() }
        XCTAssertEqual(EventJSON.encode(r, realtimeOffsetNs: 0), #"{"kind":"retransmit","ts_ns":9000000000,"pid":4711,"tid":4712,"comm":"python3","cookie":77,"family":"ipv4","saddr":"127.0.0.1","sport":40000,"daddr":"10.0.0.2","dport":8080,"state":"ESTABLISHED","segs":3,"srtt_us":250,"synack":false,"owner_known":true,"side":"client","mode":"tracepoint"}"#)
        XCTAssertEqual(EventJSON.encode(p, realtimeOffsetNs: 0), #"{"kind":"poll","ts_ns":2300000000,"start_ns":2000000000,"pid":4711,"tid":4713,"comm":"curl","syscall":"epoll_wait","duration_ns":300000000,"timeout_ms":5000,"ready":1,"fd":7,"cookie":4242,"mode":"kprobe"}"#)
        let rr = try JSONDecoder().decode(EventRecord.self, from: Data(EventJSON.encode(r, realtimeOffsetNs: 0).utf8))
        XCTAssertEqual(rr.segs, 3)
        XCTAssertEqual(rr.state, "ESTABLISHED")
        let pr = try JSONDecoder().decode(EventRecord.self, from: Data(EventJSON.encode(p, realtimeOffsetNs: 0).utf8))
        XCTAssertEqual(pr.syscall, "epoll_wait")
        XCTAssertEqual(pr.timeoutMs, 5000)
    }

    func testHostileCommStaysValidJSON() throws {
        guard case .success(.connect(var c)) = EventDecoder.decode(Fixtures.connectV4) else { return XCTFail() }
        c.comm = "a\"b\\c\n\u{1}\u{7f}é"
        let line = EventJSON.encode(.connect(c), realtimeOffsetNs: 0)
        let record = try JSONDecoder().decode(EventRecord.self, from: Data(line.utf8))
        XCTAssertEqual(record.comm, c.comm)
        XCTAssertTrue(line.contains(#""comm":"a\"b\\c\n\u0001\u007fé""#), line)
    }

    func testNumbersAtTheirExtremes() throws {
        let p = PollEvent(pid: UInt32.max, tid: 0, syscall: .poll, endNs: UInt64.max, startNs: 0, cookie: 0,
                          timeoutMs: Int64.min, ready: -1, fd: Int32.min, mode: nil, comm: "")
        let line = EventJSON.encode(.poll(p), realtimeOffsetNs: 0)
        XCTAssertTrue(line.contains(#""pid":4294967295,"tid":0,"comm":"""#), line)
        XCTAssertTrue(line.contains(#""duration_ns":18446744073709551615,"timeout_ms":-9223372036854775808,"ready":-1,"fd":-2147483648,"cookie":0,"mode":"unknown"}"#), line)
        let record = try JSONDecoder().decode(EventRecord.self, from: Data(line.utf8))
        XCTAssertEqual(record.timeoutMs, Int64.min)
        XCTAssertEqual(record.durationNs, UInt64.max)
    }
}

final class TailTests: XCTestCase {
    func record(duration: UInt64 = 1_002_000_000, syn: UInt32 = 1, result: String = "ok") -> EventRecord {
        var r = EventRecord(kind: "connect", tsNs: 0, pid: 4711, comm: "python3")
        r.tid = 4711
        r.cookie = 1
        r.saddr = "127.0.0.1"
        r.sport = 40000
        r.daddr = "127.0.0.1"
        r.dport = 8080
        r.durationNs = duration
        r.result = result
        r.synRetransmits = syn
        return r
    }

    func testFilters() {
        let r = record()
        XCTAssertTrue(TailFilter().matches(r))
        XCTAssertTrue(TailFilter(kinds: ["connect"], pid: 4711, comm: "python3", port: 8080,
                                 minDurationNs: 1_000_000_000).matches(r))
        XCTAssertTrue(TailFilter(port: 40000).matches(r))
        XCTAssertFalse(TailFilter(kinds: ["poll", "retransmit"]).matches(r))
        XCTAssertFalse(TailFilter(pid: 1).matches(r))
        XCTAssertFalse(TailFilter(comm: "python").matches(r))
        XCTAssertFalse(TailFilter(port: 80).matches(r))
        XCTAssertFalse(TailFilter(minDurationNs: 1_002_000_001).matches(r))
    }

    func testFiltersOnFieldsAKindLacks() {
        var poll = EventRecord(kind: "poll", tsNs: 0, pid: 1, comm: "x")
        poll.durationNs = 500_000_000
        XCTAssertFalse(TailFilter(port: 80).matches(poll), "poll waits carry no ports")
        XCTAssertTrue(TailFilter(minDurationNs: 1).matches(poll))
        var rtx = EventRecord(kind: "retransmit", tsNs: 0, pid: 1, comm: "x")
        rtx.dport = 80
        XCTAssertTrue(TailFilter(port: 80).matches(rtx))
        XCTAssertFalse(TailFilter(minDurationNs: 1).matches(rtx), "retransmits carry no duration")
    }

    func testRetransmitAndPollHumanLines() throws {
        guard case .success(let r) = EventDecoder.decode(Fixtures.retransmitV4),
              case .success(let p) = EventDecoder.decode(Fixtures.pollEpoll) else { return XCTFail() }
        let decoder = JSONDecoder()
        let rr = try decoder.decode(EventRecord.self, from: Data(EventJSON.encode(r, realtimeOffsetNs: 0).utf8))
        let pr = try decoder.decode(EventRecord.self, from: Data(EventJSON.encode(p, realtimeOffsetNs: 0).utf8))
        let f = TailFormatter(colour: false)
        XCTAssertEqual(f.line(rr, timeOfDay: "t"),
                       "t python3[4711]            retransmit 10.0.0.2:8080                           ESTABLISHED 3 segs, srtt 250 µs")
        XCTAssertEqual(f.line(pr, timeOfDay: "t"),
                       "t curl[4711]               poll       epoll_wait                       300 ms ready=1     (timeout 5000 ms, fd 7)")
    }

    func testHumanLine() {
        let line = TailFormatter(colour: false).line(record(), timeOfDay: "14:03:22.481")
        XCTAssertEqual(line, "14:03:22.481 python3[4711]            connect    127.0.0.1:8080                  1002 ms ok          (1 SYN retransmit)")
        let coloured = TailFormatter(colour: true).line(record(syn: 0, result: "refused"), timeOfDay: "t")
        XCTAssertTrue(coloured.contains("\u{1b}[31mrefused    \u{1b}[0m"), coloured)
    }

    func testDurationText() {
        XCTAssertEqual(TailFormatter.duration(412_000), "412 µs")
        XCTAssertEqual(TailFormatter.duration(3_460_000), "3.5 ms")
        XCTAssertEqual(TailFormatter.duration(1_002_400_000), "1002 ms")
        XCTAssertEqual(TailFormatter.duration(12_340_000_000), "12.3 s")
    }
}

final class ParsingTests: XCTestCase {
    func testDurations() {
        let cases: [(String, UInt64?)] = [
            ("250ms", 250_000_000), ("1s", 1_000_000_000), ("1.5s", 1_500_000_000), ("300us", 300_000),
            ("300µs", 300_000), ("100ns", 100), ("2m", 120_000_000_000), (" 5ms ", 5_000_000),
            ("", nil), ("ms", nil), ("5", nil), ("-1s", nil), ("1h", nil), ("1.2.3s", nil), ("abc", nil), ("1e3ms", nil),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(DurationParser.nanoseconds(text), expected, text)
        }
    }

    func testListenAddresses() {
        XCTAssertEqual(ListenAddress("127.0.0.1:9477"), ListenAddress(host: "127.0.0.1", port: 9477))
        XCTAssertEqual(ListenAddress(":9477"), ListenAddress(host: "0.0.0.0", port: 9477))
        XCTAssertEqual(ListenAddress("[::1]:80"), ListenAddress(host: "::1", port: 80))
        XCTAssertEqual(ListenAddress("[::1]:80")?.description, "[::1]:80")
        for bad in ["", "9477", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "::1:80", "[::1]80", "host:port", "1.2.3.4:-1"] {
            XCTAssertNil(ListenAddress(bad), bad)
        }
    }
}
