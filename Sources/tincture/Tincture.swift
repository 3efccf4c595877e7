import ArgumentParser

@main
struct Tincture: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tincture",
        abstract: "Kernel-side latency tracing for TCP services: is it the network or the kernel, and who was hit?",
        discussion: """
            Tincture hooks TCP connect in the kernel with eBPF and reports every attempt's latency, \
            result and SYN retransmits, attributed to the process that called connect().

              sudo tincture check            what this kernel supports and how each hook will attach
              sudo tincture agent            run the agent: /metrics on 127.0.0.1:9477, events on /run/tincture/events.sock
              sudo tincture tail             watch events live (needs a running agent)
              sudo tincture tail --json      the same, one JSON object per line, for scripts
            """,
        version: "0.1.0",
        subcommands: [AgentCommand.self, TailCommand.self, CheckCommand.self, ExplainCommand.self])
}

/// `--attach` values: a mode, or auto (cheapest the kernel accepts, per hook).
enum AttachChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, fentry, kprobe, tracepoint
}
