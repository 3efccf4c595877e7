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

    func testFullSocketMemoryForgetsTheLeastRecentlySeen() {
        var limits = Correlator.Limits()
        limits.maxSockets = 100
        var c = Correlator(limits: limits)
        let client = SocketAddress.ipv4(127, 0, 0, 1, port: 40000)
        let server = SocketAddress.ipv4(127, 0, 0, 1, port: 8080)
        func connect(_ cookie: UInt64) {
            c.connected(ConnectEvent(pid: 1, tid: 1, error: 0, endNs: 1000 + cookie, startNs: cookie, cookie: cookie,
                                     synRetransmits: 0, source: client, destination: server, established: true,
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
        for cookie in 1...101 as ClosedRange<UInt64> { connect(cookie) }
        XCTAssertEqual(c.evictedSockets, 10, "the 101st socket made room by forgetting a tenth")
        XCTAssertEqual(connectNs(ofFirstRequestOn: 10), 0, "among the oldest: its connect is forgotten")
        XCTAssertEqual(connectNs(ofFirstRequestOn: 11), 1000, "the rest still carry their connect")
        XCTAssertEqual(connectNs(ofFirstRequestOn: 101), 1000)
    }
}
