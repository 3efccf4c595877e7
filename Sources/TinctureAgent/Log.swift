import Glibc

/// One line per message on stderr (the journal under systemd), prefixed with the
/// program name and level so `journalctl -u tincture` reads well.
public enum Log {
    public static func info(_ message: String) { emit("info", message) }
    public static func warning(_ message: String) { emit("warning", message) }
    public static func error(_ message: String) { emit("error", message) }

    static func emit(_ level: String, _ message: String) {
        var line = "tincture: \(level): \(message)\n"
        line.withUTF8 { buf in
            var offset = 0
            while offset < buf.count {
                let n = write(STDERR_FILENO, buf.baseAddress! + offset, buf.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
    }
}
