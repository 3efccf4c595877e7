import Glibc

/// Reads the agent's live event stream, line by line (`tincture tail`).
public final class EventStreamClient {
    /// Why the stream could not be opened, in words a user can act on.
    public struct ConnectError: Error, CustomStringConvertible {
        public var description: String
    }

    private let fd: Int32
    private var buffer = [UInt8]()
    private var start = 0

    public init(path: String) throws {
        do {
            fd = try Sockets.connectUnix(path)
        } catch let error as SocketError {
            switch error.errno {
            case ENOENT, ECONNREFUSED:
                throw ConnectError(description: """
                    no Tincture agent is serving events at \(path) (\(String(cString: strerror(error.errno)))).
                    Start one:  sudo systemctl start tincture   or   sudo tincture agent
                    If the agent uses another socket, pass it with --socket PATH.
                    """)
            case EACCES, EPERM:
                throw ConnectError(description: "permission denied on \(path): the event stream is root-only (mode 0600); run: sudo tincture tail")
            default:
                throw ConnectError(description: "cannot open the event stream: \(error)")
            }
        }
    }

    deinit { close(fd) }

    /// Send one command line (`subscribe`, `explain ID`).
    public func send(_ line: String) -> Bool {
        Sockets.writeAll(fd, line.hasSuffix("\n") ? line : line + "\n")
    }

    /// The next line without its newline; nil at end of stream. `beforeWaiting` runs
    /// each time every line received so far was returned and the next read may block
    /// (a caller that buffers its output flushes there).
    public func nextLine(beforeWaiting: () -> Void = {}) -> ArraySlice<UInt8>? {
        while true {
            if let nl = buffer[start...].firstIndex(of: 10) {
                let line = buffer[start..<nl]
                start = nl + 1
                return line
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            beforeWaiting()
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            buffer += chunk[0..<n]
        }
    }
}
