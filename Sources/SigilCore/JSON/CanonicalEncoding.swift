/// The output half of canonical JSON: strings escaped exactly as the spec's grammar says,
/// integers in plain decimal.
enum CanonicalEncoding {
    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `"…"` for raw UTF-8 `bytes`. Only `"`, `\` and C0 controls are escaped; `/`,
    /// U+007F and U+2028 stay raw; other controls use `\u00xx` with lower-case hex.
    @inline(__always)
    static func appendString(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(0x22)
        var runStart = 0
        for index in 0..<bytes.count {
            let byte = bytes[index]
            guard byte < 0x20 || byte == 0x22 || byte == 0x5C else { continue }
            if index > runStart { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index])) }
            runStart = index + 1
            out.append(0x5C)
            switch byte {
            case 0x22: out.append(0x22)
            case 0x5C: out.append(0x5C)
            case 0x08: out.append(UInt8(ascii: "b"))
            case 0x09: out.append(UInt8(ascii: "t"))
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0C: out.append(UInt8(ascii: "f"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            default:
                out.append(UInt8(ascii: "u"))
                out.append(0x30)
                out.append(0x30)
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            }
        }
        if bytes.count > runStart { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart...])) }
        out.append(0x22)
    }

    private static let ones: UInt64 = 0x0101_0101_0101_0101
    private static let highs: UInt64 = 0x8080_8080_8080_8080

    /// Whether any byte of `word` is below 0x20, a quote or a backslash (bit tricks: a byte is
    /// zero in `x` exactly when the subtraction borrows into its high bit and it had none).
    @inline(__always)
    static func wordNeedsEscape(_ word: UInt64) -> Bool {
        func hasZeroByte(_ x: UInt64) -> Bool { (x &- ones) & ~x & highs != 0 }
        let control = (word &- ones &* 0x20) & ~word & highs != 0
        return control || hasZeroByte(word ^ (ones &* 0x22)) || hasZeroByte(word ^ (ones &* 0x5C))
    }

    /// Whether a byte needs an escape inside a canonical JSON string.
    @inline(__always)
    static func needsEscape(_ byte: UInt8) -> Bool { byte < 0x20 || byte == 0x22 || byte == 0x5C }

    /// The length of `"…"` for `bytes`, quotes and escapes included.
    @inline(__always)
    static func quotedLength(_ bytes: UnsafeRawBufferPointer) -> Int {
        var length = bytes.count + 2
        guard let base = bytes.baseAddress else { return length }
        // Eight bytes at a time: skip words with no control byte, quote or backslash.
        var index = 0
        while index + 8 <= bytes.count {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            if !wordNeedsEscape(word) {
                index += 8
                continue
            }
            break
        }
        for byte in UnsafeRawBufferPointer(rebasing: bytes[index...]) where needsEscape(byte) {
            switch byte {
            case 0x22, 0x5C, 0x08, 0x09, 0x0A, 0x0C, 0x0D: length += 1
            default: length += 5
            }
        }
        return length
    }

    /// Writes `"…"` for `bytes` at `out`, which must hold `quotedLength(bytes)`; returns the
    /// bytes written. Strings that need no escapes (the usual case) are one copy.
    @inline(__always)
    static func writeQuoted(_ bytes: UnsafeRawBufferPointer, at out: UnsafeMutableRawPointer, length: Int) -> Int {
        out.storeBytes(of: 0x22, as: UInt8.self)
        if length == bytes.count + 2 {
            if !bytes.isEmpty { (out + 1).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
            (out + 1 + bytes.count).storeBytes(of: 0x22, as: UInt8.self)
            return length
        }
        var escaped: [UInt8] = []
        escaped.reserveCapacity(length)
        appendString(bytes, to: &escaped)
        escaped.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return escaped.count
    }

    @inline(__always)
    static func appendString(_ string: String, to out: inout [UInt8]) {
        var string = string
        string.withUTF8 { appendString(UnsafeRawBufferPointer($0), to: &out) }
    }

    static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
        if value == 0 {
            out.append(0x30)
            return
        }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            while magnitude > 0 {
                buffer[23 - count] = UInt8(truncatingIfNeeded: magnitude % 10) + 0x30
                magnitude /= 10
                count += 1
            }
            if value < 0 { out.append(UInt8(ascii: "-")) }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[(24 - count)...]))
        }
    }
}
