/// Linux errno values the connect path can report, with their symbolic names.
/// Kept here (not from Glibc) so TinctureCore stays free of C imports.
public enum Errno {
    public static let EPERM: Int32 = 1
    public static let EINTR: Int32 = 4
    public static let EAGAIN: Int32 = 11
    public static let ENOMEM: Int32 = 12
    public static let EACCES: Int32 = 13
    public static let EINVAL: Int32 = 22
    public static let EPIPE: Int32 = 32
    public static let EPROTO: Int32 = 71
    public static let EADDRINUSE: Int32 = 98
    public static let EADDRNOTAVAIL: Int32 = 99
    public static let ENETDOWN: Int32 = 100
    public static let ENETUNREACH: Int32 = 101
    public static let ENETRESET: Int32 = 102
    public static let ECONNABORTED: Int32 = 103
    public static let ECONNRESET: Int32 = 104
    public static let ENOBUFS: Int32 = 105
    public static let ETIMEDOUT: Int32 = 110
    public static let ECONNREFUSED: Int32 = 111
    public static let EHOSTDOWN: Int32 = 112
    public static let EHOSTUNREACH: Int32 = 113

    private static let names: [Int32: String] = [
        EPERM: "EPERM", EINTR: "EINTR", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES",
        EINVAL: "EINVAL", EPIPE: "EPIPE", EPROTO: "EPROTO", EADDRINUSE: "EADDRINUSE",
        EADDRNOTAVAIL: "EADDRNOTAVAIL", ENETDOWN: "ENETDOWN", ENETUNREACH: "ENETUNREACH",
        ENETRESET: "ENETRESET", ECONNABORTED: "ECONNABORTED", ECONNRESET: "ECONNRESET",
        ENOBUFS: "ENOBUFS", ETIMEDOUT: "ETIMEDOUT", ECONNREFUSED: "ECONNREFUSED",
        EHOSTDOWN: "EHOSTDOWN", EHOSTUNREACH: "EHOSTUNREACH",
    ]

    /// "EHOSTUNREACH" for 113; "errno_N" for values without a name here.
    public static func name(_ value: Int32) -> String {
        names[value] ?? "errno_\(value)"
    }
}
