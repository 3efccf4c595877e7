import Glibc
import Synchronization
@testable import TinctureBPF
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
            // a fallback only where the kernel lacks what the preferred programs need
            if entry.hook == Hooks.httpPayload && entry.mode == .tracepoint && kernelHasSocketTracepoints() {
                XCTAssertEqual(entry.programs, entry.hook.programs(for: .tracepoint), "\(entry.attempts)")
            }
        }
    }

    func testLoopbackConnectArrivesThroughTheRingBuffer() throws {
        let plan = AttachPlanner.plan(requested: nil, facts: KernelFacts.probe())
        let probes = try LoadedProbes(plan: plan)
        defer { probes.detach() }

        let collector = try RingCollector(probes) { event -> ConnectEvent? in
            if case .connect(let e) = event { return e } else { return nil }
        }

        let (listener, port) = try Self.loopbackListener()
        defer { close(listener) }
        func connectOnce() {
            close(Self.connectLoopback(port))
        }
        // A fast clean connect is counted in the kernel histogram and travels no event...
        connectOnce()
        // ...until a live subscriber asks for every event.
        XCTAssertTrue(probes.setStreamAll(true))
        connectOnce()

        let deadline = Date().addingTimeInterval(5)
        var mine: [ConnectEvent] = []
        while Date() < deadline {
            mine = collector.events.withLock { $0.filter { $0.pid == UInt32(getpid()) && $0.destination.port == port } }
            if !mine.isEmpty { break }
            usleep(20_000)
        }
        usleep(100_000)  // a stray second event would have arrived by now
        mine = collector.events.withLock { $0.filter { $0.pid == UInt32(getpid()) && $0.destination.port == port } }
        XCTAssertTrue(collector.stop(), "reader did not stop within its poll interval")

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

    /// Both program sets the payload hook's tracepoint mode can load (the socket
    /// tracepoints, and the syscall tracepoints older kernels fall back to) capture
    /// HTTP heads through every kind of send and receive call, and nothing else.
    func testPayloadCaptureInEveryTracepointVariant() throws {
        let hook = Hooks.httpPayload
        for programs in hook.variants(for: .tracepoint) {
            try checkPayloadCapture(hook: hook, programs: programs)
        }
    }

    /// Every tracepoint fallback set loads and attaches on this kernel too (they serve
    /// older kernels: poll waits without epoll_pwait2, senders' owners and payloads
    /// without the socket tracepoints; the VM run proves them on Linux 6.1).
    func testEveryTracepointFallbackSetAttaches() {
        let facts = KernelFacts.probe()
        for hook in Hooks.all {
            for (mode, programs) in hook.fallbacks where mode == .tracepoint {
                XCTAssertNil(AttachPlanner.trial(hook, mode, programs, facts, ProbeConfig()), "\(hook.name) \(mode) fallback")
            }
        }
    }

    /// A mode whose preferred programs cannot load falls back to its other set and
    /// says why; when neither loads, both reasons are reported.
    func testFallbackProgramsAreChosenAndExplained() {
        let facts = KernelFacts.probe()
        let real = Hooks.httpPayload.variants(for: .tracepoint).last!
        let missing = ["tn_no_such_program"]
        let hook = HookSpec(name: "http_payload", summary: "test", programs: [.tracepoint: missing],
                            fallbacks: [.tracepoint: real])
        let plan = AttachPlanner.plan(requested: .tracepoint, facts: facts, hooks: [hook])
        XCTAssertEqual(plan.entries.first?.mode, .tracepoint)
        XCTAssertEqual(plan.entries.first?.programs, real)
        let note = plan.entries.first?.attempts.first?.note ?? ""
        XCTAssertTrue(note.contains("tn_no_such_program"), note)

        let broken = HookSpec(name: "http_payload", summary: "test", programs: [.tracepoint: missing],
                              fallbacks: [.tracepoint: ["tn_nor_this_one"]])
        let failed = AttachPlanner.plan(requested: .tracepoint, facts: facts, hooks: [broken])
        XCTAssertNil(failed.entries.first?.mode)
        let failure = failed.entries.first?.attempts.first?.failure ?? ""
        XCTAssertTrue(failure.contains("tn_no_such_program") && failure.contains("fallback: ")
                      && failure.contains("tn_nor_this_one"), failure)
    }

    /// A program two hooks share (the connect and payload hooks' tracepoint programs,
    /// which the retransmit hook also loads, and the set_state program the payload hook
    /// loads to hear of closes) does a hook's part only when that hook loads it: loaded
    /// for one hook alone, the other hooks' parts stay off. Each hook is loaded alone
    /// here and meets a connect, an HTTP request and the close of both its ends.
    func testSharedProgramsDoOnlyTheirLoadersParts() throws {
        var config = ProbeConfig()
        config.selfTgid = 0  // this test process is the traffic
        // (the payload hook's preferred set needs Linux 6.3's socket tracepoints)
        for hook in [Hooks.tcpConnect, Hooks.tcpRetransmit, Hooks.httpPayload]
        where hook != Hooks.httpPayload || kernelHasSocketTracepoints() {
            let plan = AttachPlan(entries: [.init(hook: hook, mode: .tracepoint, programs: hook.programs(for: .tracepoint),
                                                  attempts: [])])
            XCTAssertNotEqual(plan.roles, 0, hook.name)
            let probes = try LoadedProbes(plan: plan, config: config)
            defer { probes.detach() }
            XCTAssertTrue(probes.setStreamAll(true))  // connects would travel as events too
            let collector = try RingCollector(probes) { event -> Event? in
                switch event {
                case .connect, .payload: return event
                default: return nil
                }
            }

            let pair = try LoopbackPair()
            var closed = false
            defer { if !closed { pair.close() } }
            let (client, server, port) = (pair.client, pair.server, pair.port)
            let request = Array("GET /shared HTTP/1.1\r\nX-Request-ID: s-1\r\n\r\n".utf8)
            XCTAssertEqual(write(client, request, request.count), request.count)
            var buffer = [UInt8](repeating: 0, count: 256)
            XCTAssertEqual(read(server, &buffer, buffer.count), request.count)

            func mine() -> (connects: Int, payloads: Int, closes: Int) {
                collector.events.withLock { events in
                    var c = 0, p = 0, x = 0
                    for event in events {
                        switch event {
                        case .connect(let e) where e.destination.port == port: c += 1
                        case .payload(let s) where s.local.port == port || s.remote.port == port:
                            if s.direction == .close { x += 1 } else { p += 1 }
                        default: break
                        }
                    }
                    return (c, p, x)
                }
            }
            func settle(_ want: (connects: Int, payloads: Int, closes: Int)) -> (connects: Int, payloads: Int, closes: Int) {
                let deadline = Date().addingTimeInterval(5)
                while Date() < deadline && mine() != want { usleep(20_000) }
                usleep(100_000)  // anything a part left on would have arrived by now
                return mine()
            }
            let payloadHook = hook == Hooks.httpPayload
            var want = (connects: hook == Hooks.tcpConnect ? 1 : 0, payloads: payloadHook ? 2 : 0, closes: 0)
            let open = settle(want)
            // Both ends close with the request unanswered: each end's socket reports it.
            pair.close()
            closed = true
            want.closes = payloadHook ? 2 : 0
            let seen = settle(want)
            XCTAssertTrue(collector.stop(), "reader did not stop within its poll interval")
            XCTAssertEqual(open.closes, 0, "\(hook.name) alone: close reports while the sockets were open")
            XCTAssertEqual(seen.connects, want.connects, "\(hook.name) alone: connect events")
            XCTAssertEqual(seen.payloads, want.payloads, "\(hook.name) alone: payload captures")
            XCTAssertEqual(seen.closes, want.closes, "\(hook.name) alone: close reports")
            let counted = probes.connectHistogram().filter { $0.destination.port == port }.count
            XCTAssertEqual(counted, want.connects, "\(hook.name) alone: connects in the kernel histogram")
        }
    }

    /// The reader hands over every record, in order and intact, while the ring wraps
    /// several times: records of every length modulo 8, paced so the ring never fills.
    func testRingReaderKeepsEveryRecordAcrossWraps() throws {
        let hook = Hooks.httpPayload
        var config = ProbeConfig()
        config.selfTgid = 0  // this test process is the traffic
        let plan = AttachPlan(entries: [.init(hook: hook, mode: .tracepoint, programs: hook.variants(for: .tracepoint).last!,
                                              attempts: [])])
        let probes = try LoadedProbes(plan: plan, config: config)
        defer { probes.detach() }
        let collector = try RingCollector(probes) { event -> String? in
            if case .payload(let p) = event, p.direction == .send { return String(decoding: p.bytes, as: UTF8.self) }
            return nil
        }
        let pair = try LoopbackPair()
        defer { pair.close() }
        let (client, server) = (pair.client, pair.server)

        // ~600 bytes per record (header and 512 bytes of head): 8 000 records are ~5 ring laps.
        let count = 8000, pace = 500
        var sent: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        for i in 0..<count {
            let head = "GET /\(i) HTTP/1.1\r\nX-Pad: \(String(repeating: "p", count: 400 + i % 97))\r\n\r\n"
            sent.append(String(decoding: head.utf8.prefix(Int(config.payloadMax)), as: UTF8.self))
            let bytes = Array(head.utf8)
            XCTAssertEqual(write(client, bytes, bytes.count), bytes.count)
            var got = 0
            while got < bytes.count { got += max(0, read(server, &buffer, buffer.count)) }
            if i % pace == pace - 1 {
                let deadline = Date().addingTimeInterval(5)
                while Date() < deadline && collector.events.withLock({ $0.count }) < i + 1 { usleep(1000) }
            }
        }
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline && collector.events.withLock({ $0.count }) < count { usleep(10_000) }
        XCTAssertTrue(collector.stop(), "reader did not stop within its poll interval")
        let got = collector.events.withLock { $0 }
        XCTAssertEqual(probes.kernelCounters().lost[.payload], 0)
        XCTAssertEqual(got.count, count)
        if got.count == count {
            XCTAssertEqual(zip(got, sent).filter { $0.0 != $0.1 }.count, 0, "records changed or reordered")
        }
    }

    private func checkPayloadCapture(hook: HookSpec, programs: [String]) throws {
        var config = ProbeConfig()
        config.selfTgid = 0  // this test process is the traffic
        let plan = AttachPlan(entries: [.init(hook: hook, mode: .tracepoint, programs: programs, attempts: [])])
        let probes: LoadedProbes
        do {
            probes = try LoadedProbes(plan: plan, config: config)
        } catch {
            // The preferred set needs Linux 6.3's socket tracepoints; the fallback must load everywhere.
            if programs == hook.programs(for: .tracepoint) && !kernelHasSocketTracepoints() {
                print("payload variant \(programs) does not load here: \(error)")
                return
            }
            throw error
        }
        defer { probes.detach() }
        let collector = try RingCollector(probes) { event -> PayloadSample? in
            if case .payload(let p) = event { return p } else { return nil }
        }
        defer { XCTAssertTrue(collector.stop(), "reader did not stop within its poll interval") }

        let pair = try LoopbackPair()
        defer { pair.close() }
        let (client, server, port) = (pair.client, pair.server, pair.port)

        let heads = ["GET /one HTTP/1.1\r\nX-Request-ID: w-1\r\n\r\n",
                     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                     "POST /two HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                     "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"]
        var buffer = [UInt8](repeating: 0, count: 4096)
        // One iovec wrapped in a msghdr, for sendmsg/recvmsg.
        func withMessage(_ iov: inout iovec, _ body: (UnsafeMutablePointer<msghdr>) -> Int) -> Int {
            withUnsafeMutablePointer(to: &iov) { iovp -> Int in
                var msg = msghdr()
                msg.msg_iov = iovp
                msg.msg_iovlen = 1
                return body(&msg)
            }
        }
        func receive(_ fd: Int32, _ how: Int) -> Int {
            buffer.withUnsafeMutableBytes { raw -> Int in
                var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                switch how {
                case 0: return read(fd, raw.baseAddress, raw.count)
                case 1: return withUnsafeMutablePointer(to: &iov) { Int(readv(fd, $0, 1)) }
                case 2: return recv(fd, raw.baseAddress, raw.count, 0)
                default: return withMessage(&iov) { recvmsg(fd, $0, 0) }
                }
            }
        }
        func send(_ fd: Int32, _ text: String, _ how: Int) -> Int {
            var bytes = Array(text.utf8)
            return bytes.withUnsafeMutableBytes { raw -> Int in
                var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                switch how {
                case 0: return write(fd, raw.baseAddress, raw.count)
                case 1: return withUnsafeMutablePointer(to: &iov) { Int(writev(fd, $0, 1)) }
                case 2: return Glibc.send(fd, raw.baseAddress, raw.count, 0)
                default: return withMessage(&iov) { sendmsg(fd, $0, 0) }
                }
            }
        }
        // Not HTTP: one cheap check, no event.
        let junk = "\u{16}\u{03}\u{01} not http"
        XCTAssertEqual(send(client, junk, 0), junk.utf8.count)
        XCTAssertEqual(receive(server, 0), junk.utf8.count)
        // Each call kind once on each side: request client → server, response back.
        for how in 0..<4 {
            let request = heads[(how % 2) * 2], response = heads[(how % 2) * 2 + 1]
            XCTAssertEqual(send(client, request, how), request.utf8.count)
            XCTAssertEqual(receive(server, (how + 1) % 4), request.utf8.count)
            XCTAssertEqual(send(server, response, (how + 2) % 4), response.utf8.count)
            XCTAssertEqual(receive(client, (how + 3) % 4), response.utf8.count)
        }

        let me = UInt32(getpid())
        let deadline = Date().addingTimeInterval(5)
        var mine: [PayloadSample] = []
        while Date() < deadline {
            mine = collector.events.withLock { $0.filter { $0.pid == me } }
            if mine.count >= 16 { break }
            usleep(20_000)
        }
        usleep(100_000)
        mine = collector.events.withLock { $0.filter { $0.pid == me && ($0.local.port == port || $0.remote.port == port) } }
        let label = programs.joined(separator: "+")
        XCTAssertEqual(mine.count, 16, "\(label): four exchanges, four captures each")
        for (i, sample) in mine.enumerated() where mine.count == 16 {
            let exchange = i / 4, step = i % 4
            let text = heads[(exchange % 2) * 2 + (step < 2 ? 0 : 1)]
            XCTAssertEqual(String(decoding: sample.bytes, as: UTF8.self), text, "\(label) capture \(i)")
            XCTAssertEqual(sample.direction, step % 2 == 0 ? .send : .receive, "\(label) capture \(i)")
            // client steps 0 and 3, server steps 1 and 2: the server socket's local port is the listener's
            XCTAssertEqual(step == 1 || step == 2 ? sample.local.port : sample.remote.port, port, "\(label) capture \(i)")
        }
        XCTAssertEqual(probes.kernelCounters().lost[.payload], 0)
    }

    /// Whether the kernel has Linux 6.3's socket send/receive tracepoints (and the BTF
    /// the programs on them need). Looked up once per test run (kallsyms is megabytes);
    /// /proc files read as empty through Foundation: stdio here.
    private func kernelHasSocketTracepoints() -> Bool { Self.socketTracepoints }

    private static let socketTracepoints: Bool = {
        guard access("/sys/kernel/btf/vmlinux", R_OK) == 0, let file = fopen("/proc/kallsyms", "r") else { return false }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            if let line, strstr(line, " __traceiter_sock_recv_length") != nil { return true }
        }
        return false
    }()

    /// A socket connected to 127.0.0.1:`port` (the test fails if the connect does).
    static func connectLoopback(_ port: UInt16) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(rc, 0, "connect to 127.0.0.1:\(port)")
        return fd
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

/// A listener on 127.0.0.1 with one connection accepted: both ends and the port.
struct LoopbackPair {
    let listener: Int32, client: Int32, server: Int32, port: UInt16

    init() throws {
        (listener, port) = try KernelTests.loopbackListener()
        client = KernelTests.connectLoopback(port)
        server = accept(listener, nil, nil)
        XCTAssertGreaterThanOrEqual(server, 0)
    }

    func close() {
        for fd in [server, client, listener] { _ = Glibc.close(fd) }
    }
}

/// Reads the ring on a thread of its own and keeps the events `pick` selects.
final class RingCollector<T: Sendable>: @unchecked Sendable {
    let events = Mutex<[T]>([])
    private let reader: RingBufferReader
    private let done = DispatchSemaphore(value: 0)

    init(_ probes: LoadedProbes, pick: @escaping @Sendable (Event) -> T?) throws {
        let box = Box<T>()
        reader = try probes.makeReader { bytes in
            if case .success(let event) = EventDecoder.decode(bytes), let kept = pick(event) {
                box.collector?.events.withLock { $0.append(kept) }
            }
        }
        box.collector = self
        let reader = self.reader, done = self.done
        Thread.detachNewThread {
            try? reader.run()
            done.signal()
        }
    }

    /// Stops the reader; false if it did not stop within two seconds.
    func stop() -> Bool {
        reader.stop()
        return done.wait(timeout: .now() + 2) == .success
    }

    private final class Box<U: Sendable>: @unchecked Sendable {
        weak var collector: RingCollector<U>?
    }
}
