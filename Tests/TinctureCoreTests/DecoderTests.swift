import XCTest
@testable import TinctureCore

/// Fixtures are packed independently of the decoder (Python `struct.pack` with the
/// C header's field order), so a layout mistake on either side shows up here.
enum Fixtures {
    /// pid 4711, tid 4712, ok, 1.002 s, 1 SYN retransmit, 127.0.0.1:40000 → 127.0.0.1:8080, tracepoint, python3.
    static let connectV4 = hex("01000000671200006812000000000000809ef2628c040000005039278c040000efcdab0000000000010000000200409c901f0103000000007f0000010000000000000000000000007f000001000000000000000000000000707974686f6e33000000000000000000")
    /// pid 99, tid 100, ECONNREFUSED after 500 ns, [::1]:51000 → [2001:db8::1]:443, kprobe, curl.
    static let connectV6Refused = hex("0100000063000000640000006f000000749898000000000080969800000000000700000000000000000000000a0038c7bb010002000000000000000000000000000000000000000120010db80000000000000000000000016375726c000000000000000000000000")

    /// Owner pid 4711/tid 4712 (python3, client side), 3 segments, ESTABLISHED, srtt 250 µs,
    /// 127.0.0.1:40000 → 10.0.0.2:8080, cookie 77, tracepoint.
    static let retransmitV4 = hex("02000000671200006812000003000000001a7118020000004d00000000000000fa0000000200409c901f0103060000007f0000010000000000000000000000000a000002000000000000000000000000707974686f6e33000000000000000000")
    /// A listener's SYN-ACK re-sent: nginx[900], SYN_RECV, 127.0.0.1:8080 → :51000, fentry.
    static let synackV4 = hex("02000000840300008403000001000000001a7118020000000000000000000000000000000200901f38c70301030000007f0000010000000000000000000000007f0000010000000000000000000000006e67696e780000000000000000000000")
    /// curl[4711] tid 4713 waited 300 ms in epoll_wait (timeout 5000 ms) on fd 7 (cookie 4242), 1 ready, kprobe.
    static let pollEpoll = hex("030000006712000069120000050000000037178900000000009435770000000092100000000000008813000000000000010000000700000002000000000000006375726c000000000000000000000000")

    /// curl[4711] sent 18 bytes "GET / HTTP/1.1\r\n\r\n" from 127.0.0.1:40000 to :8080, cookie 99.
    static let payloadSend = hex("04000000671200006812000012000000c0cf6a00000000006300000000000000120000000200409c901f0103000000007f0000010000000000000000000000007f0000010000000000000000000000006375726c000000000000000000000000474554202f20485454502f312e310d0a0d0a")

    static func hex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            out.append(UInt8(s[i..<j], radix: 16)!)
            i = j
        }
        return out
    }
}

final class DecoderTests: XCTestCase {
    func testDecodesIPv4Connect() throws {
        XCTAssertEqual(Fixtures.connectV4.count, ConnectEventLayout.size)
        guard case .success(.connect(let e)) = EventDecoder.decode(Fixtures.connectV4) else {
            return XCTFail("did not decode")
        }
        XCTAssertEqual(e.pid, 4711)
        XCTAssertEqual(e.tid, 4712)
        XCTAssertEqual(e.durationNs, 1_002_000_000)
        XCTAssertEqual(e.cookie, 0xabcdef)
        XCTAssertEqual(e.synRetransmits, 1)
        XCTAssertEqual(e.source, .ipv4(127, 0, 0, 1, port: 40000))
        XCTAssertEqual(e.destination, .ipv4(127, 0, 0, 1, port: 8080))
        XCTAssertEqual(e.result, .ok)
        XCTAssertEqual(e.mode, .tracepoint)
        XCTAssertEqual(e.comm, "python3")
    }

