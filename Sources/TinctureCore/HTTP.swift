/// The start of an HTTP/1.x message as the kernel captured it: the first bytes of
/// one send or receive on a TCP socket, possibly cut at the capture limit.
public enum HTTPMessageHead: Equatable, Sendable {
    case request(HTTPRequestHead)
    case response(HTTPResponseHead)
}

public struct HTTPRequestHead: Equatable, Sendable {
    public var method: String
    /// As sent, cut to `HTTPParser.maxTargetLength` characters.
    public var target: String
    /// Header names lower-cased, values with surrounding whitespace removed and folded
    /// continuation lines joined by one space. Only complete lines are kept.
    public var headers: [(name: String, value: String)]
    /// The head ended inside the captured bytes (false: cut by the capture limit).
    public var complete: Bool

    public init(method: String, target: String, headers: [(name: String, value: String)], complete: Bool) {
        self.method = method
        self.target = target
        self.headers = headers
        self.complete = complete
    }

    /// The first value of a header, by case-insensitive name.
    public func header(_ name: String) -> String? {
        header(lowercased: name.lowercased())
    }

    func header(lowercased name: String) -> String? {
        headers.first { $0.name == name }?.value
    }

    public static func == (a: HTTPRequestHead, b: HTTPRequestHead) -> Bool {
        a.method == b.method && a.target == b.target && a.complete == b.complete
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
    }
}

public struct HTTPResponseHead: Equatable, Sendable {
    /// 100...999 as sent.
    public var status: Int
}

/// Recognises and parses the head of an HTTP/1.x request or response from raw bytes.
/// Anything else — TLS records, other protocols, binary junk, malformed lines — is
/// nil. Never traps, whatever the input.
public enum HTTPParser {
    public static let maxTargetLength = 256
    public static let maxHeaders = 64
    static let maxMethodLength = 16

    /// `keeping`: lower-case names of the headers wanted (nil: all). Headers not kept are
    /// still checked and skipped like any other line, but never become strings: the
    /// correlator asks only for its request-ID headers, on every request it sees.
    public static func parse(_ bytes: [UInt8], keeping: HeaderNames? = nil) -> HTTPMessageHead? {
        bytes.withUnsafeBufferPointer { parse($0, keeping: keeping) }
    }

    /// The same, over bytes in place: the parser walks them without reference
    /// counting (the agent parses every captured request and response).
    public static func parse(_ bytes: Bytes, keeping: HeaderNames? = nil) -> HTTPMessageHead? {
        if bytes.count >= 7 && bytes[0] == 0x48 && bytes.starts(with: responsePrefix) {
            return parseResponse(bytes).map(HTTPMessageHead.response)
        }
        return parseRequest(bytes, keeping: keeping).map(HTTPMessageHead.request)
    }

    public typealias Bytes = UnsafeBufferPointer<UInt8>
    typealias ByteSlice = Slice<Bytes>

    private static let responsePrefix = Array("HTTP/1.".utf8)
    private static let requestVersion = Array(" HTTP/1.".utf8)

    /// A set of header names, lower case, matched against raw bytes without building strings.
    public struct HeaderNames: Sendable, Equatable {
        let names: [[UInt8]]
        /// The same names as strings, for the headers kept.
        let strings: [String]

        public init(_ names: [String]) {
            strings = names.map { $0.lowercased() }
            self.names = strings.map { Array($0.utf8) }
        }

        /// The lower-case name `name` matches, case-insensitively, if it is one of these.
        func match(_ name: ByteSlice) -> String? {
            // Plain loops: every header line of every request passes here.
            let bytes = name.base
            for k in names.indices where names[k].count == name.count {
                var j = name.startIndex
                var equal = true
                for w in names[k] {
                    let c = bytes[j]
                    if w != (c >= 0x41 && c <= 0x5a ? c | 0x20 : c) { equal = false; break }
                    j += 1
                }
                if equal { return strings[k] }
            }
            return nil
        }
    }

