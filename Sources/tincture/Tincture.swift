import ArgumentParser

@main
struct Tincture: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tincture",
        abstract: "Kernel-side latency tracing for TCP services: is it the network or the kernel, and who was hit?",
        discussion: """
            Tincture hooks the kernel with eBPF and reports, per process: TCP connect latency, \
            result and SYN retransmits; TCP retransmits (data, SYN, SYN-ACK) with the socket's \
            state; time blocked in poll/select/epoll waits. It reads the first bytes of HTTP/1.x \
            requests and responses and joins all of these to the application's own request ID \
            (X-Request-ID, X-Correlation-ID or the traceparent trace-id).

              sudo tincture check                 what this kernel supports and how each hook will attach
              sudo tincture agent                 run the agent: /metrics on 127.0.0.1:9477, events on /run/tincture/events.sock
              sudo tincture tail                  watch events live (needs a running agent)
              sudo tincture tail --json           the same, one JSON object per line, for scripts
              sudo tincture tail --request-id ID  one request's record and the kernel events joined to it
              sudo tincture explain ID            what the kernel did to one stored request, with a reading
            """,
        version: "0.1.0",
        subcommands: [AgentCommand.self, TailCommand.self, CheckCommand.self, ExplainCommand.self])
}

/// `--attach` values: a mode, or auto (cheapest the kernel accepts, per hook).
enum AttachChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, fentry, kprobe, tracepoint
}
