import Glibc
import Synchronization
import TinctureBPF
import TinctureCore

/// How `tincture agent` is configured (flags; see `tincture agent --help`).
public struct AgentConfig: Sendable {
    public static let defaultListen = ListenAddress(host: "127.0.0.1", port: 9477)
    public static let defaultEventsSocket = "/run/tincture/events.sock"

    public var listen: ListenAddress = defaultListen
    public var eventsSocket: String = defaultEventsSocket
    /// nil: auto.
    public var attach: AttachMode?
    public var seriesCap: Int = Aggregates.defaultSeriesCap
    public var subscriberQueue: Int = 4096
    /// Poll waits at least this long are sent as events; all are counted.
    public var pollMinNs: UInt64 = ProbeConfig.defaultPollMinNs
    /// Clean connects at least this long are sent as events; all are counted.
    public var connectMinNs: UInt64 = ProbeConfig.defaultConnectMinNs
    /// Headers whose first present value is a request's ID.
    public var requestIDHeaders: [String] = RequestIDExtractor.defaultHeaders
    /// Bytes of each HTTP payload the kernel copies.
    public var payloadMax: UInt32 = ProbeConfig.defaultPayloadMax

    public init() {}
}

/// The running agent: probes, the ring-buffer reader thread, the scrape server and
/// the event stream, until SIGTERM or SIGINT.
public final class Agent: @unchecked Sendable {
    // @unchecked: `aggregates` lives in a Mutex; the rest is set before threads start.
    public static let version = "0.1.0"

    private let config: AgentConfig
    /// Everything the reader thread updates per event, behind one lock that scrapes
    /// and `explain` queries take briefly.
    private let state: Mutex<EventPipeline>
    private let realtimeOffsetNs: Int64
    private var probes: LoadedProbes?
    private var stream: EventStream?
    private let readerAlive = Atomic<Bool>(false)
    private let readerFailed = Atomic<Bool>(false)
    private let lastScrapeNs = Atomic<UInt64>(0)

    public init(config: AgentConfig) {
        self.config = config
        state = Mutex(EventPipeline(aggregates: Aggregates(seriesCap: config.seriesCap),
                            correlator: Correlator(extractor: RequestIDExtractor(headers: config.requestIDHeaders))))
        realtimeOffsetNs = Clock.realtimeMinusMonotonicNs()
    }