    func testDecodesIPv6RefusedConnect() throws {
        guard case .success(.connect(let e)) = EventDecoder.decode(Fixtures.connectV6Refused) else {
            return XCTFail("did not decode")
        }
        XCTAssertEqual(e.result, .refused)
        XCTAssertEqual(e.result.name, "refused")
        XCTAssertEqual(e.durationNs, 500)
        XCTAssertEqual(e.source.description, "[::1]:51000")
        XCTAssertEqual(e.destination.description, "[2001:db8::1]:443")
        XCTAssertEqual(e.mode, .kprobe)
        XCTAssertEqual(e.comm, "curl")
    }

    func testDecodesRetransmit() {
        XCTAssertEqual(Fixtures.retransmitV4.count, RetransmitEventLayout.size)
        guard case .success(.retransmit(let r)) = EventDecoder.decode(Fixtures.retransmitV4) else {
            return XCTFail("did not decode")
        }
        XCTAssertEqual(r.pid, 4711)
        XCTAssertEqual(r.tid, 4712)
        XCTAssertEqual(r.segs, 3)
        XCTAssertEqual(r.cookie, 77)
        XCTAssertEqual(r.srttUs, 250)
        XCTAssertEqual(r.stateName, "ESTABLISHED")
        XCTAssertEqual(r.source, .ipv4(127, 0, 0, 1, port: 40000))
        XCTAssertEqual(r.destination, .ipv4(10, 0, 0, 2, port: 8080))
        XCTAssertEqual(r.endpoint.description, "10.0.0.2:8080", "a client's service is the remote end")
        XCTAssertTrue(r.ownerKnown && r.client && !r.synack)
        XCTAssertEqual(r.mode, .tracepoint)
        XCTAssertEqual(r.comm, "python3")

        guard case .success(.retransmit(let s)) = EventDecoder.decode(Fixtures.synackV4) else {
            return XCTFail("did not decode")
        }
        XCTAssertTrue(s.synack && s.ownerKnown && !s.client)
        XCTAssertEqual(s.stateName, "SYN_RECV")
        XCTAssertEqual(s.endpoint.description, "127.0.0.1:8080", "a server's service is the local end")
        XCTAssertEqual(s.comm, "nginx")
        XCTAssertEqual(s.mode, .fentry)
    }

    func testDecodesPoll() {
        XCTAssertEqual(Fixtures.pollEpoll.count, PollEventLayout.size)
        guard case .success(.poll(let p)) = EventDecoder.decode(Fixtures.pollEpoll) else {
            return XCTFail("did not decode")
        }
        XCTAssertEqual(p.syscall, .epollWait)
        XCTAssertEqual(p.syscall.name, "epoll_wait")
        XCTAssertEqual(p.durationNs, 300_000_000)
        XCTAssertEqual(p.timeoutMs, 5000)
        XCTAssertEqual(p.ready, 1)
        XCTAssertEqual(p.fd, 7)
        XCTAssertEqual(p.cookie, 4242)
        XCTAssertEqual(p.tid, 4713)
        XCTAssertEqual(p.mode, .kprobe)
        XCTAssertEqual(p.comm, "curl")

        var bad = Fixtures.pollEpoll
        bad[PollEventLayout.syscall] = 99
        XCTAssertEqual(EventDecoder.decode(bad), .failure(.badSyscall(99)))
        XCTAssertEqual(EventDecoder.decode(Array(Fixtures.pollEpoll.prefix(79))), .failure(.truncated(kind: 3, size: 79)))
        XCTAssertEqual(EventDecoder.decode(Array(Fixtures.retransmitV4.prefix(95))), .failure(.truncated(kind: 2, size: 95)))
    }

    func testDecodesPayloadWithItsVariableData() {
        guard case .success(.payload(let p)) = EventDecoder.decode(Fixtures.payloadSend) else {
            return XCTFail("did not decode")
        }
        XCTAssertEqual(p.bytes, Array("GET / HTTP/1.1\r\n\r\n".utf8))
        XCTAssertEqual(p.direction, .send)
        XCTAssertEqual(p.cookie, 99)
        XCTAssertEqual(p.remote.port, 8080)
        XCTAssertEqual(p.comm, "curl")
        // len claims more bytes than the record holds: truncated, not an out-of-bounds read.
        XCTAssertEqual(EventDecoder.decode(Array(Fixtures.payloadSend.dropLast())), .failure(.truncated(kind: 4, size: 113)))
    }

