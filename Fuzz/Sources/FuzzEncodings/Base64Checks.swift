import FuzzSupport

@testable import SigilCore

/// Base64 as Sigil reads it (padding optional, trailing bits ignored, whitespace skipped in
/// PEM bodies) against a decoder written bit by bit from RFC 4648, and encoding round trips.
enum Base64Checks {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func run(_ data: UnsafeRawBufferPointer) {
        for skipping in [false, true] { checkDecode(data, skippingWhitespace: skipping) }
        checkEncode(data)
    }

    /// RFC 4648 with Sigil's leniencies, one symbol at a time.
    static func reference(_ data: UnsafeRawBufferPointer, skippingWhitespace: Bool) -> [UInt8]? {
        var symbols: [UInt8] = []
        var padding = 0
        for byte in data {
            if skippingWhitespace && (byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A) { continue }
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            guard padding == 0, let value = alphabet.firstIndex(of: byte) else { return nil }
            symbols.append(UInt8(value))
        }
        let remainder = symbols.count % 4
        guard remainder != 1 else { return nil }
        guard padding == 0 || (remainder != 0 && padding == 4 - remainder) else { return nil }
        var bits: [Bool] = []
        for symbol in symbols { for shift in (0..<6).reversed() { bits.append(symbol >> UInt8(shift) & 1 == 1) } }
        return stride(from: 0, to: bits.count - bits.count % 8, by: 8).map { start in
            bits[start..<(start + 8)].reduce(UInt8(0)) { $0 << 1 | ($1 ? 1 : 0) }
        }
    }

    static func checkDecode(_ data: UnsafeRawBufferPointer, skippingWhitespace: Bool) {
        let expected = reference(data, skippingWhitespace: skippingWhitespace)
        let count = try? Base64.decodedCount(data, skippingWhitespace: skippingWhitespace)
        fuzzCheck(
            count == expected?.count,
            "decodedCount \(String(describing: count)), reference \(String(describing: expected?.count)) for \(printable(data))")
        guard let expected else { return }
        var out = [UInt8](repeating: 0, count: expected.count)
        let decoded: Void? = out.withUnsafeMutableBytes { try? Base64.decode(data, skippingWhitespace: skippingWhitespace, into: $0) }
        fuzzCheck(decoded != nil && out == expected, "decoded \(printable(out)), reference \(printable(expected))")
        // A buffer of the wrong size is refused, never overrun.
        var short = [UInt8](repeating: 0, count: max(0, expected.count - 1))
        let refused = short.withUnsafeMutableBytes { (try? Base64.decode(data, skippingWhitespace: skippingWhitespace, into: $0)) == nil }
        fuzzCheck(expected.isEmpty || refused, "decoded into a buffer one byte short")
        if !skippingWhitespace, let text = String(validating: data, as: UTF8.self) {
            fuzzCheck(Base64.decode(text) == expected, "Base64.decode(String) disagrees")
        }
    }

    static func checkEncode(_ data: UnsafeRawBufferPointer) {
        for padded in [false, true] {
            let text = Base64.encode(Array(data), padded: padded)
            fuzzCheck(text.utf8.count == Base64.encodedCount(data.count, padded: padded), "encodedCount is wrong for \(data.count) bytes")
            fuzzCheck(!padded || text.utf8.count % 4 == 0, "padded output of \(text.utf8.count) characters")
            fuzzCheck(Base64.decode(text) == Array(data), "\(text) does not decode to the input")
            var appended: [UInt8] = [0x41]
            Base64.encode(data, padded: padded, appendingTo: &appended)
            fuzzCheck(appended.dropFirst().elementsEqual(text.utf8), "encode(appendingTo:) differs")
            let reference = Array(text.utf8).withUnsafeBytes { self.reference($0, skippingWhitespace: false) }
            fuzzCheck(reference == Array(data), "the reference decoder disagrees with the encoder")
        }
    }
}