    /// Runs until a termination signal; returns the process exit status.
    public func run() -> Int32 {
        let missing = Privileges.missing()
        if !missing.isEmpty {
            Log.error("tincture agent must run as root or with CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to load BPF programs; missing: \(missing.joined(separator: ", ")). Try: sudo tincture agent")
            return 77
        }
        // Block the termination signals before any thread starts, so only sigwait sees them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        signal(SIGPIPE, SIG_IGN)

        let facts = KernelFacts.probe()
        guard facts.btf else {
            Log.error("this kernel has no BTF (/sys/kernel/btf/vmlinux missing); Tincture's CO-RE programs need CONFIG_DEBUG_INFO_BTF=y (kernel \(facts.release))")
            return 1
        }
        guard facts.ringBuffer else {
            Log.error("this kernel has no BPF ring buffer (needs Linux 5.8 or later; running \(facts.release))")
            return 1
        }
        var probeConfig = ProbeConfig()
        probeConfig.pollMinNs = config.pollMinNs
        probeConfig.connectMinNs = config.connectMinNs
        probeConfig.payloadMax = config.payloadMax
        // Trying every mode takes a while; a SIGTERM meanwhile ends the start-up at once.
        func terminationPending() -> Bool {
            var pending = sigset_t()
            return sigpending(&pending) == 0 && (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1)
        }
        let plan = AttachPlanner.plan(requested: config.attach, facts: facts, config: probeConfig,
                                      stop: terminationPending)
        if terminationPending() {
            Log.info("received a termination signal while starting; exiting before attaching anything")
            return 0
        }
        for entry in plan.entries {
            if let mode = entry.mode {
                let note = entry.attempts.first { $0.mode == mode }?.note.map { "; \($0)" } ?? ""
                Log.info("hook \(entry.hook.name): attached via \(mode.rawValue) (\(Hooks.attachPoints(entry.hook, mode, programs: entry.programs))\(note))")
            } else {
                let reasons = entry.attempts.map { "\($0.mode.rawValue): \($0.failure ?? "ok")" }.joined(separator: "; ")
                Log.warning("hook \(entry.hook.name): not attached, no allowed mode works here — \(reasons)")
            }
        }
        guard !plan.attachedHooks.isEmpty else {
            Log.error("no hook could attach with --attach \(config.attach?.rawValue ?? "auto"); run `tincture check` for the kernel's facts")
            return 1
        }

        do {
            let probes = try LoadedProbes(plan: plan, config: probeConfig)
            self.probes = probes
            let server = try MetricsServer(address: config.listen) { [self] path, accept in route(path, accept) }
            let stream = try EventStream(path: config.eventsSocket, queueCapacity: config.subscriberQueue,
                                         hello: { [self] in helloLine() },
                                         subscribersChanged: { count in
                                             // Before the greeting: a tail sees every connect from its first line.
                                             if !probes.setStreamAll(count > 0) {
                                                 Log.warning("could not switch the kernel's event stream (map tn_control)")
                                             }
                                         },
                                         explain: { [self] id in explainLines(id) })
            self.stream = stream
            let reader = try probes.makeReader(handler: { [self] bytes in consume(bytes) }, idle: { [self] in idle() })

            // Everything privileged is done: probes attached, sockets bound.
            do {
                try Capabilities.dropAll()
            } catch {
                Log.warning("could not drop capabilities: \(error); continuing with them")
            }

            readerAlive.store(true, ordering: .relaxed)
            let readerThread = OSThread(name: "tn-ringbuf") { [self] in
                do {
                    try reader.run()
                } catch {
                    // Without the reader the agent is blind: stop, and exit non-zero so systemd restarts it.
                    Log.error("ring buffer reader stopped: \(error)")
                    readerFailed.store(true, ordering: .relaxed)
                    kill(getpid(), SIGTERM)
                }
                readerAlive.store(false, ordering: .relaxed)
            }
            server.start()
            stream.start()
            let port = server.boundPort
            Log.info("serving /metrics on http://\(ListenAddress(host: config.listen.host, port: port))/metrics, live events on \(config.eventsSocket) (tincture tail)")

            var received: Int32 = 0
            sigwait(&signals, &received)
            if !readerFailed.load(ordering: .relaxed) {
                Log.info("received \(received == SIGTERM ? "SIGTERM" : "SIGINT"), detaching")
            }
            reader.stop()
            readerThread.join()
            stream.stop()
            server.stop()
            probes.detach()
            return readerFailed.load(ordering: .relaxed) ? 1 : 0
        } catch let error as SocketError {
            Log.error("\(error)")
            probes?.detach()
            return 1
        } catch {
            Log.error("\(error)")
            probes?.detach()
            return 1
        }
    }

    /// Command names the reader decoded lately. The reader thread's alone; held through
    /// a pointer so that a record costs no dynamic exclusivity check.
    private let comms: UnsafeMutablePointer<CommCache> = {
        let p = UnsafeMutablePointer<CommCache>.allocate(capacity: 1)
        p.initialize(to: CommCache())
        return p
    }()

    deinit {
        comms.deinitialize(count: 1)
        comms.deallocate()
    }

    /// Ring-buffer callback, on the reader thread.
    private func consume(_ bytes: UnsafeRawBufferPointer) {
        let event: Event
        do {
            event = try EventDecoder.event(bytes, comms: &comms.pointee)
        } catch {
            state.withLock { $0.aggregates.recordDecodeError(error) }
            return
        }
        // Exemplar timestamps: the clock is read only when a request finished.
        let finished = state.withLock { $0.apply(event) { Double(Clock.nowRealtimeNs()) / 1e9 } }
        if let stream, stream.hasSubscribers, event.kind != .payload {
            stream.publish(EventJSON.encode(event, realtimeOffsetNs: realtimeOffsetNs) + "\n")
        }
        publish(finished)
    }

    /// An interval without records, on the reader thread: requests past their timeout end anyway.
    private func idle() {
        publish(state.withLock { $0.tick(nowNs: Clock.monotonicNs()) { Double(Clock.nowRealtimeNs()) / 1e9 } })
    }

