import XCTest
@testable import TinctureCore

final class HTTPParserTests: XCTestCase {
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    func request(_ s: String) -> HTTPRequestHead? {
        if case .request(let r)? = HTTPParser.parse(bytes(s)) { return r }
        return nil
    }

    func testRequestWithHeaders() throws {
        let r = try XCTUnwrap(request("GET /api/v1/users?id=7 HTTP/1.1\r\nHost: svc\r\nX-Request-ID:  test-123 \r\nAccept: */*\r\n\r\n"))
        XCTAssertEqual(r.method, "GET")
        XCTAssertEqual(r.target, "/api/v1/users?id=7")
        XCTAssertTrue(r.complete)
        XCTAssertEqual(r.header("x-request-id"), "test-123")
        XCTAssertEqual(r.header("HOST"), "svc")
        XCTAssertEqual(r.headers.count, 3)
    }

    func testKeepingOnlyNamedHeaders() throws {
        let text = "GET / HTTP/1.1\r\nHost: h\r\nX-Request-ID: a\r\n b\r\nAccept: */*\r\n c\r\n\r\n"
        guard case .request(let r)? = HTTPParser.parse(bytes(text), keeping: HTTPParser.HeaderNames(["x-REQUEST-id"]))
        else { return XCTFail() }
        XCTAssertEqual(r.headers.map(\.name), ["x-request-id"])
        XCTAssertEqual(r.header("X-Request-ID"), "a b", "its continuation line kept, the other's dropped")
        XCTAssertTrue(r.complete)
    }

    func testBareLineFeedsFoldedHeadersAndOddCase() throws {
        let r = try XCTUnwrap(request("POST /submit HTTP/1.0\nx-ReQuEsT-iD: abc\nX-Long: first\n   second\n\tthird\n\n{\"a\":1}"))
        XCTAssertEqual(r.method, "POST")
        XCTAssertEqual(r.header("X-Request-Id"), "abc")
        XCTAssertEqual(r.header("x-long"), "first second third")
        XCTAssertTrue(r.complete)
    }

    func testTruncatedHeadKeepsCompleteLinesOnly() throws {
        let r = try XCTUnwrap(request("GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: cut-he"))
        XCTAssertFalse(r.complete)
        XCTAssertEqual(r.header("host"), "a")
        XCTAssertNil(r.header("x-request-id"), "a header cut by the capture limit is not trusted")
    }

    func testRequestLineCutByTheCaptureLimit() throws {
        let long = "GET /" + String(repeating: "a", count: 600)
        let r = try XCTUnwrap(request(long))
        XCTAssertFalse(r.complete)
        XCTAssertEqual(r.target.count, HTTPParser.maxTargetLength)
        XCTAssertNil(request("FROB /" + String(repeating: "a", count: 600)), "unknown method with no version: not trusted")
        XCTAssertNotNil(request("GET / HTTP/1."))
    }

