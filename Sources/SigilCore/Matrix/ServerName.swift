/// Matrix server names (appendices, "Server Name"):
///
///     server_name = hostname [ ":" port ]
///     port        = 1*5DIGIT
///     hostname    = IPv4address / "[" IPv6address "]" / dns-name
///     IPv6address = 2*45IPv6char ; DIGIT / A-F / a-f / ":" / "."
///     dns-name    = 1*255dns-char ; DIGIT / ALPHA / "-" / "."
///
/// (An IPv4 address is also a valid dns-name, so it needs no case of its own.) Checking this
/// keeps quotes, backslashes and spaces out of X-Matrix headers and the keyring's ASCII-only.
public enum ServerName {
    public static func isValid(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { isValid(UnsafeRawBufferPointer($0)) }
    }

    /// The same check on raw bytes, without allocating (the daemon's hot path).
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        guard count > 0, count <= 255 + 6 else { return false }
        var index = 0
        if bytes[0] == UInt8(ascii: "[") {
            index = 1
            while index < count, bytes[index] != UInt8(ascii: "]") {
                guard isIPv6Char(bytes[index]) else { return false }
                index += 1
            }
            guard index < count, (2...45).contains(index - 1) else { return false }
            index += 1
        } else {
            while index < count, bytes[index] != UInt8(ascii: ":") {
                guard isDNSChar(bytes[index]) else { return false }
                index += 1
            }
            guard index >= 1, index <= 255 else { return false }
        }
        if index == count { return true }
        guard bytes[index] == UInt8(ascii: ":") else { return false }
        let digits = count - index - 1
        guard digits >= 1, digits <= 5 else { return false }
        for position in (index + 1)..<count where !isDigit(bytes[position]) { return false }
        return true
    }

    private static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
    private static func isDNSChar(_ b: UInt8) -> Bool {
        isDigit(b) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
    }
    private static func isIPv6Char(_ b: UInt8) -> Bool {
        isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66) || b == UInt8(ascii: ":") || b == UInt8(ascii: ".")
    }
}
