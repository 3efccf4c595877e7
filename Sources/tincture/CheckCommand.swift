import ArgumentParser
import Foundation
import TinctureAgent
import TinctureBPF
import TinctureCore

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Print the kernel facts that matter and how each hook would attach, trying every mode for real.",
        discussion: """
            Loads and attaches each hook's programs in each allowed mode on the running kernel, then detaches. \
            Exits 0 when every hook can attach in some allowed mode, 1 otherwise. Needs root.
            """)

    @Option(help: ArgumentHelp("Only consider this mode (auto tries all).", valueName: "auto|fentry|kprobe|tracepoint"))
    var attach: AttachChoice = .auto

    func run() throws {
        let missing = Privileges.missing()
        if !missing.isEmpty {
            FileHandle.standardError.write(Data("tincture check needs root or CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to try loading probes; missing: \(missing.joined(separator: ", ")). Try: sudo tincture check\n".utf8))
            throw ExitCode(77)
        }
        let facts = KernelFacts.probe()
        func yesNo(_ b: Bool) -> String { b ? "yes" : "no" }
        print("kernel      \(facts.release)")
        print("BTF         \(yesNo(facts.btf))\(facts.btf ? " (/sys/kernel/btf/vmlinux)" : " — CO-RE programs cannot load")")
        print("ring buffer \(yesNo(facts.ringBuffer))")
        print("kprobes     \(yesNo(facts.kprobes))\(facts.kprobes ? "" : " (no kprobe PMU: CONFIG_KPROBES unset)")")
        print("tracefs     \(facts.tracefs ? "mounted" : "not mounted (the agent mounts it when a mode needs it)")")
        print("lockdown    \(facts.lockdown ?? "unknown (securityfs not mounted)")")

        let requested = AttachMode(rawValue: attach.rawValue)
        let plan = AttachPlanner.plan(requested: requested, facts: facts, exhaustive: true)
        let fentryWorks = plan.entries.contains { $0.attempts.contains { $0.mode == .fentry && $0.failure == nil } }
        if requested == nil || requested == .fentry {
            print("fentry      \(fentryWorks ? "yes" : "no (see below)")")
        }
        print("")
        print("attach plan (--attach \(attach.rawValue)):")
        for entry in plan.entries {
            let chosen = entry.mode.map { "\($0.rawValue)" } ?? "NOT ATTACHABLE"
            print("  \(entry.hook.name): \(chosen)   — \(entry.hook.summary)")
            for attempt in entry.attempts {
                let mark = attempt.mode == entry.mode ? "*" : " "
                let outcome = attempt.failure.map { "fails: \($0)" } ?? (attempt.note.map { "works (\($0))" } ?? "works")
                print("    \(mark) \(attempt.mode.rawValue.padding(10)) \(Hooks.attachPoints(entry.hook, attempt.mode, programs: attempt.programs))")
                print("      \(outcome)")
            }
        }
        if plan.entries.allSatisfy({ $0.mode != nil }) {
            print("\nevery hook can attach.")
        } else {
            print("\nsome hooks cannot attach with --attach \(attach.rawValue); the agent would run without them.")
            throw ExitCode(1)
        }
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
