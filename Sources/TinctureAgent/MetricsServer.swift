import Glibc
import Synchronization
import TinctureCore

/// A minimal HTTP/1.1 server for scrapes: GET/HEAD of /metrics, /healthz and /.
/// One short-lived thread per connection, at most `maxConnections` at once, every
/// read and write bounded by a timeout, `Connection: close` on every response, so
/// a slow or dead client costs one thread for a few seconds and nothing more.
final class MetricsServer: @unchecked Sendable {
    // @unchecked: `listener` is set once in init; the counter is atomic.
    struct Response {
        var status: Int
        var contentType: String
        var body: [UInt8]

        init(status: Int, contentType: String, body: [UInt8]) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }

        init(status: Int, contentType: String, body: String) {
            self.init(status: status, contentType: contentType, body: Array(body.utf8))
        }
    }

    static let maxConnections = 32
    static let maxHeaderBytes = 8192
    static let ioTimeoutSeconds = 5

    let address: ListenAddress
    private let listener: Listener
    private let active = Atomic<Int>(0)
    private let route: (_ path: String, _ accept: String?) -> Response

    init(address: ListenAddress, route: @escaping (_ path: String, _ accept: String?) -> Response) throws {
        self.address = address
        self.route = route
        listener = Listener(fd: try Sockets.listenTCP(address))
    }

    var boundPort: UInt16 { Sockets.boundPort(listener.fd) }

    func start() {
        listener.start(name: "tn-http") { [self] fd in
            if active.load(ordering: .relaxed) >= Self.maxConnections {
                let busy = Response(status: 503, contentType: "text/plain; charset=utf-8", body: "too many connections\n")
                _ = Self.send(busy, head: false, to: fd)
                close(fd)
                return
            }
            active.add(1, ordering: .relaxed)
            OSThread(name: "tn-http-conn") { [self] in
                serve(fd)
                close(fd)
                active.subtract(1, ordering: .relaxed)
            }.detach()
        }
    }

    func stop() { listener.stop() }

    private func serve(_ fd: Int32) {
        Sockets.setTimeouts(fd, seconds: Self.ioTimeoutSeconds)
        var request = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 2048)
        while !Self.headerComplete(request) {
            if request.count > Self.maxHeaderBytes {
                let large = Response(status: 431, contentType: "text/plain; charset=utf-8", body: "request header too large\n")
                _ = Self.send(large, head: false, to: fd)
                return
            }
            let n = recv(fd, &buf, buf.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }  // closed, reset or timed out: nothing to answer
            request += buf[0..<n]
        }
        let (status, method, path) = Self.parseRequestLine(request)
        let response: Response
        if let status {
            response = Response(status: status, contentType: "text/plain; charset=utf-8", body: "bad request\n")
        } else if method != "GET" && method != "HEAD" {
            response = Response(status: 405, contentType: "text/plain; charset=utf-8", body: "only GET and HEAD\n")
        } else {
            response = route(path, Self.header("accept", in: request))
        }
        _ = Self.send(response, head: method == "HEAD", to: fd)
    }

    /// The value of a request header (case-insensitive name), if present.
    static func header(_ name: String, in bytes: [UInt8]) -> String? {
        if case .request(let head)? = HTTPParser.parse(bytes) { return head.header(name) }
        return nil
    }

    static func headerComplete(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 4 else { return false }
        for i in 0...(bytes.count - 4)
        where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return true
        }
        return false
    }

    /// (error status or nil, method, path without query).
    static func parseRequestLine(_ bytes: [UInt8]) -> (Int?, String, String) {
        guard let end = bytes.firstIndex(of: 13) else { return (400, "", "") }
        let line = String(decoding: bytes[0..<end], as: UTF8.self)
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return (400, "", "") }
        let target = parts[1]
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return (nil, String(parts[0]), String(path))
    }

    /// Status line, headers and (unless HEAD) body, in one write.
    static func send(_ r: Response, head: Bool, to fd: Int32) -> Bool {
        var out = Array(headers(r).utf8)
        if !head { out += r.body }
        return out.withUnsafeBytes { Sockets.writeAll(fd, $0) }
    }

    static func headers(_ r: Response) -> String {
        let reason: String
        switch r.status {
        case 200: reason = "OK"
        case 400: reason = "Bad Request"
        case 404: reason = "Not Found"
        case 405: reason = "Method Not Allowed"
        case 431: reason = "Request Header Fields Too Large"
        case 503: reason = "Service Unavailable"
        default: reason = "Error"
        }
        var text = "HTTP/1.1 \(r.status) \(reason)\r\n"
        text += "Content-Type: \(r.contentType)\r\n"
        text += "Content-Length: \(r.body.count)\r\n"
        if r.status == 405 { text += "Allow: GET, HEAD\r\n" }
        text += "Connection: close\r\n\r\n"
        return text
    }
}
