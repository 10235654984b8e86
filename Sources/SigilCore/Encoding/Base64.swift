/// Base64 as the Matrix spec needs it: the standard alphabet, unpadded on output; on input,
/// padding optional and non-zero trailing bits accepted (the spec's own test seed has them, and
/// libsodium's decoder rejects it). Works on raw buffers so that seeds can be decoded straight
/// into guarded memory.
public enum Base64 {
    public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
        /// A byte that is not in the alphabet, at this offset of the input.
        case invalidCharacter(offset: Int)
        /// A lone final character (4n+1 characters cannot encode whole bytes).
        case truncated
        /// `=` where it cannot be, or too many of them.
        case badPadding(offset: Int)
        /// The decoded length is not what the caller needs.
        case wrongLength(expected: Int, actual: Int)

        public var description: String {
            switch self {
            case .invalidCharacter(let offset): return "invalid base64 character at offset \(offset)"
            case .truncated: return "truncated base64 (a lone final character)"
            case .badPadding(let offset): return "misplaced base64 padding at offset \(offset)"
            case .wrongLength(let expected, let actual):
                return "decodes to \(actual) bytes, expected \(expected)"
            }
        }
    }

    /// A static string: encoding reads it through a plain pointer, with no lazy-global check.
    private static let symbols: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    private static let alphabet: [UInt8] = Array(UnsafeBufferPointer(start: symbols.utf8Start, count: 64))

    /// 0xFF marks bytes outside the alphabet.
    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// Characters produced for `count` input bytes.
    @inlinable
    public static func encodedCount(_ count: Int, padded: Bool) -> Int {
        padded ? (count + 2) / 3 * 4 : (count * 4 + 2) / 3
    }

    /// Encodes into `out`, which must hold `encodedCount(input.count, padded:)` bytes. Returns that count.
    @discardableResult
    public static func encode(_ input: UnsafeRawBufferPointer, padded: Bool, into out: UnsafeMutableRawBufferPointer) -> Int {
        let needed = encodedCount(input.count, padded: padded)
        precondition(out.count >= needed, "base64 output buffer too small")
        do {
            let table = symbols.utf8Start
            var i = 0
            var o = 0
            let n = input.count
            if n >= 4, let source = input.baseAddress, let target = out.baseAddress {
                // Four bytes in, four symbols out in one store, while a fourth byte is there to
                // read (it is ignored): a signature's 64 bytes are 21 of these and a tail.
                while i + 4 <= n {
                    let v = UInt32(bigEndian: source.loadUnaligned(fromByteOffset: i, as: UInt32.self))
                    let packed =
                        UInt32(table[Int(v >> 26)]) | UInt32(table[Int(v >> 20 & 63)]) << 8
                        | UInt32(table[Int(v >> 14 & 63)]) << 16 | UInt32(table[Int(v >> 8 & 63)]) << 24
                    target.storeBytes(of: packed.littleEndian, toByteOffset: o, as: UInt32.self)
                    i += 3
                    o += 4
                }
            }
            while i + 3 <= n {
                let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                out[o] = table[Int(v >> 18)]
                out[o + 1] = table[Int(v >> 12 & 63)]
                out[o + 2] = table[Int(v >> 6 & 63)]
                out[o + 3] = table[Int(v & 63)]
                i += 3
                o += 4
            }
            let rest = n - i
            if rest == 1 {
                let v = UInt32(input[i]) << 16
                out[o] = table[Int(v >> 18)]
                out[o + 1] = table[Int(v >> 12 & 63)]
                o += 2
                if padded {
                    out[o] = UInt8(ascii: "=")
                    out[o + 1] = UInt8(ascii: "=")
                    o += 2
                }
            } else if rest == 2 {
                let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8
                out[o] = table[Int(v >> 18)]
                out[o + 1] = table[Int(v >> 12 & 63)]
                out[o + 2] = table[Int(v >> 6 & 63)]
                o += 3
                if padded {
                    out[o] = UInt8(ascii: "=")
                    o += 1
                }
            }
        }
        return needed
    }

    /// Appends the encoding of `input` to `out`.
    public static func encode(_ input: UnsafeRawBufferPointer, padded: Bool = false, appendingTo out: inout [UInt8]) {
        let needed = encodedCount(input.count, padded: padded)
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: needed))
        out.withUnsafeMutableBytes { whole in
            _ = encode(input, padded: padded, into: UnsafeMutableRawBufferPointer(rebasing: whole[start...]))
        }
    }

    /// Unpadded standard base64 of public bytes (signatures, public keys).
    public static func encode<C: Collection<UInt8>>(_ bytes: C, padded: Bool = false) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(encodedCount(bytes.count, padded: padded))
        let done: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            encode(UnsafeRawBufferPointer(buffer), padded: padded, appendingTo: &out)
        }
        if done == nil {
            Array(bytes).withUnsafeBytes { encode($0, padded: padded, appendingTo: &out) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Counts the bytes `input` decodes to, validating it completely.
    ///
    /// - Parameter skippingWhitespace: ignore space, tab, CR and LF anywhere (PEM bodies).
    public static func decodedCount(_ input: UnsafeRawBufferPointer, skippingWhitespace: Bool = false) throws(DecodeError) -> Int {
        var symbols = 0
        var padding = 0
        for offset in 0..<input.count {
            let byte = input[offset]
            if skippingWhitespace && isWhitespace(byte) { continue }
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            if padding > 0 { throw .badPadding(offset: offset) }
            guard reverse[Int(byte)] != 0xFF else { throw .invalidCharacter(offset: offset) }
            symbols += 1
        }
        let remainder = symbols % 4
        if remainder == 1 { throw .truncated }
        if padding > 0 {
            // Padding, when present, must complete the last quantum exactly.
            let expectedPadding = remainder == 0 ? 0 : 4 - remainder
            guard padding == expectedPadding else { throw .badPadding(offset: input.count - 1) }
        }
        return symbols / 4 * 3 + (remainder == 0 ? 0 : remainder - 1)
    }

    /// Decodes `input` into `out`, which must be exactly `decodedCount(input)` bytes long.
    /// Non-zero trailing bits are accepted, as Go's `RawStdEncoding` and Python accept them.
    public static func decode(
        _ input: UnsafeRawBufferPointer, skippingWhitespace: Bool = false, into out: UnsafeMutableRawBufferPointer
    ) throws(DecodeError) {
        let expected = try decodedCount(input, skippingWhitespace: skippingWhitespace)
        guard out.count == expected else { throw .wrongLength(expected: out.count, actual: expected) }
        var accumulator: UInt32 = 0
        var bits = 0
        var o = 0
        reverse.withUnsafeBufferPointer { table in
            for offset in 0..<input.count {
                let byte = input[offset]
                if byte == UInt8(ascii: "=") { break }
                if skippingWhitespace && isWhitespace(byte) { continue }
                accumulator = accumulator << 6 | UInt32(table[Int(byte)])
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    out[o] = UInt8(truncatingIfNeeded: accumulator >> UInt32(bits))
                    o += 1
                }
            }
        }
        accumulator = 0
    }

    /// Decodes public data (signatures, public keys). Nil when the text is not base64.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        return utf8.withUnsafeBytes { raw -> [UInt8]? in
            guard let count = try? decodedCount(raw) else { return nil }
            var out = [UInt8](repeating: 0, count: count)
            let ok: Bool = out.withUnsafeMutableBytes { (try? decode(raw, into: $0)) != nil }
            return ok ? out : nil
        }
    }

    @inline(__always)
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
    }
}
