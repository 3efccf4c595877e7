import Glibc
import TinctureCore

/// Per hook: the mode it will attach in, and what each mode tried said.
public struct AttachPlan: Sendable {
    public struct Entry: Sendable {
        public var hook: HookSpec
        /// nil: no allowed mode worked.
        public var mode: AttachMode?
        /// The programs the chosen mode loads (its preferred set or its fallback).
        public var programs: [String] = []
        /// Every mode tried, in order, with nil for success or the reason it failed, the
        /// programs that worked (else the preferred ones), and, when a fallback worked,
        /// why the preferred programs did not.
        public var attempts: [(mode: AttachMode, failure: String?, programs: [String], note: String?)]
    }

    public var entries: [Entry]

    public func mode(for hook: HookSpec) -> AttachMode? {
        entries.first { $0.hook == hook }?.mode
    }

    public var attachedHooks: [Entry] { entries.filter { $0.mode != nil } }

    /// Every program the attached hooks load, each once (hooks can share one).
    public var programs: [String] {
        var seen = Set<String>()
        return attachedHooks.flatMap(\.programs).filter { seen.insert($0).inserted }
    }

    /// What the shared programs do: every attached hook's role bits.
    public var roles: UInt32 { attachedHooks.reduce(0) { $0 | $1.hook.roles(of: $1.programs) } }
    public var probes: [SelfObservation.Probe] { entries.map { .init(hook: $0.hook.name, mode: $0.mode) } }
}

/// Builds the attach plan by trying, per hook, each allowed mode on the running
/// kernel: load the variant's programs alone and attach them. The first that
/// works is chosen; the trial is undone.
public enum AttachPlanner {
    /// `requested` nil means auto: every mode, in the hook's order of preference.
    public static func candidates(_ requested: AttachMode?, _ hook: HookSpec) -> [AttachMode] {
        requested.map { [$0] } ?? hook.preference
    }

    /// `exhaustive` tries every candidate even after one works (for `tincture check`).
    /// `stop` is asked before each trial: when it says so, the plan ends early (hooks
    /// not tried yet stay unattached).
    public static func plan(requested: AttachMode?, facts: KernelFacts, hooks: [HookSpec] = Hooks.all,
                            exhaustive: Bool = false, config: ProbeConfig = ProbeConfig(),
                            stop: () -> Bool = { false }) -> AttachPlan {
        Libbpf.captureLogs(verbose: false)
        var entries: [AttachPlan.Entry] = []
        for hook in hooks {
            var entry = AttachPlan.Entry(hook: hook, mode: nil, attempts: [])
            for mode in candidates(requested, hook) {
                if (entry.mode != nil && !exhaustive) || stop() { break }
                let (failure, programs, note) = trial(hook, mode, facts, config)
                entry.attempts.append((mode, failure, programs, note))
                if failure == nil && entry.mode == nil {
                    entry.mode = mode
                    entry.programs = programs
                }
            }
            entries.append(entry)
        }
        return AttachPlan(entries: entries)
    }

    /// Tries a mode's program sets in order. nil and the set that worked on success,
    /// else why the preferred set cannot be used here (and why its fallback cannot).
    static func trial(_ hook: HookSpec, _ mode: AttachMode, _ facts: KernelFacts,
                      _ config: ProbeConfig) -> (failure: String?, programs: [String], note: String?) {
        var failures: [String] = []
        for programs in hook.variants(for: mode) {
            guard let failure = trial(hook, mode, programs, facts, config) else {
                return (nil, programs, failures.first.map { "fallback; the preferred programs: \($0)" })
            }
            failures.append(failure)
        }
        let text = failures.count > 1 ? failures[0] + "; fallback: " + failures[1...].joined(separator: "; ") : failures.first
        return (text ?? "no programs for this mode", hook.programs(for: mode), nil)
    }

    static func trial(_ hook: HookSpec, _ mode: AttachMode, _ programs: [String], _ facts: KernelFacts,
                      _ config: ProbeConfig) -> String? {
        do {
            if hook.needsTracefs.contains(mode) {
                try Tracefs.ensureMounted()
            } else if mode == .kprobe && !facts.kprobes {
                // Without the kprobe PMU, libbpf falls back to tracefs' kprobe_events.
                try? Tracefs.ensureMounted()
            }
            var config = config
            config.roles = hook.roles(of: programs)
            let object = try BPFObject(config: config)
            defer { object.close() }
            try object.autoloadOnly(Set(programs))
            try object.load(what: "BPF object tincture for hook \(hook.name) (\(mode.rawValue))")
            for program in programs { try object.attach(program: program) }
            return nil
        } catch let error as BPFError {
            return explain(error, mode, facts)
        } catch {
            return "\(error)"
        }
    }

    /// Adds what the kernel facts say about a failure, so the user can act on it.
    static func explain(_ error: BPFError, _ mode: AttachMode, _ facts: KernelFacts) -> String {
        var text = error.description
        switch (mode, error.code, error.errno) {
        case (.fentry, .load, EPERM), (.fentry, .load, EACCES):
            text += "; the kernel refuses fentry programs"
            if let lockdown = facts.lockdown, lockdown != "none" { text += " (lockdown=\(lockdown))" }
            else { text += " (kernel lockdown or missing BPF trampoline support)" }
        case (.kprobe, .attach, _) where !facts.kprobes:
            text += "; this kernel has no kprobe support (CONFIG_KPROBES unset)"
        case (_, .load, _) where !facts.btf:
            text += "; the kernel has no BTF (/sys/kernel/btf/vmlinux), which CO-RE programs need"
        default:
            if !error.log.isEmpty, let last = error.log.split(separator: "\n").last {
                text += "; libbpf: \(String(last).trimmingSpaces())"
            }
        }
        return text
    }
}
