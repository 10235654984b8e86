/// How a SIGN_REQUEST's uri is judged against an access rule's `uri_prefixes`.
///
/// The signature covers the uri exactly as sent, but the server that receives the request (or a
/// proxy in front of it) routes on a decoded, normalised path. A uri that reads as
/// `/_matrix/federation/v1/media/…` to a byte comparison could name another endpoint once
/// `..%2f` or `%2e%2e` is decoded and the dot segments resolved. So the prefix is compared with
/// the path decoded once, and anything that decoding or normalising could turn into a different
/// route is refused outright:
/// - a `.` or `..` segment, where `/`, `\` and `;` all end a segment (servers differ on the
///   last two), after decoding;
/// - percent-encoding that is not `%` and two hex digits (`%u002e`, a lone `%`);
/// - double encoding: the decoded path still holds a `%` (`%252e`, or any `%25`);
/// - control characters after decoding (`%00`, `%0a`);
/// - a `#` (a request target has no fragment).
enum URIPolicy {
    enum Refusal: Error, Equatable, CustomStringConvertible {
        case malformedEscape
        case doubleEncoded
        case dotSegment
        case controlCharacter
        case fragment

        var description: String {
            switch self {
            case .malformedEscape: return "the uri has a '%' that is not followed by two hex digits"
            case .doubleEncoded: return "the uri is percent-encoded twice"
            case .dotSegment: return "the uri has a '.' or '..' path segment"
            case .controlCharacter: return "the uri decodes to a control character"
            case .fragment: return "the uri has a fragment ('#')"
            }
        }
    }

    /// The path part of `uri` (before any `?`), percent-decoded once, or why it is refused.
    static func normalisedPath(_ uri: UnsafeRawBufferPointer) -> Result<[UInt8], Refusal> {
        let pathEnd = uri.firstIndex(of: UInt8(ascii: "?")) ?? uri.count
        if uri.contains(UInt8(ascii: "#")) { return .failure(.fragment) }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(pathEnd)
        var index = 0
        while index < pathEnd {
            let byte = uri[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < pathEnd, let high = hexValue(uri[index + 1]), let low = hexValue(uri[index + 2])
                else { return .failure(.malformedEscape) }
                decoded.append(high << 4 | low)
                index += 3
            } else {
                decoded.append(byte)
                index += 1
            }
        }
        var segmentStart = 0
        for position in 0...decoded.count {
            if position < decoded.count {
                let byte = decoded[position]
                if byte < 0x20 || byte == 0x7F { return .failure(.controlCharacter) }
                // An encoded '%' (%25) can only be there to be decoded again somewhere.
                if byte == UInt8(ascii: "%") { return .failure(.doubleEncoded) }
                guard isSegmentEnd(byte) else { continue }
            }
            let length = position - segmentStart
            if (length == 1 || length == 2) && decoded[segmentStart..<position].allSatisfy({ $0 == UInt8(ascii: ".") }) {
                return .failure(.dotSegment)
            }
            segmentStart = position + 1
        }
        return .success(decoded)
    }

    /// Whether the uri's normalised path starts with one of `prefixes` (each compared byte for
    /// byte with the decoded path). A refused uri matches no prefix.
    static func matches(_ uri: UnsafeRawBufferPointer, prefixes: [String]) -> Bool {
        // The common case (MMR's uris) has nothing to decode: judge the bytes in place, with no
        // allocation on the signing path.
        let pathEnd = uri.firstIndex(of: UInt8(ascii: "?")) ?? uri.count
        let path = UnsafeRawBufferPointer(rebasing: uri[0..<pathEnd])
        if !path.contains(UInt8(ascii: "%")) && !uri.contains(UInt8(ascii: "#")) {
            guard !hasDotSegment(path) else { return false }
            return prefixes.contains { hasPrefix(path, $0) }
        }
        guard case .success(let decoded) = normalisedPath(uri) else { return false }
        return decoded.withUnsafeBytes { bytes in prefixes.contains { hasPrefix(bytes, $0) } }
    }

    private static func hasPrefix(_ path: UnsafeRawBufferPointer, _ prefix: String) -> Bool {
        path.count >= prefix.utf8.count && path.prefix(prefix.utf8.count).elementsEqual(prefix.utf8)
    }

    /// A `.` or `..` segment in an undecoded path (control characters are refused earlier,
    /// when the uri is validated as visible ASCII).
    private static func hasDotSegment(_ path: UnsafeRawBufferPointer) -> Bool {
        var segmentStart = 0
        for position in 0...path.count where position == path.count || isSegmentEnd(path[position]) {
            let length = position - segmentStart
            if length == 1 && path[segmentStart] == UInt8(ascii: ".") { return true }
            if length == 2 && path[segmentStart] == UInt8(ascii: ".") && path[segmentStart + 1] == UInt8(ascii: ".") { return true }
            segmentStart = position + 1
        }
        return false
    }

    @inline(__always)
    private static func isSegmentEnd(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "/") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: ";")
    }

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: return byte - 0x30
        case 0x41...0x46: return byte - 0x41 + 10
        case 0x61...0x66: return byte - 0x61 + 10
        default: return nil
        }
    }
}
