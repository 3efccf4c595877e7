import TinctureCore

/// A kernel hook the agent can attach in several modes, each a set of BPF programs
/// (from bpf/*.bpf.c) sharing one body.
public struct HookSpec: Sendable, Equatable {
    public let name: String
    public let summary: String
    public let programs: [AttachMode: [String]]

    public func programs(for mode: AttachMode) -> [String] { programs[mode] ?? [] }
}

public enum Hooks {
    public static let tcpConnect = HookSpec(
        name: "tcp_connect",
        summary: "TCP connect latency, result and SYN retransmits",
        programs: [
            .fentry: ["tn_fentry_tcp_v4_connect", "tn_fentry_tcp_v6_connect", "tn_fentry_tcp_set_state"],
            .kprobe: ["tn_kprobe_tcp_v4_connect", "tn_kprobe_tcp_v6_connect", "tn_kprobe_tcp_set_state"],
            .tracepoint: ["tn_tp_inet_sock_set_state"],
        ])

    public static let all: [HookSpec] = [tcpConnect]

    /// The kernel attach points behind each mode, for `check` and the README.
    public static func attachPoints(_ hook: HookSpec, _ mode: AttachMode) -> String {
        switch (hook.name, mode) {
        case ("tcp_connect", .fentry): return "fentry tcp_v4_connect, tcp_v6_connect, tcp_set_state"
        case ("tcp_connect", .kprobe): return "kprobe tcp_v4_connect, tcp_v6_connect, tcp_set_state"
        case ("tcp_connect", .tracepoint): return "tp_btf sock/inet_sock_set_state"
        default: return hook.programs(for: mode).joined(separator: ", ")
        }
    }
}
