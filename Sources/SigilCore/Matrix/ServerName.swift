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
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 255 + 6 else { return false }
        var hostEnd = bytes.count
        if bytes[0] == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return false }
            let inner = bytes[1..<close]
            guard (2...45).contains(inner.count), inner.allSatisfy(isIPv6Char) else { return false }
            hostEnd = close + 1
        } else {
            if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) { hostEnd = colon }
            let host = bytes[..<hostEnd]
            guard (1...255).contains(host.count), host.allSatisfy(isDNSChar) else { return false }
        }
        if hostEnd == bytes.count { return true }
        guard bytes[hostEnd] == UInt8(ascii: ":") else { return false }
        let port = bytes[(hostEnd + 1)...]
        return (1...5).contains(port.count) && port.allSatisfy(isDigit)
    }

    private static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
    private static func isDNSChar(_ b: UInt8) -> Bool {
        isDigit(b) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
    }
    private static func isIPv6Char(_ b: UInt8) -> Bool {
        isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66) || b == UInt8(ascii: ":") || b == UInt8(ascii: ".")
    }
}
