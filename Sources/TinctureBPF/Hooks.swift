internal import CTinctureBPF
import TinctureCore

/// A kernel hook the agent can attach in several modes, each a set of BPF programs
/// (from bpf/*.bpf.c) sharing one body.
public struct HookSpec: Sendable, Equatable {
    public let name: String
    public let summary: String
    public let programs: [AttachMode: [String]]
    /// Per mode, programs to try when the preferred ones cannot attach (older kernels
    /// lack some attach points).
    public var fallbacks: [AttachMode: [String]] = [:]
    /// Modes whose programs are classic tracepoints, which need tracefs mounted.
    public var needsTracefs: Set<AttachMode> = []
    /// The order `auto` tries modes in: cheapest per event first, unless a mode sees less.
    public var preference: [AttachMode] = AttachMode.allCases
    /// Programs on a kernel event another hook also needs serve both hooks: per such
    /// program, the part this hook switches on in it (`enum tn_role` bits).
    public var roles: [String: UInt32] = [:]

    /// The role bits `programs` switch on for this hook.
    public func roles(of programs: [String]) -> UInt32 {
        programs.reduce(0) { $0 | (roles[$1] ?? 0) }
    }

    public func programs(for mode: AttachMode) -> [String] { programs[mode] ?? [] }

    /// What a mode can load, in the order to try: the preferred programs, then any fallback.
    public func variants(for mode: AttachMode) -> [[String]] {
        [programs(for: mode)] + (fallbacks[mode].map { [$0] } ?? [])
    }
}

public enum Hooks {
    public static let tcpConnect = HookSpec(
        name: "tcp_connect",
        summary: "TCP connect latency, result and SYN retransmits",
        programs: [
            .fentry: ["tn_fentry_tcp_v4_connect", "tn_fentry_tcp_v6_connect", "tn_fentry_tcp_set_state"],
            .kprobe: ["tn_kprobe_tcp_v4_connect", "tn_kprobe_tcp_v6_connect", "tn_kprobe_tcp_set_state"],
            .tracepoint: ["tn_tp_inet_sock_set_state"],
        ],
        roles: ["tn_fentry_tcp_set_state": TN_ROLE_CONNECT.rawValue, "tn_kprobe_tcp_set_state": TN_ROLE_CONNECT.rawValue,
                "tn_tp_inet_sock_set_state": TN_ROLE_CONNECT.rawValue])

    public static let tcpRetransmit = HookSpec(
        name: "tcp_retransmit",
        summary: "TCP retransmits (data, SYN, SYN-ACK) attributed to the socket's owner",
        programs: [
            .fentry: ["tn_fexit_tcp_retransmit_skb", "tn_fentry_tcp_rtx_synack",
                      "tn_fentry_inet_csk_listen_start", "tn_fentry_tcp_sendmsg"],
            .kprobe: ["tn_kprobe_tcp_retransmit_skb", "tn_kprobe_tcp_rtx_synack",
                      "tn_kprobe_inet_csk_listen_start", "tn_kprobe_tcp_sendmsg"],
            .tracepoint: ["tn_tp_tcp_retransmit_skb", "tn_tp_tcp_retransmit_synack",
                          "tn_tp_inet_sock_set_state", "tn_tp_sock_send_length"],
        ],
        // Before Linux 6.3 senders' owners come from the raw syscall tracepoint.
        fallbacks: [.tracepoint: ["tn_tp_tcp_retransmit_skb", "tn_tp_tcp_retransmit_synack",
                                  "tn_tp_inet_sock_set_state", "tn_tp_payload_enter"]],
        // The BTF tracepoint sees tail loss probes, which the probed functions miss.
        preference: [.tracepoint, .fentry, .kprobe],
        // Listeners' and senders' owners, from the connect and payload hooks' programs.
        roles: ["tn_tp_inet_sock_set_state": TN_ROLE_LISTEN_OWNER.rawValue,
                "tn_tp_sock_send_length": TN_ROLE_SEND_OWNER.rawValue,
                "tn_tp_payload_enter": TN_ROLE_SEND_OWNER.rawValue])

    static let waitSyscalls = ["poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait", "epoll_pwait2"]
    /// epoll_pwait2 came with Linux 5.11: older kernels have the other six.
    static let waitSyscallsBefore5_11 = waitSyscalls.filter { $0 != "epoll_pwait2" }

    /// A mode's wait programs over some of the syscalls.
    static func waitPrograms(_ mode: AttachMode, _ syscalls: [String]) -> [String] {
        switch mode {
        case .fentry: return syscalls.flatMap { ["tn_fentry_\($0)", "tn_fexit_\($0)"] }
        case .kprobe: return syscalls.flatMap { ["tn_kprobe_\($0)", "tn_kretprobe_\($0)"] }
        case .tracepoint: return syscalls.flatMap { ["tn_tp_enter_\($0)", "tn_tp_exit_\($0)"] }
        }
    }