    /// "HTTP/1.1 200 OK": the status code.
    static func parseResponse(_ b: Bytes) -> HTTPResponseHead? {
        // "HTTP/1.x" then SP then three digits then SP, CR or LF (or the end of a short capture).
        guard b.count >= 12, isDigit(b[7]), b[8] == 0x20 else { return nil }
        let digits = b[9..<12]
        guard digits.allSatisfy(isDigit), digits.first != UInt8(ascii: "0") else { return nil }
        if b.count > 12 && b[12] != 0x20 && b[12] != 0x0d && b[12] != 0x0a { return nil }
        return HTTPResponseHead(status: digits.reduce(0) { $0 * 10 + Int($1 - 0x30) })
    }

    static func parseRequest(_ b: Bytes, keeping: HeaderNames? = nil) -> HTTPRequestHead? {
        // Method: an upper-case token, then one space.
        var i = 0
        while i < b.count && i <= maxMethodLength && isUpperToken(b[i]) { i += 1 }
        guard i > 0, i < b.count, b[i] == 0x20 else { return nil }
        let method = String(decoding: b[0..<i], as: UTF8.self)
        i += 1
        // Target: visible ASCII up to the next space; origin-form, absolute-form, authority or "*".
        let targetStart = i
        while i < b.count && isVisible(b[i]) { i += 1 }
        guard i > targetStart else { return nil }
        let first = b[targetStart]
        guard first == UInt8(ascii: "/") || first == UInt8(ascii: "*") || isAlnum(first) else { return nil }
        let target = String(decoding: b[targetStart..<min(i, targetStart + maxTargetLength)], as: UTF8.self)
        let lineEnd: Int
        if i == b.count {
            // Cut inside the target: a request line too long for the capture. Keep what we have
            // only for well-known methods, where a false positive is unlikely.
            guard knownMethods.contains(method) else { return nil }
            return HTTPRequestHead(method: method, target: target, headers: [], complete: false)
        }
        // " HTTP/1.x" then end of line.
        let version = requestVersion
        let rest = b[i...]
        if rest.count < version.count + 1 {
            guard rest.elementsEqual(version.prefix(rest.count)), knownMethods.contains(method) else { return nil }
            return HTTPRequestHead(method: method, target: target, headers: [], complete: false)
        }
        guard rest.starts(with: version), isDigit(b[i + version.count]) else { return nil }
        i += version.count + 1
        guard let end = endOfLine(b, from: i), end.start == i else {
            // Junk after the version, or the line was cut there.
            if i == b.count || (i + 1 == b.count && b[i] == 0x0d) {
                return HTTPRequestHead(method: method, target: target, headers: [], complete: false)
            }
            return nil
        }
        lineEnd = end.next
        let (headers, complete) = parseHeaders(b, from: lineEnd, keeping: keeping)
        return HTTPRequestHead(method: method, target: target, headers: headers, complete: complete)
    }

    /// Header lines until the empty line; (headers, whether the empty line was seen).
    static func parseHeaders(_ b: Bytes, from start: Int,
                             keeping: HeaderNames? = nil) -> ([(name: String, value: String)], Bool) {
        var headers: [(name: String, value: String)] = []
        // Whether the last header line was kept (a continuation line belongs to it).
        var lastKept = false
        var i = start
        while let line = endOfLine(b, from: i) {
            if line.start == i { return (headers, true) }  // the empty line ends the head
            let content = b[i..<line.start]
            i = line.next
            if content.first == 0x20 || content.first == 0x09 {
                // obs-fold: a continuation of the previous value.
                if lastKept && !headers.isEmpty {
                    let more = trim(content)
                    if !more.isEmpty, more.allSatisfy(isFieldValueByte) {
                        headers[headers.count - 1].value += " " + String(decoding: more, as: UTF8.self)
                    }
                }
                continue
            }
            lastKept = false
            guard let colon = content.firstIndex(of: UInt8(ascii: ":")), colon > content.startIndex else { continue }
            let name = content[content.startIndex..<colon]
            // A wanted name comes lower-cased from the set, without building a string.
            var wanted: String?
            if let keeping {
                guard let match = keeping.match(name) else { continue }
                wanted = match
            }
            guard name.allSatisfy(isToken) else { continue }
            let value = trim(content[(colon + 1)...])
            guard value.allSatisfy(isFieldValueByte) else { continue }
            if headers.count < maxHeaders {
                lastKept = true
                let lower = wanted ?? String(decoding: name, as: UTF8.self).lowercased()
                headers.append((lower, String(decoding: value, as: UTF8.self)))
            }
        }
        // Ran out of bytes before the empty line: the capture was cut; the partial last line is dropped.
        return (headers, false)
    }

