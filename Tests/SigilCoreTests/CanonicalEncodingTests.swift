import Testing

@testable import SigilCore

@Suite("Canonical string encoding fast paths")
struct CanonicalEncodingTests {
    /// The word-at-a-time check must agree with the byte-by-byte rule on every byte value in
    /// every position.
    @Test("wordNeedsEscape agrees with needsEscape for every byte in every position")
    func wordCheck() {
        for position in 0..<8 {
            for value in 0...255 {
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 8)
                bytes[position] = UInt8(value)
                let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                #expect(
                    CanonicalEncoding.wordNeedsEscape(word) == CanonicalEncoding.needsEscape(UInt8(value)), "byte \(value) at \(position)")
            }
        }
    }

    @Test("quotedLength and writeQuoted match appendString on random strings")
    func quotedMatchesAppend() {
        var rng = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = [0x00, 0x01, 0x08, 0x09, 0x0A, 0x1F, 0x20, 0x22, 0x2F, 0x5C, 0x61, 0x7F, 0xC3, 0xA9, 0xE2, 0x80, 0xA8]
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            var expected: [UInt8] = []
            bytes.withUnsafeBytes { CanonicalEncoding.appendString($0, to: &expected) }
            let length = bytes.withUnsafeBytes { CanonicalEncoding.quotedLength($0) }
            #expect(length == expected.count)
            var written = [UInt8](repeating: 0, count: length)
            let count = bytes.withUnsafeBytes { source in
                written.withUnsafeMutableBytes { CanonicalEncoding.writeQuoted(source, at: $0.baseAddress!, length: length) }
            }
            #expect(count == length)
            #expect(written == expected)
        }
    }
}
