internal import CLibbpf
internal import CTinctureBPF
import Glibc

/// A failure in loading, attaching or reading BPF, naming what failed and why.
public struct BPFError: Error, CustomStringConvertible, Sendable {
    /// What was being done. Extensible: new stages add a static member.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        public var description: String { raw }
        public static let open = Code(raw: "opening")
        public static let load = Code(raw: "loading")
        public static let attach = Code(raw: "attaching")
        public static let map = Code(raw: "reading map")
        public static let ringBuffer = Code(raw: "setting up ring buffer")
        public static let lookup = Code(raw: "finding")
    }

    public var code: Code
    /// The object, program or map concerned, e.g. "program tn_fentry_tcp_v4_connect".
    public var subject: String
    public var errno: Int32
    /// The last lines libbpf logged while this failed (verifier output trimmed).
    public var log: String

    public var errnoName: String {
        errno == 0 ? "unknown error" : String(cString: strerror(errno))
    }

    public var description: String {
        "\(code) \(subject): \(errnoName) (errno \(errno))"
    }
}

/// The one place that turns libbpf's return conventions into Swift errors.
enum Libbpf {
    /// Start capturing libbpf's messages (call once before any libbpf use).
    static func captureLogs(verbose: Bool) {
        tn_libbpf_log_capture(verbose ? 1 : 0)
    }

    /// Everything libbpf logged since the last call.
    static func takeLog() -> String {
        var buf = [CChar](repeating: 0, count: 32768)
        _ = tn_libbpf_log_take(&buf, buf.count)
        return String(cString: buf)
    }

    /// libbpf ≥ 1.0 returns -errno from int-returning calls.
    static func check(_ rc: Int32, _ code: BPFError.Code, _ subject: @autoclosure () -> String) throws {
        if rc < 0 { throw BPFError(code: code, subject: subject(), errno: -rc, log: tailOfLog()) }
    }

    /// Pointer-returning calls give NULL and set errno.
    static func check<T>(_ pointer: T?, _ code: BPFError.Code, _ subject: @autoclosure () -> String) throws -> T {
        guard let pointer else {
            let e = Glibc.errno
            throw BPFError(code: code, subject: subject(), errno: e == 0 ? ENOENT : e, log: tailOfLog())
        }
        return pointer
    }

    /// The last few non-empty lines of libbpf's log: where it says what went wrong.
    static func tailOfLog(lines: Int = 4) -> String {
        let all = takeLog().split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }
        return all.suffix(lines).joined(separator: "\n")
    }
}
