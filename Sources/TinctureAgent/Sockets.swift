import Glibc
import Synchronization
import TinctureCore

/// A socket-level failure, naming the address and the call that failed.
public struct SocketError: Error, CustomStringConvertible {
    public var operation: String
    public var address: String
    public var errno: Int32

    public var description: String {
        "\(operation) \(address): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

enum Sockets {
    /// A listening TCP socket on `address` (IPv4 or IPv6 literal).
    static func listenTCP(_ address: ListenAddress) throws -> Int32 {
        let v6 = address.isIPv6
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "creating socket for", address: "\(address)", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var rc: Int32
        if v6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = address.port.bigEndian
            rc = inet_pton(AF_INET6, address.host, &sa.sin6_addr) == 1 ? bindTo(fd, &sa) : -2
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = address.port.bigEndian
            rc = inet_pton(AF_INET, address.host, &sa.sin_addr) == 1 ? bindTo(fd, &sa) : -2
        }
        if rc == -2 {
            close(fd)
            throw SocketError(operation: "parsing \(v6 ? "IPv6" : "IPv4") address", address: address.host, errno: EINVAL)
        }
        if rc != 0 {
            let e = errno
            close(fd)
            throw SocketError(operation: "binding", address: "\(address)", errno: e)
        }
        guard listen(fd, 64) == 0 else {
            let e = errno
            close(fd)
            throw SocketError(operation: "listening on", address: "\(address)", errno: e)
        }
        return fd
    }

    /// A listening unix stream socket at `path`, mode 0600, replacing a stale socket
    /// file but refusing to clobber anything else or a socket another agent serves.
    static func listenUnix(_ path: String) throws -> Int32 {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else {
                throw SocketError(operation: "refusing to replace non-socket file", address: path, errno: EEXIST)
            }
            if let probe = try? connectUnix(path) {
                close(probe)
                throw SocketError(operation: "another agent is already serving", address: path, errno: EADDRINUSE)
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "creating unix socket", address: path, errno: errno) }
        var sa = try unixAddress(path)
        // Create the socket file with no group/other bits at all, then pin 0600.
        let oldMask = umask(0o177)
        let rc = bindTo(fd, &sa)
        let bindErrno = errno
        umask(oldMask)
        guard rc == 0 else {
            close(fd)
            throw SocketError(operation: "binding", address: path, errno: bindErrno)
        }
        chmod(path, 0o600)
        guard listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw SocketError(operation: "listening on", address: path, errno: e)
        }
        return fd
    }

    /// bind(2) for any sockaddr_* value.
    static func bindTo<Address>(_ fd: Int32, _ address: inout Address) -> Int32 {
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<Address>.size)) }
        }
    }

    static func connectUnix(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "creating unix socket", address: path, errno: errno) }
        var sa = try unixAddress(path)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw SocketError(operation: "connecting to", address: path, errno: e)
        }
        return fd
    }

    static func unixAddress(_ path: String) throws -> sockaddr_un {
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: sa.sun_path) else {
            throw SocketError(operation: "socket path too long", address: path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return sa
    }

    /// The port a listening socket got (useful when asked for port 0).
    static func boundPort(_ fd: Int32) -> UInt16 {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return withUnsafeBytes(of: &ss) { raw in
            // sin_port and sin6_port share offset 2 in both layouts.
            UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        }
    }

    /// accept(2) with close-on-exec set on the new descriptor.
    static func accept(_ listener: Int32) -> Int32 {
        let fd = Glibc.accept(listener, nil, nil)
        if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return fd
    }

    static func setTimeouts(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes all of `bytes`; false if the peer went away or timed out.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    static func writeAll(_ fd: Int32, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { writeAll(fd, UnsafeRawBufferPointer($0)) }
    }
}

/// A listening socket served by one accept thread until `stop()`.
final class Listener: @unchecked Sendable {
    // @unchecked: `thread` is set once by start() before any other thread runs;
    // the stop flag is atomic.
    let fd: Int32
    private let stopping = Atomic<Bool>(false)
    private var thread: OSThread?

    init(fd: Int32) { self.fd = fd }

    /// Accepts connections on a new thread and hands each to `handle` there.
    func start(name: String, _ handle: @escaping (Int32) -> Void) {
        thread = OSThread(name: name) { [self] in
            while !stopping.load(ordering: .relaxed) {
                let connection = Sockets.accept(fd)
                if connection >= 0 {
                    handle(connection)
                    continue
                }
                if errno == EINTR || errno == ECONNABORTED { continue }
                if stopping.load(ordering: .relaxed) { return }
                // EMFILE and friends: back off instead of spinning.
                usleep(50_000)
            }
        }
    }

    /// Wakes the accept thread, waits for it, closes the socket.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        shutdown(fd, Int32(SHUT_RDWR))
        thread?.join()
        close(fd)
    }
}
