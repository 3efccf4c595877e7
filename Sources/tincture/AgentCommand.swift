import ArgumentParser
import Glibc
import TinctureAgent
import TinctureBPF
import TinctureCore

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Load the probes and serve /metrics and the live event stream until SIGTERM or SIGINT.",
        discussion: """
            Needs root (or CAP_BPF and CAP_PERFMON). At start it builds an attach plan (see `tincture check`), \
            logs it, and keeps running with the hooks that attached; it exits non-zero if none did.

            Endpoints:
              GET /metrics   Prometheus text format 0.0.4; OpenMetrics 1.0 with request-ID exemplars
                             when the scraper asks (Accept: application/openmetrics-text)
              GET /healthz   200 while the ring-buffer reader runs

            Live events, `tincture tail` and `tincture explain` use the events socket.

            Examples:
              sudo tincture agent
              sudo tincture agent --listen 0.0.0.0:9477 --attach tracepoint
            """)

    @Option(help: ArgumentHelp("Where to serve /metrics and /healthz, as HOST:PORT ([::1]:PORT for IPv6).",
                               valueName: "host:port"))
    var listen: String = AgentConfig.defaultListen.description

    @Option(help: ArgumentHelp("Unix socket for the live event stream (created with mode 0600).", valueName: "path"))
    var eventsSocket: String = AgentConfig.defaultEventsSocket

    @Option(help: ArgumentHelp("How to attach each hook: auto picks, per hook, the cheapest mode the kernel accepts (fentry, then tracepoint, then kprobe; tracepoint first for retransmits, the only mode that sees tail loss probes).",
                               valueName: "auto|fentry|kprobe|tracepoint"))
    var attach: AttachChoice = .auto

    @Option(help: ArgumentHelp("Most label sets per metric family; past it, new ones fold into comm/endpoint=\"other\".",
                               valueName: "n"))
    var seriesCap: Int = Aggregates.defaultSeriesCap

    @Option(help: ArgumentHelp("Events buffered per live subscriber before its oldest are dropped (and counted).",
                               valueName: "n"))
    var subscriberQueue: Int = 4096

    @Option(help: ArgumentHelp("Poll/select/epoll waits at least this long are sent as events (tail, correlation); every wait is counted in tincture_poll_wait_seconds regardless.",
                               valueName: "duration"))
    var pollMinDuration: String = "10ms"

    @Option(help: ArgumentHelp("Successful connects at least this long are sent as events (tail, correlation); failed or retried connects always are, and every connect while a `tincture tail` is attached. All are counted in tincture_tcp_connect_duration_seconds regardless.",
                               valueName: "duration"))
    var connectMinDuration: String = "10ms"

    @Option(name: .customLong("request-id-header"),
            help: ArgumentHelp("Header whose value is a request's ID (repeatable; the first present wins; \"traceparent\" gives its trace-id). Default: X-Request-ID, X-Correlation-ID, traceparent.",
                               valueName: "name"))
    var requestIDHeaders: [String] = []

    @Option(help: ArgumentHelp("Bytes of each HTTP request or response the kernel copies to read its head (64-4095).",
                               valueName: "bytes"))
    var payloadMax: Int = Int(ProbeConfig.defaultPayloadMax)

    func validate() throws {
        for h in requestIDHeaders where h.isEmpty || !h.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ":") }) {
            throw ValidationError("--request-id-header '\(h)' is not a header name")
        }
        guard (64...4095).contains(payloadMax) else {
            throw ValidationError("--payload-max must be between 64 and 4095 bytes")
        }
        guard DurationParser.nanoseconds(pollMinDuration) != nil else {
            throw ValidationError("--poll-min-duration '\(pollMinDuration)' is not a duration; use e.g. 10ms, 250us, 1s")
        }
        guard DurationParser.nanoseconds(connectMinDuration) != nil else {
            throw ValidationError("--connect-min-duration '\(connectMinDuration)' is not a duration; use e.g. 10ms, 250us, 1s")
        }
        guard ListenAddress(listen) != nil else {
            throw ValidationError("--listen '\(listen)' is not HOST:PORT (e.g. 127.0.0.1:9477, [::1]:9477, 0.0.0.0:9477)")
        }
        guard eventsSocket.hasPrefix("/") else {
            throw ValidationError("--events-socket must be an absolute path, got '\(eventsSocket)'")
        }
        guard eventsSocket.utf8.count < 108 else {
            throw ValidationError("--events-socket path is longer than a unix socket allows (107 bytes)")
        }
        guard seriesCap > 0 else { throw ValidationError("--series-cap must be at least 1") }
        guard (1...1_000_000).contains(subscriberQueue) else {
            throw ValidationError("--subscriber-queue must be between 1 and 1000000")
        }
    }

    func run() throws {
        var config = AgentConfig()
        config.listen = ListenAddress(listen)!
        config.eventsSocket = eventsSocket
        config.attach = AttachMode(rawValue: attach.rawValue)
        config.seriesCap = seriesCap
        config.subscriberQueue = subscriberQueue
        config.pollMinNs = DurationParser.nanoseconds(pollMinDuration)!
        config.connectMinNs = DurationParser.nanoseconds(connectMinDuration)!
        if !requestIDHeaders.isEmpty { config.requestIDHeaders = requestIDHeaders }
        config.payloadMax = UInt32(payloadMax)
        if let dir = parentDirectory(eventsSocket), access(dir, F_OK) != 0 {
            // /run/tincture under systemd comes from RuntimeDirectory=; create it when run by hand.
            mkdir(dir, 0o755)
        }
        let status = Agent(config: config).run()
        if status != 0 { throw ExitCode(status) }
    }

    private func parentDirectory(_ path: String) -> String? {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return nil }
        return String(path[..<slash])
    }
}