    private func publish(_ finished: [RequestRecord]) {
        guard !finished.isEmpty, let stream, stream.hasSubscribers else { return }
        for r in finished { stream.publish(EventJSON.encode(r, realtimeOffsetNs: realtimeOffsetNs) + "\n") }
    }

    /// `tincture explain ID`: the stored records with that ID, one JSON line each.
    private func explainLines(_ id: String) -> [String] {
        state.withLock { s in s.store.records(withID: id) }.map {
            EventJSON.encode($0, realtimeOffsetNs: realtimeOffsetNs) + "\n"
        }
    }

    private func observation() -> SelfObservation {
        var o = SelfObservation()
        if let probes {
            let counters = probes.kernelCounters()
            o.lostEvents = counters.lost
            o.kernelUntracked = counters.untracked
            o.probes = probes.plan.probes
            o.pollWaits = probes.pollHistogram()
            o.connects = probes.connectHistogram()
        }
        o.seriesCap = config.seriesCap
        let correlation = state.withLock { ($0.correlator.evictedInFlight, $0.correlator.evictedSockets, $0.store.evicted) }
        o.kernelUntracked["requests_evicted_in_flight"] = correlation.0
        o.kernelUntracked["sockets_evicted"] = correlation.1
        o.kernelUntracked["request_records_evicted"] = correlation.2
        if let stream {
            let stats = stream.stats
            o.subscribers = stats.subscribers
            o.subscriberDrops = stats.dropped
        }
        o.version = Self.version
        return o
    }

    private func route(_ path: String, _ accept: String?) -> MetricsServer.Response {
        switch path {
        case "/metrics":
            let started = Clock.monotonicNs()
            var o = observation()
            o.lastScrapeSeconds = Double(lastScrapeNs.load(ordering: .relaxed)) / 1e9
            let om = ExpositionWriter.wantsOpenMetrics(accept: accept)
            // Render from a copy: the reader keeps going while the text is built (it
            // pays one copy of whatever it changes next, not a wait).
            let aggregates = state.withLock { $0.aggregates }
            let text = ExpositionWriter.renderBytes(aggregates, o, openMetrics: om)
            lastScrapeNs.store(Clock.monotonicNs() &- started, ordering: .relaxed)
            return .init(status: 200,
                         contentType: om ? ExpositionWriter.openMetricsContentType : ExpositionWriter.textContentType,
                         body: text)
        case "/healthz":
            return readerAlive.load(ordering: .relaxed)
                ? .init(status: 200, contentType: "text/plain; charset=utf-8", body: "ok\n")
                : .init(status: 503, contentType: "text/plain; charset=utf-8", body: "ring buffer reader is not running\n")
        case "/":
            return .init(status: 200, contentType: "text/plain; charset=utf-8",
                         body: "tincture agent \(Self.version)\n/metrics  Prometheus metrics\n/healthz  liveness\n")
        default:
            return .init(status: 404, contentType: "text/plain; charset=utf-8", body: "not found; try /metrics\n")
        }
    }

    /// First line every subscriber gets: who is serving and what is attached.
    private func helloLine() -> String {
        let hooks = (probes?.plan.entries ?? []).map {
            "{\"hook\":\(EventJSON.quote($0.hook.name)),\"mode\":\(EventJSON.quote($0.mode?.rawValue ?? "none"))}"
        }.joined(separator: ",")
        return "{\"kind\":\"hello\",\"version\":\(EventJSON.quote(Self.version)),\"pid\":\(getpid()),\"hooks\":[\(hooks)]}\n"
    }
}

enum Clock {
    static func nowRealtimeNs() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
    }

    static func monotonicNs() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    /// CLOCK_REALTIME − CLOCK_MONOTONIC: adds to bpf_ktime_get_ns() stamps to get Unix time.
    static func realtimeMinusMonotonicNs() -> Int64 {
        var rt = timespec(), mono = timespec()
        clock_gettime(CLOCK_REALTIME, &rt)
        clock_gettime(CLOCK_MONOTONIC, &mono)
        return (Int64(rt.tv_sec) - Int64(mono.tv_sec)) * 1_000_000_000 + (Int64(rt.tv_nsec) - Int64(mono.tv_nsec))
    }
}
