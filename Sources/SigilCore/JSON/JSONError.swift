/// Why a JSON text was refused, and where: `offset` is the byte offset in the input.
public struct JSONError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case unexpectedEnd
        case unexpectedByte(UInt8)
        case trailingData
        case invalidUTF8
        case invalidEscape
        case loneSurrogate
        case controlCharacterInString
        case invalidNumber
        /// Not an integer: a float (any number with a fraction part, `1.0` included), or an
        /// exponent that leaves a fraction (`1e-1`).
        case notAnInteger
        /// Outside ±(2^53−1).
        case integerOutOfRange
        /// The key, cut to `maxEchoedKeyScalars` Unicode scalars (see `duplicateKey(echoing:)`).
        case duplicateKey(String)
        case tooDeep(limit: Int)
        case tooLarge(limit: Int)
        case byteOrderMark
        /// The document is valid JSON but not what the operation needs (e.g. not an object).
        case wrongType(expected: String)
    }

    public let kind: Kind
    public let offset: Int

    public init(_ kind: Kind, at offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    public var description: String {
        let what: String
        switch kind {
        case .unexpectedEnd: what = "unexpected end of input"
        case .unexpectedByte(let byte):
            what =
                (0x21...0x7E).contains(byte)
                ? "unexpected character '\(Character(Unicode.Scalar(byte)))'" : "unexpected byte 0x\(String(byte, radix: 16))"
        case .trailingData: what = "data after the JSON value"
        case .invalidUTF8: what = "invalid UTF-8"
        case .invalidEscape: what = "invalid escape sequence"
        case .loneSurrogate: what = "unpaired UTF-16 surrogate in \\u escape"
        case .controlCharacterInString: what = "unescaped control character in string"
        case .invalidNumber: what = "malformed number"
        case .notAnInteger: what = "number is not an integer (floats are not allowed in canonical JSON)"
        case .integerOutOfRange: what = "integer outside ±(2^53−1)"
        case .duplicateKey(let key): what = "duplicate key \"\(key)\""
        case .tooDeep(let limit): what = "nesting deeper than \(limit) levels"
        case .tooLarge(let limit): what = "document larger than \(limit) bytes"
        case .byteOrderMark: what = "byte order mark before the JSON value"
        case .wrongType(let expected): what = "expected \(expected)"
        }
        return "\(what) at byte \(offset)"
    }
}

extension JSONError.Kind {
    /// The most Unicode scalars of a key that a `duplicateKey` error repeats.
    static let maxEchoedKeyScalars = 64

    /// `duplicateKey` for the key with this (valid) UTF-8, cut to `maxEchoedKeyScalars` scalars
    /// with "…" appended when cut: a key can be as long as the document, and the error ends up in
    /// replies and logs. Stops decoding one scalar past the cut.
    static func duplicateKey<Key: Collection<UInt8>>(echoing utf8: Key) -> Self {
        var shown = String.UnicodeScalarView()
        var kept = 0
        var iterator = utf8.makeIterator()
        var decoder = UTF8()
        while true {
            let scalar: Unicode.Scalar
            switch decoder.decode(&iterator) {
            case .scalarValue(let decoded): scalar = decoded
            case .error: scalar = "\u{FFFD}"
            case .emptyInput: return .duplicateKey(String(shown))
            }
            guard kept < maxEchoedKeyScalars else { return .duplicateKey(String(shown) + "…") }
            shown.append(scalar)
            kept += 1
        }
    }
}

/// Bounds on what the parser accepts, so a hostile document costs bounded time and memory.
public struct JSONLimits: Sendable, Equatable {
    /// The deepest nesting of arrays and objects accepted; one more is refused (`tooDeep`) at
    /// the offset of the bracket that opens it.
    ///
    /// The default, 1,024, is above what homeservers accept and sign: Synapse's Python `json`
    /// stops near 1,000 levels (the interpreter's recursion limit), Ruma's serde_json at 128,
    /// so a signing sidecar never refuses what they produce. Go's encoding/json goes to 10,000;
    /// deployments signing for Go servers can raise the limit within `supportedDepths`.
    public var maxDepth: Int
    public var maxBytes: Int

    /// The depths `maxDepth` may be configured to. Parsing, canonicalising, comparing and
    /// freeing keep their per-level state on the heap (under 100 bytes a level, so at most about
    /// 6 MiB at the top of the range), never on the thread's stack, and the work is linear in the
    /// document's size at any depth.
    public static let supportedDepths: ClosedRange<Int> = 1...65_536

    public init(maxDepth: Int = 1024, maxBytes: Int = 1 << 20) {
        self.maxDepth = maxDepth
        self.maxBytes = maxBytes
    }

    public static let `default` = JSONLimits()
}

/// The largest magnitude canonical JSON allows: 2^53 − 1.
public let canonicalJSONMaxInteger: Int64 = (1 << 53) - 1