    func testResponses() {
        XCTAssertEqual(HTTPParser.parse(bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")), .response(.init(status: 200)))
        XCTAssertEqual(HTTPParser.parse(bytes("HTTP/1.0 404 Not Found\r\n")), .response(.init(status: 404)))
        XCTAssertEqual(HTTPParser.parse(bytes("HTTP/1.1 503\r\n")), .response(.init(status: 503)))
        XCTAssertNil(HTTPParser.parse(bytes("HTTP/1.1 20 OK\r\n")))
        XCTAssertNil(HTTPParser.parse(bytes("HTTP/1.1 2000 OK\r\n")))
        XCTAssertNil(HTTPParser.parse(bytes("HTTP/2 200\r\n")))
    }

    func testNotHTTP() {
        let cases: [[UInt8]] = [
            [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03],  // TLS ClientHello
            bytes("get / HTTP/1.1\r\n\r\n"),             // lower-case method
            bytes("GET  / HTTP/1.1\r\n\r\n"),            // two spaces
            bytes("GET / HTTP/2.0\r\n\r\n"),
            bytes("GET / HTTP/1.1 junk\r\n\r\n"),
            bytes("SSH-2.0-OpenSSH_9.2\r\n"),
            bytes("*1\r\n$4\r\nPING\r\n"),               // Redis
            bytes("GET"), bytes("GET "), bytes(""), [0, 0, 0, 0],
            bytes("GET \u{7f}/ HTTP/1.1\r\n\r\n"),
            bytes("VERYLONGMETHODNAMEX / HTTP/1.1\r\n\r\n"),
        ]
        for c in cases { XCTAssertNil(HTTPParser.parse(c), "\(c)") }
    }

    func testMalformedHeaderLinesAreSkippedNotFatal() throws {
        let r = try XCTUnwrap(request("GET / HTTP/1.1\r\nno colon here\r\n: empty name\r\nBad Name: x\r\nX-Ctl: a\u{1}b\r\nX-Request-ID: ok\r\n\r\n"))
        XCTAssertEqual(r.headers.map(\.name), ["x-request-id"])
    }

    /// Random bytes and mutations of valid heads: never a trap, and whatever parses
    /// keeps the invariants the correlator relies on.
    func testFuzzRandomAndMutatedInput() {
        var rng = SplitMix64(seed: 0x7171_2026)
        let seeds = [
            "GET /a HTTP/1.1\r\nX-Request-ID: r1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "POST /x HTTP/1.0\nA: b\n c\n\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n y\r\nx-REQUEST-id: a\r\n b\r\nX-Correlation-ID: c\r\n\r\n",
        ].map(bytes)
        let extractor = RequestIDExtractor()
        for round in 0..<20_000 {
            var input: [UInt8]
            if round % 4 == 0 {
                input = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                input = seeds[Int(rng.next() % UInt64(seeds.count))]
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    guard !input.isEmpty else { break }
                    let at = Int(rng.next() % UInt64(input.count))
                    switch rng.next() % 4 {
                    case 0: input[at] = UInt8(truncatingIfNeeded: rng.next())
                    case 1: input.remove(at: at)
                    case 2: input.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                    default: input = Array(input.prefix(at))
                    }
                }
            }
            switch HTTPParser.parse(input) {
            case .request(let r)?:
                XCTAssertFalse(r.method.isEmpty)
                XCTAssertTrue(r.method.utf8.allSatisfy { $0 >= 0x41 && $0 <= 0x5a || $0 == 0x2d || $0 == 0x5f })
                XCTAssertLessThanOrEqual(r.target.count, HTTPParser.maxTargetLength)
                XCTAssertLessThanOrEqual(r.headers.count, HTTPParser.maxHeaders)
                if let id = extractor.requestID(of: r) {
                    XCTAssertLessThanOrEqual(id.utf8.count, RequestIDExtractor.maxLength)
                    XCTAssertTrue(id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f })
                }
                // The correlator's parse keeps only the ID headers: same request, same ID.
                guard case .request(let kept)? = HTTPParser.parse(input, keeping: extractor.headerNames) else {
                    XCTFail("parsed in full but not when keeping only the ID headers: \(input)")
                    break
                }
                XCTAssertEqual(kept.method, r.method)
                XCTAssertEqual(kept.target, r.target)
                XCTAssertEqual(extractor.requestID(of: kept), extractor.requestID(of: r), "\(input)")
            case .response(let s)?:
                XCTAssertTrue((100...999).contains(s.status))
            case nil:
                break
            }
        }
    }
}

final class RequestIDTests: XCTestCase {
    func head(_ headers: [(String, String)]) -> HTTPRequestHead {
        HTTPRequestHead(method: "GET", target: "/", headers: headers.map { ($0.0.lowercased(), $0.1) }, complete: true)
    }

    func testDefaultOrder() {
        let e = RequestIDExtractor()
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        XCTAssertEqual(e.requestID(of: head([("traceparent", tp), ("X-Correlation-ID", "corr"), ("X-Request-ID", "req")])), "req")
        XCTAssertEqual(e.requestID(of: head([("traceparent", tp), ("X-Correlation-ID", "corr")])), "corr")
        XCTAssertEqual(e.requestID(of: head([("traceparent", tp)])), "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertNil(e.requestID(of: head([("Host", "x")])))
    }

    func testConfiguredHeaders() {
        let e = RequestIDExtractor(headers: ["X-Amzn-Trace-Id"])
        XCTAssertEqual(e.requestID(of: head([("x-amzn-trace-id", "Root=1-abc"), ("X-Request-ID", "req")])), "Root=1-abc")
    }

    func testUnusableValuesFallThrough() {
        let e = RequestIDExtractor()
        XCTAssertEqual(e.requestID(of: head([("X-Request-ID", "has space"), ("X-Correlation-ID", "c")])), "c")
        XCTAssertEqual(e.requestID(of: head([("X-Request-ID", String(repeating: "a", count: 129)), ("X-Correlation-ID", "c")])), "c")
        XCTAssertEqual(e.requestID(of: head([("X-Request-ID", ""), ("X-Correlation-ID", "c")])), "c")
    }

    func testTraceparentValidation() {
        typealias E = RequestIDExtractor
        XCTAssertEqual(E.traceID(fromTraceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                       "0af7651916cd43dd8448eb211c80319c")
        XCTAssertNil(E.traceID(fromTraceparent: "00-00000000000000000000000000000000-b7ad6b7169203331-01"), "all-zero trace-id")
        XCTAssertNil(E.traceID(fromTraceparent: "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"), "all-zero parent")
        XCTAssertNil(E.traceID(fromTraceparent: "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"), "upper case")
        XCTAssertNil(E.traceID(fromTraceparent: "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), "version ff")
        XCTAssertNil(E.traceID(fromTraceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"))
        XCTAssertEqual(E.traceID(fromTraceparent: "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future"),
                       "0af7651916cd43dd8448eb211c80319c")
        XCTAssertNil(E.traceID(fromTraceparent: "garbage"))
    }
}

/// Deterministic generator for the fuzz test (reproducible failures).
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
