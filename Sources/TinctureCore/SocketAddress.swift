/// An IPv4 or IPv6 address and port as the kernel stores them (network-order bytes).
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    public enum Family: UInt16, Sendable {
        case inet = 2
        case inet6 = 10
    }

    /// The address bytes in network order, held inline (no allocation per event):
    /// IPv4 in the first 4 bytes of `high`, the rest zero.
    private var high: UInt64
    private var low: UInt64
    public var port: UInt16
    public var family: Family

    public init(family: Family, bytes: [UInt8], port: UInt16) {
        self.family = family
        self.port = port
        var words: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &words) { out in
            for i in 0..<min(bytes.count, family == .inet ? 4 : 16) { out[i] = bytes[i] }
        }
        (high, low) = words
    }

    /// Reads the address (4 or 16 bytes by family) where the kernel wrote it.
    public init(family: Family, rawAddress: UnsafeRawPointer, port: UInt16) {
        self.family = family
        self.port = port
        if family == .inet {
            high = UInt64(rawAddress.loadUnaligned(as: UInt32.self))
            low = 0
        } else {
            high = rawAddress.loadUnaligned(as: UInt64.self)
            low = rawAddress.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        }
    }

    public static func ipv4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16) -> SocketAddress {
        SocketAddress(family: .inet, bytes: [a, b, c, d], port: port)
    }

    /// The address bytes as two machine words (for hashing without the array).
    var words: (UInt64, UInt64) { (high, low) }

    /// 4 bytes for IPv4, 16 for IPv6, network order.
    public var bytes: [UInt8] {
        withUnsafeBytes(of: (high, low)) { Array($0.prefix(family == .inet ? 4 : 16)) }
    }

    /// Byte `i` of the address (0..<4 for IPv4, 0..<16 for IPv6).
    @inline(__always)
    func byte(_ i: Int) -> UInt8 {
        withUnsafeBytes(of: (high, low)) { $0[i] }
    }

    /// Dotted quad, or RFC 5952 text for IPv6 (lower case, longest zero run compressed).
    public var host: String {
        switch family {
        case .inet:
            return bytes.prefix(4).map(String.init).joined(separator: ".")
        case .inet6:
            return Self.ipv6Text(bytes)
        }
    }

    /// `1.2.3.4:80` or `[::1]:80`.
    public var description: String {
        guard family == .inet else {
            return family == .inet6 ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
        // A label on every connect event: IPv4 digits written into a stack buffer; up to
        // 15 bytes ("10.1.0.10:8080") the string is then stored inline, allocating nothing.
        var text: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return withUnsafeMutableBytes(of: &text) { out in
            var n = 0
            func put(_ value: Int) {
                var divisor = 1
                while divisor * 10 <= value { divisor *= 10 }
                while divisor > 0 {
                    out[n] = UInt8(truncatingIfNeeded: 48 + value / divisor % 10)
                    n += 1
                    divisor /= 10
                }
            }
            for i in 0..<4 {
                if i > 0 { out[n] = 46; n += 1 }
                put(Int(byte(i)))
            }
            out[n] = 58
            n += 1
            put(Int(port))
            return String(decoding: UnsafeRawBufferPointer(rebasing: out[0..<n]), as: UTF8.self)
        }
    }

    static func ipv6Text(_ b: [UInt8]) -> String {
        guard b.count == 16 else { return "::" }
        var groups = [UInt16](repeating: 0, count: 8)
        for i in 0..<8 { groups[i] = UInt16(b[2 * i]) << 8 | UInt16(b[2 * i + 1]) }
        // IPv4-mapped addresses read best with the IPv4 part dotted.
        if groups[0..<5].allSatisfy({ $0 == 0 }) && groups[5] == 0xffff {
            return "::ffff:\(b[12]).\(b[13]).\(b[14]).\(b[15])"
        }
        // Find the longest run (length >= 2) of zero groups.
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLen { bestStart = i; bestLen = j - i }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            groups[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestLen < 2 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLen)..<8)
    }
}
