import XCTest
@testable import TinctureCore

/// The per-event path's faster helpers give the same answers as the plain ones.
final class ConsumerPathTests: XCTestCase {
    func testIPv4DescriptionIsHostColonPort() {
        let cases: [([UInt8], UInt16)] = [
            ([0, 0, 0, 0], 0), ([255, 255, 255, 255], 65535), ([10, 1, 0, 10], 8080), ([127, 0, 0, 1], 9),
            ([192, 168, 100, 99], 10000), ([1, 22, 103, 4], 443),
        ]
        for (bytes, port) in cases {
            let a = SocketAddress(family: .inet, bytes: bytes, port: port)
            XCTAssertEqual(a.description, "\(bytes.map(String.init).joined(separator: ".")):\(port)")
        }
    }

    func testFullSocketMemoryForgetsTheHalfSeenLongestAgo() {
        var limits = Correlator.Limits()
        limits.maxSockets = 100
        var c = Correlator(limits: limits)
        let client = SocketAddress.ipv4(127, 0, 0, 1, port: 40000)
        let server = SocketAddress.ipv4(127, 0, 0, 1, port: 8080)
        // Connects that paid a SYN retransmit: the ones the correlator remembers (a clean
        // connect's cost reaches its first request inside the payload instead).
        func connect(_ cookie: UInt64) {
            c.connected(ConnectEvent(pid: 1, tid: 1, error: 0, endNs: 1000 + cookie, startNs: cookie, cookie: cookie,
                                     synRetransmits: 1, source: client, destination: server, established: true,
                                     mode: .tracepoint, comm: "curl"))
        }
        func connectNs(ofFirstRequestOn cookie: UInt64) -> UInt64? {
            func sample(_ text: String, _ direction: PayloadSample.Direction) -> PayloadSample {
                PayloadSample(cookie: cookie, pid: 1, tid: 1, comm: "curl", direction: direction, timestampNs: 5000,
                              local: client, remote: server, bytes: Array(text.utf8))
            }
            _ = c.payload(sample("GET / HTTP/1.1\r\nHost: s\r\n\r\n", .send))
            return c.payload(sample("HTTP/1.1 200 OK\r\n\r\n", .receive)).first?.connectNs
        }
        // Half the limit fills the recent generation; the 51st socket makes it the older one.
        for cookie in 1...60 as ClosedRange<UInt64> { connect(cookie) }
        XCTAssertEqual(connectNs(ofFirstRequestOn: 3), 1000, "seen again while older: moves to the recent half")
        for cookie in 61...101 as ClosedRange<UInt64> { connect(cookie) }
        XCTAssertEqual(c.evictedSockets, 49, "the 100th socket made room by forgetting the half seen longest ago")
        XCTAssertEqual(connectNs(ofFirstRequestOn: 50), 0, "among the oldest: its connect is forgotten")
        XCTAssertEqual(connectNs(ofFirstRequestOn: 51), 1000, "the rest still carry their connect")
        XCTAssertEqual(connectNs(ofFirstRequestOn: 101), 1000)
    }
}

final class SocketTableTests: XCTestCase {
    /// Against a dictionary: the same states, whatever the order of inserts, moves and rotations.
    func testAgreesWithADictionaryAndStaysBounded() {
        var table = SocketTable(limit: 1000)
        var model: [UInt64: UInt32] = [:]
        var rng = SystemRandomNumberGenerator()
        var forgotten = 0
        for step in 0..<20_000 {
            // Mostly new cookies, some seen again (from a small recent range), some colliding patterns.
            let cookie: UInt64 = step % 3 == 0 ? UInt64.random(in: 1...200, using: &rng) : UInt64(step) * 4096 + 1
            forgotten += table.update(cookie, keep: { $0 <= 10 }) { $0.requests += 1 }
            model[cookie, default: 0] += 1
            XCTAssertLessThanOrEqual(table.count, 1000 + 10)
        }
        XCTAssertGreaterThan(forgotten, 0)
        var remembered = 0
        for (cookie, requests) in model {
            guard let state = table.peek(cookie) else { continue }
            remembered += 1
            // A forgotten socket starts over when seen again, so it counts at most what the model does.
            XCTAssertLessThanOrEqual(state.requests, requests, "cookie \(cookie)")
        }
        XCTAssertEqual(remembered, table.count)
        for cookie in 1...10 as ClosedRange<UInt64> where model[cookie] != nil {
            XCTAssertNotNil(table.peek(cookie), "kept sockets survive rotations")
        }
    }

    func testRemovalKeepsEveryOtherEntryReachable() {
        // Cookies that share a home slot: moving one out of the older generation must not hide the rest.
        var table = SocketTable(limit: 400)
        let cookies = (1...200).map { UInt64($0) }
        for c in cookies { table.update(c, keep: { _ in false }) { $0.requests = UInt32(c) } }
        table.update(1001, keep: { _ in false }) { _ in }  // rotates: 1...200 are the older generation
        for c in cookies where c % 2 == 0 { table.update(c, keep: { _ in false }) { _ in } }  // moves evens out
        XCTAssertEqual(table.count, 201)
        for c in cookies { XCTAssertEqual(table.peek(c)?.requests, UInt32(c), "cookie \(c)") }
    }
}

