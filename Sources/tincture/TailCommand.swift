import ArgumentParser
import Foundation
import TinctureAgent
import TinctureCore

struct TailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print live events from the running agent, one line each.",
        discussion: """
            Human-readable columns by default (colour on a terminal; NO_COLOR disables it), or one JSON \
            object per line with --json (fields in the README, "Event JSON"). Filters combine with AND; \
            --port keeps only events with ports (not poll waits), --min-duration only events with a \
            duration (not retransmits).

            Examples:
              sudo tincture tail
              sudo tincture tail --min-duration 500ms --port 5432
              sudo tincture tail --kind retransmit --comm nginx
              sudo tincture tail --json --comm python3 | jq .duration_ns
            """)

    @Option(help: ArgumentHelp("The agent's event socket.", valueName: "path"))
    var socket: String = AgentConfig.defaultEventsSocket

    @Flag(help: "One JSON object per line instead of columns.")
    var json = false

    @Option(help: ArgumentHelp("Only events of this kind (repeatable).", valueName: "connect|retransmit|poll|request"))
    var kind: [String] = []

    @Option(name: .customLong("request-id"),
            help: ArgumentHelp("Only the request with this ID, with the kernel events joined to it (its connect, retransmits, poll waits).",
                               valueName: "id"))
    var requestID: String?

    @Option(help: ArgumentHelp("Only events of this process ID.", valueName: "pid"))
    var pid: UInt32?

    @Option(help: ArgumentHelp("Only events of processes with this command name (exact, as in /proc/PID/comm).",
                               valueName: "name"))
    var comm: String?

    @Option(help: ArgumentHelp("Only events whose local or remote port is this.", valueName: "port"))
    var port: UInt16?

    @Option(help: ArgumentHelp("Only events that took at least this long, e.g. 500ms, 1s, 250us.",
                               valueName: "duration"))
    var minDuration: String?

    static let kinds = ["connect", "retransmit", "poll", "request"]

    func validate() throws {
        for k in kind where !Self.kinds.contains(k) {
            throw ValidationError("--kind '\(k)' is not one of \(Self.kinds.joined(separator: ", "))")
        }
        if let minDuration, DurationParser.nanoseconds(minDuration) == nil {
            throw ValidationError("--min-duration '\(minDuration)' is not a duration; use a number with ns, us, ms, s or m (e.g. 250ms, 1.5s)")
        }
        if requestID != nil && (pid != nil || comm != nil || port != nil || minDuration != nil || !kind.isEmpty) {
            throw ValidationError("--request-id shows one request and its joined events; it does not combine with other filters")
        }
        if let comm, comm.utf8.count > 15 {
            throw ValidationError("--comm '\(comm)' is longer than the kernel's 15-byte command names; use the first 15 bytes")
        }
    }

    func run() throws {
        // Fully buffered, flushed whenever every line received so far is printed (below):
        // lines appear as they arrive, and a burst costs one write, not one per line.
        setvbuf(stdout, nil, _IOFBF, 1 << 16)
        let filter = TailFilter(kinds: kind.isEmpty ? nil : Set(kind), pid: pid, comm: comm, port: port,
                                minDurationNs: minDuration.flatMap(DurationParser.nanoseconds))
        let client: EventStreamClient
        do {
            client = try EventStreamClient(path: socket)
        } catch {
            FileHandle.standardError.write(Data("tincture tail: \(error)\n".utf8))
            throw ExitCode(1)
        }
        _ = client.send("subscribe")
        let colour = isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        let formatter = TailFormatter(colour: colour)
        let decoder = JSONDecoder()
        // With --request-id: recent events, to print those joined to the request when its record arrives.
        var recent: [(record: EventRecord, line: ArraySlice<UInt8>)] = []
        func printRaw(_ line: ArraySlice<UInt8>) {
            line.withUnsafeBytes { _ = fwrite($0.baseAddress, 1, $0.count, stdout) }
            putc(10, stdout)
        }
        func show(_ record: EventRecord, _ line: ArraySlice<UInt8>) {
            if json {
                printRaw(line)
            } else {
                print(formatter.line(record, timeOfDay: Self.timeOfDay(record.tsNs)))
            }
        }

        // JSON with no filter: an event line goes out as it came, without decoding it.
        let passThrough = json && requestID == nil && filter == TailFilter()
        while let line = client.nextLine(beforeWaiting: { fflush(stdout) }) {
            if passThrough, let kind = Self.eventKind(line), Self.kinds.contains(kind) {
                printRaw(line)
                continue
            }
            let data = Data(line)
            // Events are the hot path: one decode. Control lines (hello, error) lack event fields.
            if let record = try? decoder.decode(EventRecord.self, from: data) {
                guard Self.kinds.contains(record.kind) else { continue }  // kinds from a newer agent
                if let requestID {
                    if record.kind == "request" && record.requestID == requestID {
                        for joined in recent where RequestJoin.joins(joined.record, record) { show(joined.record, joined.line) }
                        show(record, line)
                    } else if record.kind != "request" {
                        recent.append((record, line))
                        if recent.count > 20_000 { recent.removeFirst(recent.count - 10_000) }
                    }
                    continue
                }
                if filter.matches(record) { show(record, line) }
                continue
            }
            switch (try? decoder.decode(KindOnly.self, from: data))?.kind {
            case "hello":
                if let hello = try? decoder.decode(Hello.self, from: data) {
                    let hooks = hello.hooks.map { "\($0.hook) via \($0.mode)" }.joined(separator: ", ")
                    FileHandle.standardError.write(Data("tincture tail: streaming from agent \(hello.version) (pid \(hello.pid); \(hooks))\n".utf8))
                }
            case "error":
                let message = (try? decoder.decode(ErrorLine.self, from: data))?.message ?? "unknown error"
                FileHandle.standardError.write(Data("tincture tail: the agent refused the stream: \(message)\n".utf8))
                throw ExitCode(1)
            default:
                continue  // unreadable, or a control line from a newer agent: skip, never fail
            }
        }
        FileHandle.standardError.write(Data("tincture tail: the agent closed the stream (stopped or restarted)\n".utf8))
    }

    /// The kind of an event line as the agent writes it (`{"kind":"connect",...`), without
    /// decoding the rest; nil for anything else.
    static func eventKind(_ line: ArraySlice<UInt8>) -> String? {
        let prefix = Array(#"{"kind":""#.utf8)
        guard line.starts(with: prefix) else { return nil }
        let rest = line.dropFirst(prefix.count)
        guard let quote = rest.prefix(32).firstIndex(of: 0x22) else { return nil }
        return String(decoding: rest[..<quote], as: UTF8.self)
    }

    struct KindOnly: Decodable { var kind: String }
    struct ErrorLine: Decodable { var message: String }
    struct Hello: Decodable {
        struct Hook: Decodable { var hook: String; var mode: String }
        var version: String
        var pid: Int
        var hooks: [Hook]
    }

    /// "14:03:22.481" in local time.
    static func timeOfDay(_ unixNs: UInt64) -> String {
        var seconds = time_t(unixNs / 1_000_000_000)
        var tm = tm()
        localtime_r(&seconds, &tm)
        let ms = (unixNs / 1_000_000) % 1000
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)).\(msText)"
    }
}
