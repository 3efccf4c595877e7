import CTinctureBPF
@testable import TinctureBPF
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
            (\C.established, L.established, "established"), (\C.mode, L.mode, "mode"), (\C.flags, L.flags, "flags"),
            (\C.saddr, L.saddr, "saddr"), (\C.daddr, L.daddr, "daddr"), (\C.comm, L.comm, "comm"),
        ]
        for (path, expected, name) in offsets {
            XCTAssertEqual(MemoryLayout<C>.offset(of: path), expected, name)
        }
    }

    func testRetransmitAndPollEventLayoutsMatchCHeader() {
        typealias R = tn_retransmit_event
        typealias RL = RetransmitEventLayout
        XCTAssertEqual(MemoryLayout<R>.size, RL.size)
        let r: [(PartialKeyPath<R>, Int, String)] = [
            (\R.kind, RL.kind, "kind"), (\R.pid, RL.pid, "pid"), (\R.tid, RL.tid, "tid"), (\R.segs, RL.segs, "segs"),
            (\R.ts_ns, RL.tsNs, "ts_ns"), (\R.cookie, RL.cookie, "cookie"), (\R.srtt_us, RL.srttUs, "srtt_us"),
            (\R.family, RL.family, "family"), (\R.sport, RL.sport, "sport"), (\R.dport, RL.dport, "dport"),
            (\R.state, RL.state, "state"), (\R.mode, RL.mode, "mode"), (\R.flags, RL.flags, "flags"),
            (\R.saddr, RL.saddr, "saddr"), (\R.daddr, RL.daddr, "daddr"), (\R.comm, RL.comm, "comm"),
        ]
        for (path, expected, name) in r { XCTAssertEqual(MemoryLayout<R>.offset(of: path), expected, name) }
        XCTAssertEqual(UInt8(TN_RETRANSMIT_SYNACK), RL.flagSynack)
        XCTAssertEqual(UInt8(TN_RETRANSMIT_OWNER_KNOWN), RL.flagOwnerKnown)
        XCTAssertEqual(UInt8(TN_RETRANSMIT_CLIENT), RL.flagClient)

        typealias P = tn_poll_event
        typealias PL = PollEventLayout
        XCTAssertEqual(MemoryLayout<P>.size, PL.size)
        let p: [(PartialKeyPath<P>, Int, String)] = [
            (\P.kind, PL.kind, "kind"), (\P.pid, PL.pid, "pid"), (\P.tid, PL.tid, "tid"),
            (\P.syscall, PL.syscall, "syscall"), (\P.ts_ns, PL.tsNs, "ts_ns"), (\P.start_ns, PL.startNs, "start_ns"),
            (\P.cookie, PL.cookie, "cookie"), (\P.timeout_ms, PL.timeoutMs, "timeout_ms"), (\P.ready, PL.ready, "ready"),
            (\P.fd, PL.fd, "fd"), (\P.mode, PL.mode, "mode"), (\P.comm, PL.comm, "comm"),
        ]
        for (path, expected, name) in p { XCTAssertEqual(MemoryLayout<P>.offset(of: path), expected, name) }
    }

    func testPayloadEventLayoutMatchesCHeader() {
        typealias P = tn_payload_event
        typealias L = PayloadEventLayout
        XCTAssertEqual(MemoryLayout<P>.offset(of: \P.data), L.headerSize)
        XCTAssertEqual(Int(TN_PAYLOAD_HEADER_SIZE), L.headerSize)
        XCTAssertEqual(Int(TN_PAYLOAD_MAX), L.maxData)
        let fields: [(PartialKeyPath<P>, Int, String)] = [
            (\P.kind, L.kind, "kind"), (\P.pid, L.pid, "pid"), (\P.tid, L.tid, "tid"), (\P.len, L.len, "len"),
            (\P.ts_ns, L.tsNs, "ts_ns"), (\P.cookie, L.cookie, "cookie"), (\P.total, L.total, "total"),
            (\P.family, L.family, "family"), (\P.sport, L.sport, "sport"), (\P.dport, L.dport, "dport"),
            (\P.direction, L.direction, "direction"), (\P.mode, L.mode, "mode"), (\P.connect_us, L.connectUs, "connect_us"), (\P.saddr, L.saddr, "saddr"),
            (\P.daddr, L.daddr, "daddr"), (\P.comm, L.comm, "comm"),
        ]
        for (path, expected, name) in fields { XCTAssertEqual(MemoryLayout<P>.offset(of: path), expected, name) }
        XCTAssertEqual(EventKind.payload.rawValue, UInt32(TN_EVENT_PAYLOAD.rawValue))
    }

    func testPayloadDirectionsMatchCHeader() {
        XCTAssertEqual(Int32(PayloadEventLayout.directionSend), TN_DIR_SEND)
        XCTAssertEqual(Int32(PayloadEventLayout.directionReceive), TN_DIR_RECV)
        XCTAssertEqual(Int32(PayloadEventLayout.directionClose), TN_DIR_CLOSE)
    }

    func testPollBucketsMatchTheKernelSide() {
        let kernel = withUnsafeBytes(of: tn_poll_bounds_ns) { Array($0.bindMemory(to: UInt64.self)) }
        XCTAssertEqual(kernel.count, Int(TN_POLL_BUCKETS))
        XCTAssertEqual(kernel.map { Double($0) / 1e9 }, Buckets.pollSeconds)
        XCTAssertEqual(MemoryLayout<tn_poll_hist>.size, (Int(TN_POLL_BUCKETS) + 2) * 8)
    }

    func testConnectBucketsMatchTheKernelSide() {
        let kernel = withUnsafeBytes(of: tn_connect_bounds_ns) { Array($0.bindMemory(to: UInt64.self)) }
        XCTAssertEqual(kernel.count, Int(TN_CONNECT_BUCKETS))
        XCTAssertEqual(kernel.map { Double($0) / 1e9 }, Buckets.connectSeconds)
        XCTAssertEqual(MemoryLayout<tn_connect_hist>.size, (Int(TN_CONNECT_BUCKETS) + 2) * 8)
        XCTAssertEqual(MemoryLayout<tn_connect_hist_key>.size, 40)
    }

    func testSyscallValuesMatch() {
        XCTAssertEqual(WaitSyscall.poll.rawValue, UInt32(TN_SC_POLL.rawValue))
        XCTAssertEqual(WaitSyscall.select.rawValue, UInt32(TN_SC_SELECT.rawValue))
        XCTAssertEqual(WaitSyscall.epollPwait2.rawValue, UInt32(TN_SC_EPOLL_PWAIT2.rawValue))
        XCTAssertEqual(EventKind.retransmit.rawValue, UInt32(TN_EVENT_RETRANSMIT.rawValue))
        XCTAssertEqual(EventKind.poll.rawValue, UInt32(TN_EVENT_POLL.rawValue))
    }

    func testKindAndModeValuesMatch() {
        XCTAssertEqual(EventKind.connect.rawValue, UInt32(TN_EVENT_CONNECT.rawValue))
        XCTAssertEqual(AttachMode(abiValue: UInt8(TN_MODE_FENTRY.rawValue)), .fentry)
        XCTAssertEqual(AttachMode(abiValue: UInt8(TN_MODE_KPROBE.rawValue)), .kprobe)
        XCTAssertEqual(AttachMode(abiValue: UInt8(TN_MODE_TRACEPOINT.rawValue)), .tracepoint)
    }

    /// Every counter the kernel side keeps past the ring-loss slots is exported, once.
    func testEveryKernelCounterHasAReason() {
        let slots = LoadedProbes.untrackedCounters.map(\.slot)
        XCTAssertEqual(slots.sorted(), Array(UInt32(TN_EVENT_KIND_MAX.rawValue)..<UInt32(TN_COUNTER_MAX.rawValue)))
        XCTAssertEqual(Set(LoadedProbes.untrackedCounters.map(\.reason)).count, slots.count)
    }
}
