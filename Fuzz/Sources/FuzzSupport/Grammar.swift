/// Reference checks written straight from the specs, independently of Sigil's own, for the
/// targets to compare against.
public enum Grammar {
    /// RFC 9110 tchar.
    public static func isTokenChar(_ b: UInt8) -> Bool {
        isDigit(b) || isAlpha(b) || "!#$%&'*+-.^_`|~".utf8.contains(b)
    }

    public static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
    public static func isAlpha(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }

    /// The Matrix spec's server_name (appendices, "Server Name").
    public static func isServerName<C: Collection<UInt8>>(_ name: C) -> Bool {
        let bytes = Array(name)
        var host = bytes[...]
        var port: ArraySlice<UInt8>?
        if bytes.first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return false }
            host = bytes[...close]
            if close + 1 < bytes.count {
                guard bytes[close + 1] == UInt8(ascii: ":") else { return false }
                port = bytes[(close + 2)...]
            }
            let inner = host.dropFirst().dropLast()
            let ipv6 = inner.allSatisfy {
                isDigit($0) || ($0 >= 0x41 && $0 <= 0x46) || ($0 >= 0x61 && $0 <= 0x66) || $0 == 0x3A || $0 == 0x2E
            }
            guard (2...45).contains(inner.count), ipv6 else { return false }
        } else {
            if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
                host = bytes[..<colon]
                port = bytes[(colon + 1)...]
            }
            guard (1...255).contains(host.count), host.allSatisfy({ isDigit($0) || isAlpha($0) || $0 == 0x2D || $0 == 0x2E }) else {
                return false
            }
        }
        if let port {
            guard (1...5).contains(port.count), port.allSatisfy(isDigit) else { return false }
        }
        return true
    }

    /// An HTTP method as the signer takes it: a token of at most 32 characters.
    public static func isMethod<C: Collection<UInt8>>(_ method: C) -> Bool {
        !method.isEmpty && method.count <= 32 && method.allSatisfy(isTokenChar)
    }

    /// A request target in origin form (RFC 9112): `/` then visible ASCII, and no fragment
    /// (`#` is never sent).
    public static func isURI<C: Collection<UInt8>>(_ uri: C) -> Bool {
        uri.first == UInt8(ascii: "/") && uri.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "#") }
    }
}