    func testTCPStateNames() {
        XCTAssertEqual(TCPState.name(2), "SYN_SENT")
        XCTAssertEqual(TCPState.name(10), "LISTEN")
        XCTAssertEqual(TCPState.name(99), "STATE_99")
    }

    func testTruncatedUnknownAndBadFamilyAreErrorsNotCrashes() {
        XCTAssertEqual(EventDecoder.decode([]), .failure(.truncated(kind: 0, size: 0)))
        XCTAssertEqual(EventDecoder.decode(Array(Fixtures.connectV4.prefix(103))),
                       .failure(.truncated(kind: 1, size: 103)))
        var unknown = Fixtures.connectV4
        unknown[0] = 99
        XCTAssertEqual(EventDecoder.decode(unknown), .failure(.unknownKind(99)))
        var badFamily = Fixtures.connectV4
        badFamily[ConnectEventLayout.family] = 7
        XCTAssertEqual(EventDecoder.decode(badFamily), .failure(.badFamily(7)))
    }

    func testCommFillingAllSixteenBytesAndInvalidUTF8() {
        var full = Fixtures.connectV4
        for i in 0..<16 { full[ConnectEventLayout.comm + i] = UInt8(ascii: "a") }
        guard case .success(.connect(let e)) = EventDecoder.decode(full) else { return XCTFail() }
        XCTAssertEqual(e.comm, String(repeating: "a", count: 16))

        var junk = Fixtures.connectV4
        junk[ConnectEventLayout.comm] = 0xff
        guard case .success(.connect(let j)) = EventDecoder.decode(junk) else { return XCTFail() }
        XCTAssertEqual(j.comm, "\u{FFFD}ython3")
    }

    func testDurationNeverUnderflows() {
        var swapped = Fixtures.connectV4
        // start after end (clock glitch or corrupted record): duration 0, not a trap.
        for i in 0..<8 { swapped.swapAt(ConnectEventLayout.tsNs + i, ConnectEventLayout.startNs + i) }
        guard case .success(.connect(let e)) = EventDecoder.decode(swapped) else { return XCTFail() }
        XCTAssertEqual(e.durationNs, 0)
    }

    func testResultFromSocketError() {
        XCTAssertEqual(ConnectResult(established: true, error: 0).name, "ok")
        XCTAssertEqual(ConnectResult(established: false, error: 111).name, "refused")
        XCTAssertEqual(ConnectResult(established: false, error: 110).name, "timeout")
        XCTAssertEqual(ConnectResult(established: false, error: 104).name, "reset")
        XCTAssertEqual(ConnectResult(established: false, error: 0).name, "aborted")
        XCTAssertEqual(ConnectResult(established: false, error: 113).name, "EHOSTUNREACH")
        XCTAssertEqual(ConnectResult(established: false, error: 4095).name, "errno_4095")
    }
}

final class SocketAddressTests: XCTestCase {
    func testIPv6Text() {
        let cases: [([UInt8], String)] = [
            ([UInt8](repeating: 0, count: 15) + [1], "::1"),
            ([UInt8](repeating: 0, count: 16), "::"),
            ([0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1], "2001:db8::1"),
            ([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55], "fe80::211:22ff:fe33:4455"),
            ([UInt8](repeating: 0, count: 10) + [0xff, 0xff, 10, 0, 0, 7], "::ffff:10.0.0.7"),
            ([0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0], "1:0:1:0:1:0:1:0"),
            ([0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], "1:0:0:1::1"),
            ([0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1], "1::1:0:0:1:1"),
        ]
        for (bytes, text) in cases {
            XCTAssertEqual(SocketAddress(family: .inet6, bytes: bytes, port: 1).host, text)
        }
        XCTAssertEqual(SocketAddress.ipv4(10, 1, 2, 3, port: 5432).description, "10.1.2.3:5432")
    }
}
