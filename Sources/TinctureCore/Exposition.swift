/// How the agent is doing, gathered at scrape time from outside the aggregates.
public struct SelfObservation: Sendable {
    public struct Probe: Sendable, Equatable {
        public var hook: String
        /// nil when the hook could not attach in any allowed mode.
        public var mode: AttachMode?
        public init(hook: String, mode: AttachMode?) { self.hook = hook; self.mode = mode }
    }

    /// Ring-buffer reserve failures summed over CPUs, by event kind.
    public var lostEvents: [EventKind: UInt64] = [:]
    /// Kernel-side state the BPF programs could not keep, by reason.
    public var kernelUntracked: [String: UInt64] = [:]
    public var subscriberDrops: UInt64 = 0
    public var subscribers: Int = 0
    public var probes: [Probe] = []
    public var version: String = "unknown"
    /// The kernel's poll-wait histogram: every wait, short ones included.
    public var pollWaits: [PollHistogramRow] = []
    /// The kernel's connect histogram: every connect, fast ones included.
    public var connects: [ConnectHistogramRow] = []
    /// How long the previous /metrics scrape took to gather and render.
    public var lastScrapeSeconds: Double = 0
    /// Series cap for the kernel-aggregated families (label sets past it fold into "other").
    public var seriesCap: Int = Aggregates.defaultSeriesCap

    public init() {}
}

/// Renders Prometheus text exposition format 0.0.4, or OpenMetrics 1.0 (with
/// exemplars carrying request IDs and the closing `# EOF`).
public struct ExpositionWriter {
    public static let textContentType = "text/plain; version=0.0.4; charset=utf-8"
    public static let openMetricsContentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"

    /// The exposition as UTF-8 bytes: appended to in place, one buffer for the
    /// whole scrape, numbers formatted without intermediate strings.
    public private(set) var bytes: [UInt8] = []
    public let openMetrics: Bool

    public var text: String { String(decoding: bytes, as: UTF8.self) }

    public init(openMetrics: Bool = false, capacity: Int = 64 * 1024) {
        self.openMetrics = openMetrics
        bytes.reserveCapacity(capacity)
    }

    /// Whether an Accept header asks for OpenMetrics.
    public static func wantsOpenMetrics(accept: String?) -> Bool {
        accept?.lowercased().contains("application/openmetrics-text") ?? false
    }

    public static func render(_ aggregates: Aggregates, _ observation: SelfObservation,
                              openMetrics: Bool = false) -> String {
        String(decoding: renderBytes(aggregates, observation, openMetrics: openMetrics), as: UTF8.self)
    }

    /// The whole exposition as UTF-8, ready for the socket.
    public static func renderBytes(_ aggregates: Aggregates, _ observation: SelfObservation,
                                   openMetrics: Bool = false) -> [UInt8] {
        // ~2.5 KiB per kernel row (a histogram of 20+ lines): one allocation for most scrapes.
        var w = ExpositionWriter(openMetrics: openMetrics,
                                 capacity: 64 * 1024 + 2600 * (observation.connects.count + observation.pollWaits.count))
        var connects = aggregates.connectDuration
        // Labels computed once per row; the order decides which rows fold past the cap.
        let keyed = observation.connects.map { ([$0.comm, $0.destination.description, $0.result.name], $0) }
        for (labels, row) in keyed.sorted(by: { $0.0.lexicographicallyPrecedes($1.0) }) {
            connects.merge(labels, counts: row.counts, sum: Double(row.sumNs) / 1e9)
        }
        w.histogram(connects)
        w.counter(aggregates.retransmits)
        w.histogram(aggregates.requestDuration)
        w.counter("tincture_http_requests_ended_total",
                  "HTTP requests whose record was finished, by how: "
                      + RequestRecord.End.allCases.map(\.rawValue).joined(separator: ", ") + ".",
                  RequestRecord.End.allCases.map { (["end": $0.rawValue], aggregates.requestEnds[$0.rawValue] ?? 0) })
        let poll = pollWaitFamily(observation.pollWaits, cap: observation.seriesCap)
        w.histogram(name: poll.name, help: poll.help, labelNames: ["comm", "syscall"], bounds: Buckets.pollSeconds,
                    rows: poll.rows, exemplars: aggregates.pollWaitExemplars)
        w.counter("tincture_events_total", "Events received from the kernel ring buffer, by kind.",
                  EventKind.allCases.map { (["kind": $0.name], aggregates.eventsReceived[$0]) })
        w.counter("tincture_events_lost_total",
                  "Events dropped in the kernel because the ring buffer was full, by kind.",
                  EventKind.allCases.map { (["kind": $0.name], observation.lostEvents[$0] ?? 0) })
        w.counter("tincture_kernel_untracked_total",
                  "Kernel-side state the BPF programs could not record, by reason.",
                  observation.kernelUntracked.sorted { $0.key < $1.key }.map { (["reason": $0.key], $0.value) })
        w.counter("tincture_decode_errors_total", "Ring-buffer records the agent could not decode, by reason.",
                  aggregates.decodeErrors.sorted { $0.key < $1.key }.map { (["reason": $0.key], $0.value) })
        w.counter("tincture_subscriber_dropped_events_total",
                  "Events not delivered to a live subscriber because it read too slowly.",
                  [([:], observation.subscriberDrops)])
        w.gauge("tincture_subscribers", "Live event subscribers connected now.",
                [([:], Double(observation.subscribers))])
        w.counter("tincture_series_folded_total",
                  "Observations folded into label value \"other\" because a family reached its series cap.",
                  [(["family": connects.name], connects.folded),
                   (["family": aggregates.retransmits.name], aggregates.retransmits.folded),
                   (["family": aggregates.requestDuration.name], aggregates.requestDuration.folded),
                   (["family": poll.name], poll.folded)])
        w.gauge("tincture_probe_info", "Attach mode of each hook (1 per hook); mode=\"none\" when it could not attach.",
                observation.probes.map { (["hook": $0.hook, "mode": $0.mode?.rawValue ?? "none"], 1) })
        w.gauge("tincture_probe_attached", "1 when the hook is attached, 0 when it failed in every allowed mode.",
                observation.probes.map { (["hook": $0.hook], $0.mode == nil ? 0 : 1) })
        w.gauge("tincture_scrape_render_seconds",
                "Time the previous /metrics scrape took to read the kernel maps and render, seconds.",
                [([:], observation.lastScrapeSeconds)])
        w.gauge("tincture_build_info", "Build information.", [(["version": observation.version], 1)])
        if openMetrics { w.append("# EOF\n") }
        return w.bytes
    }

