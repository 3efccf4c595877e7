internal import CLibbpf
internal import CTinctureBPF
import Glibc

/// Load-time constants the BPF programs are specialised with (`struct tn_config`).
public struct ProbeConfig: Sendable {
    public static let defaultPollMinNs: UInt64 = 10_000_000

    /// Waits at least this long travel as events; every wait is counted in the kernel histogram.
    public var pollMinNs: UInt64 = defaultPollMinNs
    /// The agent's own process: its waits are never traced (they would feed back).
    public var selfTgid: UInt32 = UInt32(getpid())
    /// Whether the retransmit hook is attached (connect events then take its SYN count).
    public var retransmitHook = false
    /// What the programs that several hooks share do (`enum tn_role` bits); set from
    /// the attach plan.
    public var roles: UInt32 = 0
    public static let defaultConnectMinNs: UInt64 = 10_000_000
    /// Successful connects without SYN retransmits travel as events only when at
    /// least this long (or while a live subscriber is attached); all are counted.
    public var connectMinNs: UInt64 = defaultConnectMinNs
    public static let defaultPayloadMax: UInt32 = 512
    /// Bytes of each HTTP payload to copy (64...4095).
    public var payloadMax: UInt32 = defaultPayloadMax
    /// Bytes a CPU submits to the ring between looks at its fill level (which decide
    /// the batched wake-ups): a quarter of a batch spread over the CPUs, at most 16 KiB.
    /// A crossing of the batch size is then seen within a quarter batch of output.
    public var wakeupCheckBytes: UInt32 = ProbeConfig.wakeupCheck(batch: Int(TN_WAKEUP_BYTES))
    /// The same for the small batches while a live subscriber is attached.
    public var wakeupCheckBytesLive: UInt32 = ProbeConfig.wakeupCheck(batch: Int(TN_WAKEUP_BYTES_LIVE))

    static func wakeupCheck(batch: Int, cpus: Int = Int(libbpf_num_possible_cpus())) -> UInt32 {
        UInt32(min(16 * 1024, max(256, batch / 4 / max(1, cpus))))
    }

    /// Masks socket addresses into ids where no cookie exists; random per run.
    public var idSecret: UInt64 = UInt64.random(in: 1...UInt64.max)

    public init() {}
}