final class ConnectSeriesPathTests: XCTestCase {
    /// Uncounted connects land in the series their labels name, whichever path (direct-mapped
    /// table, dictionary, or label strings) found it; colliding slots and odd comms included.
    func testCommCacheGivesWhatADirectDecodeGives() {
        var rng = SystemRandomNumberGenerator()
        let names: [[UInt8]] = (0..<40).map { i in
            switch i % 5 {
            case 0: return Array("curl".utf8)
            case 1: return Array("python3-\(i)".utf8)
            case 2: return (0..<16).map { _ in UInt8.random(in: 0x21...0x7e, using: &rng) }  // full, no NUL
            case 3: return [0xff, 0xfe, 0x41, 0xc3]  // not UTF-8
            default: return Array("w\(i)".utf8) + [0, 0x41, 0x42]  // bytes after the NUL
            }
        }
        for slots in [0, 4, 64] {
            var cache = CommCache(slots: slots)
            for _ in 0..<2_000 {
                var field = [UInt8](repeating: 0, count: 24)
                let name = names.randomElement(using: &rng)!
                field.replaceSubrange(4..<(4 + min(16, name.count)), with: name.prefix(16))
                field.withUnsafeBytes { b in
                    XCTAssertEqual(cache.string(b, at: 4), EventDecoder.decodeComm(b, at: 4), "\(name) with \(slots) slots")
                }
            }
        }
    }

    func testSeriesCacheNeverAnswersForAnotherKeyAndKeepsTwoPerSet() {
        func key(_ i: Int) -> SeriesKeyWords {
            SeriesKeyWords(comm: "c\(i % 7)", address: SocketAddress(family: .inet, bytes: [10, 0, UInt8(i / 256 % 256), UInt8(i % 256)],
                                                                    port: UInt16(1000 + i % 50)),
                           extra: UInt64(i % 3))!
        }
        var cache = SeriesCache()
        var truth: [Int: Int] = [:]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let i = Int.random(in: 0..<3000, using: &rng)
            if let hit = cache[key(i)] {
                XCTAssertEqual(hit.index, truth[i], "key \(i) answered with another key's series")
            } else {
                truth[i] = truth[i] ?? i * 10
                cache[key(i)] = (truth[i]!, false)
                XCTAssertEqual(cache[key(i)]?.index, truth[i])
            }
        }
        // Two keys that share a set both stay: find such a pair, use them alternately.
        var bySet: [Int: Int] = [:]
        var pair: (Int, Int)?
        for i in 0..<10_000 {
            let set = key(i).slot(SeriesCache.sets)
            if let other = bySet[set] { pair = (other, i); break }
            bySet[set] = i
        }
        guard let (a, b) = pair else { return XCTFail("no two keys share a set") }
        var fresh = SeriesCache()
        fresh[key(a)] = (1, false)
        fresh[key(b)] = (2, true)
        for _ in 0..<3 {
            XCTAssertEqual(fresh[key(a)]?.index, 1)
            XCTAssertEqual(fresh[key(b)]?.index, 2)
            XCTAssertEqual(fresh[key(b)]?.folded, true)
        }
    }

    func testEveryUncountedConnectLandsInItsLabelledSeries() {
        var a = Aggregates()
        var expected: [[String]: UInt64] = [:]
        let comms = ["curl", "python3", "a", "a\u{0}", "a very long command name", "nginx: worker"]
        for i in 0..<3000 {
            let comm = comms[i % comms.count]
            let port = UInt16(8000 + (i * 7) % 301)
            let established = i % 5 != 0
            let dest = i % 2 == 0 ? SocketAddress.ipv4(10, 0, UInt8(i % 3), 1, port: port)
                : SocketAddress(family: .inet6, bytes: [0xfd] + [UInt8](repeating: 0, count: 14) + [UInt8(i % 4)], port: port)
            let c = ConnectEvent(pid: 1, tid: 1, error: established ? 0 : (i % 3 == 0 ? 111 : 110), endNs: 2_000_000,
                                 startNs: 1_000_000, cookie: UInt64(i + 1), synRetransmits: 0, source: dest,
                                 destination: dest, established: established, mode: .tracepoint, comm: comm,
                                 countedInKernel: false)
            a.record(.connect(c))
            expected[[comm, dest.description, c.result.name], default: 0] += 1
        }
        let series = a.connectDuration.series
        XCTAssertEqual(series.count, expected.count)
        for (labels, count) in expected {
            XCTAssertEqual(series[labels]?.count, count, "\(labels)")
        }
    }
}

final class RequestSeriesPathTests: XCTestCase {
    /// Finished requests land in the series their labels name, with their exemplar on it.
    func testEveryRequestLandsInItsLabelledSeriesWithItsExemplar() {
        var a = Aggregates()
        var expected: [[String]: UInt64] = [:]
        for i in 0..<2000 {
            let comm = ["curl", "a", "a\u{0}", "a very long command name"][i % 4]
            let local = SocketAddress.ipv4(127, 0, 0, 1, port: UInt16(40000 + i % 7))
            let remote = SocketAddress.ipv4(10, 0, 0, UInt8(i % 5), port: UInt16(8000 + i % 3))
            let side: RequestRecord.Side = i % 3 == 0 ? .server : .client
            let r = RequestRecord(requestID: "r\(i)", side: side, pid: 1, tid: 1, comm: comm, cookie: UInt64(i + 1),
                                  method: "GET", target: "/", status: 200, local: local, remote: remote,
                                  startNs: 0, connectNs: 0, synRetransmits: 0, retransmits: 0, pollWaitNs: 0,
                                  ttfbNs: UInt64(1_000_000 * (1 + i % 50)), end: .responded)
            a.record(r, wallTimeSeconds: 1)
            expected[[comm, side.rawValue, r.endpoint.description], default: 0] += 1
        }
        let series = a.requestDuration.series
        XCTAssertEqual(series.count, expected.count)
        for (labels, count) in expected {
            XCTAssertEqual(series[labels]?.count, count, "\(labels)")
            XCTAssertFalse(a.requestDuration.exemplars[labels]?.isEmpty ?? true, "\(labels) has exemplars")
        }
    }
}