    public mutating func histogram(_ family: HistogramFamily) {
        histogram(name: family.name, help: family.help, labelNames: family.labelNames, bounds: family.bounds,
                  rows: zip(family.labelSets, family.histograms).map { (labels: $0, counts: $1.counts, sum: $1.sum) },
                  exemplars: family.exemplars)
    }

    /// One histogram family from rows of per-bucket (not cumulative) counts.
    public mutating func histogram(name: String, help: String, labelNames: [String], bounds: [Double],
                                   rows: [(labels: [String], counts: [UInt64], sum: Double)],
                                   exemplars: [[String]: [Int: Exemplar]] = [:]) {
        header(name, help, "histogram")
        // `le="0.5"} ` for each bound, then +Inf, back to back; les[i] = leBytes[leEnds[i-1]..<leEnds[i]]
        var leBytes: [UInt8] = []
        var leEnds: [Int] = []
        for bound in bounds.map(Self.formatDouble) + ["+Inf"] {
            leBytes += Array("le=\"\(bound)\"} ".utf8)
            leEnds.append(leBytes.count)
        }
        var labelBytes: [UInt8] = []
        var prefix: [UInt8] = []  // name_bucket{labels,
        for row in rows.sorted(by: { $0.labels.lexicographicallyPrecedes($1.labels) }) {
            labelBytes.removeAll(keepingCapacity: true)
            for (i, (label, value)) in zip(labelNames, row.labels).enumerated() {
                if i > 0 { labelBytes.append(UInt8(ascii: ",")) }
                labelBytes.append(contentsOf: label.utf8)
                labelBytes.append(contentsOf: #"=""#.utf8)
                Self.appendEscapedLabel(value, to: &labelBytes)
                labelBytes.append(UInt8(ascii: "\""))
            }
            prefix.removeAll(keepingCapacity: true)
            prefix.append(contentsOf: name.utf8)
            prefix.append(contentsOf: "_bucket{".utf8)
            prefix.append(contentsOf: labelBytes)
            if !labelBytes.isEmpty { prefix.append(UInt8(ascii: ",")) }
            var cumulative: UInt64 = 0
            let rowExemplars = openMetrics ? exemplars[row.labels] ?? [:] : [:]
            // Unsafe views: appending from them costs no reference counting per line.
            prefix.withUnsafeBufferPointer { prefix in
                leBytes.withUnsafeBufferPointer { les in
                    row.counts.withUnsafeBufferPointer { counts in
                        for index in 0..<min(leEnds.count, counts.count) {
                            cumulative += counts[index]
                            bytes.append(contentsOf: prefix)
                            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: les[(index == 0 ? 0 : leEnds[index - 1])..<leEnds[index]]))
                            appendInteger(cumulative)
                            if let e = rowExemplars[index] {
                                append(#" # {request_id=""#)
                                Self.appendEscapedLabel(e.requestID, to: &bytes)
                                append("\"} ")
                                append(Self.formatDouble(e.value))
                                bytes.append(UInt8(ascii: " "))
                                append(Self.formatTimestamp(e.timestamp))
                            }
                            bytes.append(UInt8(ascii: "\n"))
                        }
                    }
                }
            }
            for (suffix, isSum) in [("_sum", true), ("_count", false)] {
                append(name)
                append(suffix)
                if !labelBytes.isEmpty {
                    bytes.append(UInt8(ascii: "{"))
                    bytes.append(contentsOf: labelBytes)
                    bytes.append(UInt8(ascii: "}"))
                }
                bytes.append(UInt8(ascii: " "))
                if isSum { append(Self.formatDouble(row.sum)) } else { appendInteger(cumulative) }
                bytes.append(UInt8(ascii: "\n"))
            }
        }
    }