    /// The next line ending at or after `from`: where the line's content stops and the next begins.
    static func endOfLine(_ b: Bytes, from: Int) -> (start: Int, next: Int)? {
        var i = from
        while i < b.count {
            if b[i] == 0x0a { return (i > from && b[i - 1] == 0x0d ? i - 1 : i, i + 1) }
            i += 1
        }
        return nil
    }

    static func trim(_ s: ByteSlice) -> ByteSlice {
        var s = s
        while let f = s.first, f == 0x20 || f == 0x09 { s.removeFirst() }
        while let l = s.last, l == 0x20 || l == 0x09 { s.removeLast() }
        return s
    }

    static let knownMethods: Set<String> = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ]

    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isAlnum(_ c: UInt8) -> Bool { isDigit(c) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7a) }
    static func isUpperToken(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5a) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") }
    static func isVisible(_ c: UInt8) -> Bool { c > 0x20 && c < 0x7f }
    /// RFC 9110 tchar.
    static func isToken(_ c: UInt8) -> Bool { isAlnum(c) || "!#$%&'*+-.^_`|~".utf8.contains(c) }
    /// Visible ASCII, space, tab, and bytes ≥ 0x80 (obs-text); no control characters.
    static func isFieldValueByte(_ c: UInt8) -> Bool { c == 0x09 || (c >= 0x20 && c != 0x7f) }
}

/// Picks a request's ID from its headers: the first present of a configured list.
/// `traceparent` contributes its trace-id (W3C Trace Context).
public struct RequestIDExtractor: Sendable, Equatable {
    public static let defaultHeaders = ["X-Request-ID", "X-Correlation-ID", "traceparent"]
    public static let maxLength = 128

    public let headers: [String]
    /// The same names, for `HTTPParser.parse(_:keeping:)`.
    public let headerNames: HTTPParser.HeaderNames

    public init(headers: [String] = RequestIDExtractor.defaultHeaders) {
        self.headers = headers.map { $0.lowercased() }
        headerNames = HTTPParser.HeaderNames(self.headers)
    }

    /// nil when none of the headers carries a usable value.
    public func requestID(of head: HTTPRequestHead) -> String? {
        for name in headers {
            guard let value = head.header(lowercased: name) else { continue }
            if name == "traceparent" {
                if let trace = Self.traceID(fromTraceparent: value) { return trace }
                continue
            }
            if let id = Self.usable(value) { return id }
        }
        return nil
    }

    /// Printable ASCII without spaces or quotes, at most `maxLength` characters.
    static func usable(_ value: String) -> String? {
        guard !value.isEmpty, value.utf8.count <= maxLength,
              value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") })
        else { return nil }
        return value
    }

    /// "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" → "4bf92f3577b34da6a3ce929d0e0e4736".
    public static func traceID(fromTraceparent value: String) -> String? {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].count == 2, parts[0] != "ff", parts[1].count == 32, parts[2].count == 16,
              parts[3].count == 2,
              parts.prefix(4).allSatisfy({ $0.utf8.allSatisfy { isLowerHex($0) } }),
              parts[1].contains(where: { $0 != "0" }), parts[2].contains(where: { $0 != "0" })
        else { return nil }
        // Version 00 has exactly four fields; later versions may append more.
        if parts[0] == "00" && parts.count != 4 { return nil }
        return String(parts[1])
    }

    static func isLowerHex(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) }
}
