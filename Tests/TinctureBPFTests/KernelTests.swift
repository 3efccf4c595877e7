import Glibc
import Synchronization
import TinctureBPF
import TinctureCore
import XCTest

/// Loads the embedded object into the running kernel. Root only; on CI (CI=true)
/// a missing privilege or a probe that cannot load fails instead of skipping.
final class KernelTests: XCTestCase {
    override func setUpWithError() throws {
        if geteuid() != 0 {
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                XCTFail("BPF tests must run as root on CI")
            }
            throw XCTSkip("needs root to load BPF programs")
        }
    }

    func testAutoPlanAttachesEveryHook() {
        let plan = AttachPlanner.plan(requested: nil, facts: KernelFacts.probe())
        for entry in plan.entries {
            XCTAssertNotNil(entry.mode, "\(entry.hook.name): \(entry.attempts)")
        }
    }

    func testLoopbackConnectArrivesThroughTheRingBuffer() throws {
        let plan = AttachPlanner.plan(requested: nil, facts: KernelFacts.probe())
        let probes = try LoadedProbes(plan: plan)
        defer { probes.detach() }

        let received = Mutex<[ConnectEvent]>([])
        let reader = try probes.makeReader { bytes in
            if case .success(.connect(let e)) = EventDecoder.decode(bytes) {
                received.withLock { $0.append(e) }
            }
        }
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? reader.run()
            done.signal()
        }

        let (listener, port) = try Self.loopbackListener()
        defer { close(listener) }
        func connectOnce() {
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(client) }
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            let rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            XCTAssertEqual(rc, 0)
        }
        // A fast clean connect is counted in the kernel histogram and travels no event...
        connectOnce()
        // ...until a live subscriber asks for every event.
        XCTAssertTrue(probes.setStreamAll(true))
        connectOnce()

        let deadline = Date().addingTimeInterval(5)
        var mine: [ConnectEvent] = []
        while Date() < deadline {
            mine = received.withLock { $0.filter { $0.pid == UInt32(getpid()) && $0.destination.port == port } }
            if !mine.isEmpty { break }
            usleep(20_000)
        }
        usleep(100_000)  // a stray second event would have arrived by now
        mine = received.withLock { $0.filter { $0.pid == UInt32(getpid()) && $0.destination.port == port } }
        reader.stop()
        XCTAssertEqual(done.wait(timeout: .now() + 2), .success, "reader did not stop within its poll interval")

        XCTAssertEqual(mine.count, 1, "only the connect made while streaming travels")
        let rows = probes.connectHistogram().filter { $0.destination.port == port && $0.destination.host == "127.0.0.1" }
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows.first?.result, .ok)
        XCTAssertEqual(rows.first?.counts.reduce(0, +), 2, "the kernel histogram counts both connects")
        guard let event = mine.first else { return }
        XCTAssertEqual(event.result, .ok)
        XCTAssertNotEqual(event.tid, 0)
        XCTAssertEqual(event.destination.host, "127.0.0.1")
        XCTAssertEqual(event.synRetransmits, 0)
        XCTAssertEqual(event.mode, plan.entries.first?.mode)
        XCTAssertLessThan(event.durationNs, 1_000_000_000)
        let counters = probes.kernelCounters()
        XCTAssertEqual(counters.lost[.connect], 0)
    }

    static func loopbackListener() throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
                bind(fd, p, len)
                listen(fd, 8)
                return getsockname(fd, p, &len)
            }
        }
        return (fd, UInt16(bigEndian: sa.sin_port))
    }
}
