import CTinctureBPF
import TinctureCore
import XCTest

/// The Swift decoder's offsets against the C compiler's layout of the ABI header.
final class LayoutTests: XCTestCase {
    func testConnectEventLayoutMatchesCHeader() {
        typealias C = tn_connect_event
        typealias L = ConnectEventLayout
        XCTAssertEqual(MemoryLayout<C>.size, L.size)
        XCTAssertEqual(Int(TN_CONNECT_EVENT_SIZE), L.size)
        let offsets: [(PartialKeyPath<C>, Int, String)] = [
            (\C.kind, L.kind, "kind"), (\C.pid, L.pid, "pid"), (\C.tid, L.tid, "tid"),
            (\C.error, L.error, "error"), (\C.ts_ns, L.tsNs, "ts_ns"), (\C.start_ns, L.startNs, "start_ns"),
            (\C.cookie, L.cookie, "cookie"), (\C.syn_retransmits, L.synRetransmits, "syn_retransmits"),
            (\C.family, L.family, "family"), (\C.sport, L.sport, "sport"), (\C.dport, L.dport, "dport"),
            (\C.established, L.established, "established"), (\C.mode, L.mode, "mode"),
            (\C.saddr, L.saddr, "saddr"), (\C.daddr, L.daddr, "daddr"), (\C.comm, L.comm, "comm"),
        ]
        for (path, expected, name) in offsets {
            XCTAssertEqual(MemoryLayout<C>.offset(of: path), expected, name)
        }
    }

    func testKindAndModeValuesMatch() {
        XCTAssertEqual(EventKind.connect.rawValue, UInt32(TN_EVENT_CONNECT.rawValue))
        XCTAssertEqual(AttachMode(abiValue: UInt8(TN_MODE_FENTRY.rawValue)), .fentry)
        XCTAssertEqual(AttachMode(abiValue: UInt8(TN_MODE_KPROBE.rawValue)), .kprobe)
        XCTAssertEqual(AttachMode(abiValue: UInt8(TN_MODE_TRACEPOINT.rawValue)), .tracepoint)
    }
}