    public static let pollWait = HookSpec(
        name: "poll_wait",
        summary: "time blocked in poll, ppoll, select, pselect6, epoll_wait, epoll_pwait, epoll_pwait2",
        programs: Dictionary(uniqueKeysWithValues: AttachMode.allCases.map { ($0, waitPrograms($0, waitSyscalls)) }),
        fallbacks: Dictionary(uniqueKeysWithValues: AttachMode.allCases.map { ($0, waitPrograms($0, waitSyscallsBefore5_11)) }),
        needsTracefs: [.tracepoint])

    static let sendSyscalls = ["write", "sendto", "sendmsg", "writev"]
    static let receiveSyscalls = ["read", "recvfrom", "recvmsg", "readv"]

    public static let httpPayload = HookSpec(
        name: "http_payload",
        summary: "first bytes of HTTP/1.x requests and responses on TCP sockets, for request correlation",
        // The connect hook's state-change programs report a request's socket closing.
        programs: [
            .fentry: (sendSyscalls + receiveSyscalls).map { "tn_fentry_\($0)" } + receiveSyscalls.map { "tn_fexit_\($0)" }
                + ["tn_fentry_tcp_set_state"],
            .kprobe: (sendSyscalls + receiveSyscalls).map { "tn_kprobe_\($0)" } + receiveSyscalls.map { "tn_kretprobe_\($0)" }
                + ["tn_kprobe_tcp_set_state"],
            .tracepoint: ["tn_tp_sock_send_length", "tn_tp_payload_recv", "tn_tp_inet_sock_set_state"],
        ],
        // Before Linux 6.3 the socket layer has no send/receive tracepoints.
        fallbacks: [.tracepoint: ["tn_tp_payload_enter", "tn_tp_payload_exit", "tn_tp_inet_sock_set_state"]],
        roles: ["tn_tp_sock_send_length": TN_ROLE_PAYLOAD.rawValue, "tn_tp_payload_enter": TN_ROLE_PAYLOAD.rawValue,
                "tn_fentry_tcp_set_state": TN_ROLE_CLOSE.rawValue,
                "tn_kprobe_tcp_set_state": TN_ROLE_CLOSE.rawValue, "tn_tp_inet_sock_set_state": TN_ROLE_CLOSE.rawValue])

    public static let all: [HookSpec] = [tcpConnect, tcpRetransmit, pollWait, httpPayload]

    /// The kernel attach points behind a mode's programs (its preferred ones unless
    /// `programs` names its fallback), for `check` and the log. A hook given a fallback
    /// describes it here.
    public static func attachPoints(_ hook: HookSpec, _ mode: AttachMode, programs: [String]? = nil) -> String {
        let loaded = programs ?? hook.programs(for: mode)
        let fallback = loaded != hook.programs(for: mode)
        switch (hook.name, mode) {
        case ("tcp_connect", .fentry): return "fentry tcp_v4_connect, tcp_v6_connect, tcp_set_state"
        case ("tcp_connect", .kprobe): return "kprobe tcp_v4_connect, tcp_v6_connect, tcp_set_state"
        case ("tcp_connect", .tracepoint): return "tp_btf sock/inet_sock_set_state"
        case ("tcp_retransmit", .fentry): return "fexit tcp_retransmit_skb; fentry tcp_rtx_synack, inet_csk_listen_start, tcp_sendmsg"
        case ("tcp_retransmit", .kprobe): return "kprobe tcp_retransmit_skb, tcp_rtx_synack, inet_csk_listen_start, tcp_sendmsg"
        case ("tcp_retransmit", .tracepoint):
            return "tp_btf tcp/tcp_retransmit_skb, tcp/tcp_retransmit_synack, sock/inet_sock_set_state, "
                + (fallback ? "raw_syscalls/sys_enter" : "sock/sock_send_length")
        case ("poll_wait", _):
            let syscalls = "{\((fallback ? waitSyscallsBefore5_11 : waitSyscalls).joined(separator: ","))}"
                + (fallback ? " (no epoll_pwait2 before Linux 5.11)" : "")
            switch mode {
            case .fentry: return "fentry+fexit __x64_sys_\(syscalls)"
            case .kprobe: return "ksyscall+kretsyscall \(syscalls)"
            case .tracepoint: return "tracepoint syscalls/sys_{enter,exit}_\(syscalls)"
            }
        case ("http_payload", .fentry):
            return "fentry __x64_sys_{\((sendSyscalls + receiveSyscalls).joined(separator: ","))}, fexit on the receives; fentry tcp_set_state"
        case ("http_payload", .kprobe):
            return "ksyscall {\((sendSyscalls + receiveSyscalls).joined(separator: ","))}, kretsyscall on the receives; kprobe tcp_set_state"
        case ("http_payload", .tracepoint):
            return fallback ? "tp_btf raw_syscalls/sys_enter, sys_exit, sock/inet_sock_set_state"
                : "tp_btf sock/sock_send_length, sock/sock_recv_length, sock/inet_sock_set_state"
        default: return loaded.joined(separator: ", ")
        }
    }
}