    public mutating func append(_ s: String) {
        var s = s
        s.withUTF8 { bytes.append(contentsOf: $0) }
    }

    /// Decimal digits of `v`, with no intermediate string.
    public mutating func appendInteger(_ v: UInt64) {
        if v < 10 {
            bytes.append(UInt8(ascii: "0") &+ UInt8(v))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: enough for 20 digits
        var n = v, count = 0
        withUnsafeMutableBytes(of: &digits) { buf in
            while n > 0 {
                buf[23 - count] = UInt8(ascii: "0") &+ UInt8(n % 10)
                n /= 10
                count += 1
            }
            bytes.append(contentsOf: buf[(24 - count)...])
        }
    }

    /// A label value with backslash, double quote and line feed escaped.
    static func appendEscapedLabel(_ s: String, to out: inout [UInt8]) {
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
            default: out.append(byte)
            }
        }
    }

    public mutating func counter(_ family: CounterFamily) {
        header(family.name, family.help, "counter")
        for (labels, value) in family.series.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            let text = zip(family.labelNames, labels).map { "\($0)=\"\(Self.escapeLabel($1))\"" }
                .joined(separator: ",")
            append("\(family.name){\(text)} \(value)\n")
        }
    }

    static let pollWaitName = "tincture_poll_wait_seconds"

    /// The kernel's rows as one family, merged past the series cap into comm="other".
    static func pollWaitFamily(_ rows: [PollHistogramRow], cap: Int)
        -> (name: String, help: String, rows: [(labels: [String], counts: [UInt64], sum: Double)], folded: UInt64) {
        var merged: [[String]: (counts: [UInt64], sum: Double)] = [:]
        var folded: UInt64 = 0
        for row in rows.sorted(by: { ($0.comm, $0.syscall) < ($1.comm, $1.syscall) }) {
            var key = [row.comm, row.syscall]
            if merged[key] == nil && merged.count >= cap {
                key[0] = "other"
                folded += row.counts.reduce(0, +)
            }
            var entry = merged[key] ?? ([UInt64](repeating: 0, count: Buckets.pollSeconds.count + 1), 0)
            for (i, c) in row.counts.prefix(entry.counts.count).enumerated() { entry.counts[i] += c }
            entry.sum += Double(row.sumNs) / 1e9
            merged[key] = entry
        }
        return (pollWaitName,
                "Time threads blocked in poll, ppoll, select, pselect6 and epoll_wait/epoll_pwait/epoll_pwait2, every wait counted in the kernel, by command name and syscall.",
                merged.map { (labels: $0.key, counts: $0.value.counts, sum: $0.value.sum) }, folded)
    }

    public mutating func counter(_ name: String, _ help: String, _ samples: [([String: String], UInt64)]) {
        header(name, help, "counter")
        for (labels, value) in samples { append("\(name)\(Self.labelText(labels)) \(value)\n") }
    }

    public mutating func gauge(_ name: String, _ help: String, _ samples: [([String: String], Double)]) {
        header(name, help, "gauge")
        for (labels, value) in samples { append("\(name)\(Self.labelText(labels)) \(Self.formatDouble(value))\n") }
    }

    private mutating func header(_ name: String, _ help: String, _ type: String) {
        // OpenMetrics names a counter family without its _total suffix and escapes quotes in HELP.
        let family = openMetrics && type == "counter" && name.hasSuffix("_total") ? String(name.dropLast(6)) : name
        let helpText = openMetrics ? Self.escapeHelp(help).replacingAll("\"", with: "\\\"") : Self.escapeHelp(help)
        append("# HELP \(family) \(helpText)\n# TYPE \(family) \(type)\n")
    }

    /// Seconds with millisecond precision, e.g. "1795292500.563".
    static func formatTimestamp(_ seconds: Double) -> String {
        let ms = Int64((seconds * 1000).rounded())
        let frac = ms % 1000
        return "\(ms / 1000).\(frac < 10 ? "00" : frac < 100 ? "0" : "")\(frac)"
    }

    static func labelText(_ labels: [String: String]) -> String {
        if labels.isEmpty { return "" }
        return "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(escapeLabel($0.value))\"" }
            .joined(separator: ",") + "}"
    }

    /// Label values escape backslash, double quote and line feed (as `appendEscapedLabel`).
    public static func escapeLabel(_ s: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        appendEscapedLabel(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// HELP text escapes backslash and line feed.
    static func escapeHelp(_ s: String) -> String {
        s.replacingAll("\\", with: "\\\\").replacingAll("\n", with: "\\n")
    }

    /// Integers print without a fraction; everything else in Swift's shortest round-trip form.
    public static func formatDouble(_ v: Double) -> String {
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v.isNaN { return "NaN" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for ch in self { if ch == target { out += replacement } else { out.append(ch) } }
        return out
    }
}
