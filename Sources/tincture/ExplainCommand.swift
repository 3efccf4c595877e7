import ArgumentParser
import Foundation
import TinctureAgent
import TinctureCore

struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show what the kernel did to one HTTP request, by its request ID, with a reading of the numbers.",
        discussion: """
            Asks the running agent for the stored records of a request (the agent keeps the most recent \
            10000 and the 100 slowest). The ID is the request's X-Request-ID, X-Correlation-ID, or \
            traceparent trace-id (as configured with `agent --request-id-header`); requests without one \
            have generated IDs like sk-<cookie>-<n>, shown by `tincture tail --kind request`.

            Example:
              sudo tincture explain 7f3a9c2e
            """)

    @Argument(help: "The request ID.")
    var requestID: String

    @Option(help: ArgumentHelp("The agent's event socket.", valueName: "path"))
    var socket: String = AgentConfig.defaultEventsSocket

    @Flag(help: "Print the records as JSON lines instead.")
    var json = false

    func validate() throws {
        guard !requestID.isEmpty, requestID.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw ValidationError("a request ID is printable ASCII without spaces")
        }
    }

    func run() throws {
        let client: EventStreamClient
        do {
            client = try EventStreamClient(path: socket)
        } catch {
            FileHandle.standardError.write(Data("tincture explain: \(error)\n".utf8))
            throw ExitCode(1)
        }
        guard client.send("explain \(requestID)") else {
            FileHandle.standardError.write(Data("tincture explain: the agent closed the connection\n".utf8))
            throw ExitCode(1)
        }
        var records: [(EventRecord, String)] = []
        while let line = client.nextLine() {
            if let r = try? JSONDecoder().decode(EventRecord.self, from: Data(line)), r.kind == "request" {
                records.append((r, String(decoding: line, as: UTF8.self)))
            }
        }
        if records.isEmpty {
            FileHandle.standardError.write(Data("""
                tincture explain: no request with ID \(requestID) in the agent's store (it keeps the most recent \
                10000 requests and the 100 slowest; IDs are case-sensitive)\n
                """.utf8))
            throw ExitCode(1)
        }
        for (r, line) in records {
            if json { print(line) } else { print(Self.timeline(r)) }
        }
    }

    /// The request's life as the kernel saw it, with a reading of each notable number.
    static func timeline(_ r: EventRecord) -> String {
        let d = TailFormatter.duration
        let start = r.startNs ?? r.tsNs
        let connect = r.connectNs ?? 0
        let origin = start &- connect
        func at(_ ns: UInt64) -> String { ns == origin ? "+0" : "+" + d(ns &- origin) }
        let side = r.side ?? "?"
        let endpoint = side == "server" ? TailFormatter.address(r.saddr, r.sport) : TailFormatter.address(r.daddr, r.dport)
        var out = ["request \(r.requestID ?? "?")  \(side)  \(r.comm)[\(r.pid)]  \(r.method ?? "") \(r.target ?? "")  \(side == "server" ? "served on" : "to") \(endpoint)"]
        if connect > 0 {
            out.append("  \(at(origin).padding(12)) connect() started")
            let syn = r.synRetransmits ?? 0
            out.append("  \(at(start).padding(12)) connected after \(d(connect))\(syn > 0 ? ", \(syn) SYN retransmit\(syn == 1 ? "" : "s")" : "")")
        }
        out.append("  \(at(start).padding(12)) request \(side == "server" ? "received" : "sent")")
        if let p = r.pollWaitNs, p > 0 { out.append("  \("".padding(12)) waited \(d(p)) in poll/select/epoll") }
        if let x = r.retransmits, x > 0 { out.append("  \("".padding(12)) \(x) segment\(x == 1 ? "" : "s") retransmitted") }
        let ttfb = r.ttfbNs ?? 0
        if r.end == "responded" {
            out.append("  \(at(start &+ ttfb).padding(12)) first response byte: \(r.status.map(String.init) ?? "?") after \(d(ttfb))")
        } else {
            let duration = r.durationNs ?? 0
            out.append("  \((duration > 0 ? at(start &+ duration) : "").padding(12)) ended without a response (\(r.end ?? "?"))")
        }
        var record = RequestRecord(
            requestID: r.requestID ?? "", side: side == "server" ? .server : .client, pid: r.pid, tid: r.tid ?? 0,
            comm: r.comm, cookie: r.cookie ?? 0, method: r.method ?? "", target: r.target ?? "", status: r.status ?? 0,
            local: .ipv4(0, 0, 0, 0, port: 0), remote: .ipv4(0, 0, 0, 0, port: 0), startNs: start, connectNs: connect,
            synRetransmits: r.synRetransmits ?? 0, retransmits: r.retransmits ?? 0, pollWaitNs: r.pollWaitNs ?? 0,
            ttfbNs: ttfb, end: RequestRecord.End(rawValue: r.end ?? "") ?? .responded)
        record.durationNs = r.durationNs ?? ttfb
        for reading in RequestReading.lines(record) { out.append("  → \(reading)") }
        return out.joined(separator: "\n")
    }
}
