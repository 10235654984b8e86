import CSodium
import Testing

@testable import SigilCore

@Suite("Base64")
struct Base64Tests {
    /// RFC 4648 §10, unpadded and padded.
    static let rfc4648: [(plain: String, unpadded: String, padded: String)] = [
        ("", "", ""), ("f", "Zg", "Zg=="), ("fo", "Zm8", "Zm8="), ("foo", "Zm9v", "Zm9v"),
        ("foob", "Zm9vYg", "Zm9vYg=="), ("fooba", "Zm9vYmE", "Zm9vYmE="), ("foobar", "Zm9vYmFy", "Zm9vYmFy"),
    ]

    @Test("RFC 4648 vectors encode unpadded by default and padded on request", arguments: rfc4648)
    func encodeVectors(plain: String, unpadded: String, padded: String) {
        #expect(Base64.encode(plain.bytes) == unpadded)
        #expect(Base64.encode(plain.bytes, padded: false) == unpadded)
        #expect(Base64.encode(plain.bytes, padded: true) == padded)
    }

    @Test("padded and unpadded input both decode", arguments: rfc4648)
    func decodeVectors(plain: String, unpadded: String, padded: String) {
        #expect(Base64.decode(unpadded) == plain.bytes)
        #expect(Base64.decode(padded) == plain.bytes)
    }

    @Test("the spec's test seed, whose last character has non-zero trailing bits, decodes")
    func specSeed() throws {
        let seed = try #require(Base64.decode(TestKeys.specSeedBase64))
        #expect(seed.hex == TestKeys.specSeedHex)
        // Its canonical encoding ends in "0", not "1": re-encoding does not give the input back.
        #expect(Base64.encode(seed) == "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0")
        #expect(Base64.decode("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0") == seed)
    }

    @Test(
        "non-zero trailing bits are ignored, as Go's RawStdEncoding and Python do",
        arguments: [("Zh", "66"), ("Zn", "66"), ("Zm9", "666f"), ("Zm/", "666f"), ("Zm9vYh", "666f6f62"), ("Zh==", "66"), ("Zm9=", "666f")])
    func trailingBits(input: String, hex: String) {
        #expect(Base64.decode(input)?.hex == hex)
    }

    @Test("whitespace is skipped only when asked (PEM bodies)")
    func whitespace() throws {
        let cases: [(String, String)] = [
            ("Zm9v\r\nYmFy\n", "foobar"), (" Zm9v YmFy ", "foobar"), ("\tZm9vYg\t= =\r\n", "foob"),
            ("Z\nm\n9\nv", "foo"), ("  \n", ""),
        ]
        for (input, plain) in cases {
            let count = try input.bytes.withUnsafeBytes { try Base64.decodedCount($0, skippingWhitespace: true) }
            #expect(count == plain.utf8.count, "\(input.debugDescription)")
            var out = [UInt8](repeating: 0xAA, count: count)
            try input.bytes.withUnsafeBytes { raw in
                try out.withUnsafeMutableBytes { try Base64.decode(raw, skippingWhitespace: true, into: $0) }
            }
            #expect(out == plain.bytes, "\(input.debugDescription)")
            // Without the flag, the first whitespace byte is an invalid character.
            let firstSpace = try #require(input.utf8.firstIndex { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D })
            let offset = input.utf8.distance(from: input.utf8.startIndex, to: firstSpace)
            #expect(throws: Base64.DecodeError.invalidCharacter(offset: offset)) {
                try input.bytes.withUnsafeBytes { try Base64.decodedCount($0) }
            }
            #expect(Base64.decode(input) == nil)
        }
    }

    @Test(
        "every malformed input names its error",
        arguments: [
            ("Zm9v!", Base64.DecodeError.invalidCharacter(offset: 4)),
            ("!Zm9v", .invalidCharacter(offset: 0)),
            ("Zm9v-", .invalidCharacter(offset: 4)),  // URL-safe alphabet is not accepted
            ("Zm9v_w", .invalidCharacter(offset: 4)),
            ("Zm9vé", .invalidCharacter(offset: 4)),
            ("Zm9\u{0}", .invalidCharacter(offset: 3)),
            ("Zm9v Zg", .invalidCharacter(offset: 4)),
            ("Z", .truncated),
            ("Zm9vY", .truncated),
            ("Zm9vY===", .truncated),
            ("Zg=", .badPadding(offset: 2)),
            ("Zg===", .badPadding(offset: 4)),
            ("Zm8==", .badPadding(offset: 4)),
            ("Zm9v=", .badPadding(offset: 4)),
            ("Zm9v==", .badPadding(offset: 5)),
            ("=", .badPadding(offset: 0)),
            ("==", .badPadding(offset: 1)),
            ("Zg==Zg", .badPadding(offset: 4)),
            ("Z=g=", .badPadding(offset: 2)),
        ])
    func errors(input: String, error: Base64.DecodeError) {
        #expect(throws: error) { try input.bytes.withUnsafeBytes { try Base64.decodedCount($0) } }
        #expect(throws: error) {
            try input.bytes.withUnsafeBytes { raw in
                var out = [UInt8](repeating: 0, count: 8)
                try out.withUnsafeMutableBytes { try Base64.decode(raw, into: $0) }
            }
        }
        #expect(Base64.decode(input) == nil)
    }

    @Test("decoding into a buffer of the wrong size is refused and names both sizes")
    func wrongLength() {
        for size in [0, 2, 4, 32] {
            #expect(throws: Base64.DecodeError.wrongLength(expected: size, actual: 3)) {
                try "Zm9v".bytes.withUnsafeBytes { raw in
                    var out = [UInt8](repeating: 0, count: size)
                    try out.withUnsafeMutableBytes { try Base64.decode(raw, into: $0) }
                }
            }
        }
    }

    @Test("error descriptions carry offsets, never the input")
    func descriptions() {
        #expect(Base64.DecodeError.invalidCharacter(offset: 7).description == "invalid base64 character at offset 7")
        #expect(Base64.DecodeError.truncated.description == "truncated base64 (a lone final character)")
        #expect(Base64.DecodeError.badPadding(offset: 3).description == "misplaced base64 padding at offset 3")
        #expect(Base64.DecodeError.wrongLength(expected: 32, actual: 33).description == "decodes to 33 bytes, expected 32")
    }

    @Test("encoded lengths")
    func lengths() {
        let expected: [(Int, Int, Int)] = [
            (0, 0, 0), (1, 2, 4), (2, 3, 4), (3, 4, 4), (4, 6, 8), (5, 7, 8), (6, 8, 8), (31, 42, 44), (32, 43, 44),
            (33, 44, 44), (64, 86, 88),
        ]
        for (count, unpadded, padded) in expected {
            #expect(Base64.encodedCount(count, padded: false) == unpadded, "\(count) bytes unpadded")
            #expect(Base64.encodedCount(count, padded: true) == padded, "\(count) bytes padded")
            let bytes = [UInt8](repeating: 0xFF, count: count)
            #expect(Base64.encode(bytes).utf8.count == unpadded)
            #expect(Base64.encode(bytes, padded: true).utf8.count == padded)
        }
    }

    @Test("the raw encoders write exactly the counted bytes and append after existing content")
    func rawEncoders() {
        let input: [UInt8] = Array("fooba".utf8)
        var out = [UInt8](repeating: 0x2E, count: 12)
        let written = input.withUnsafeBytes { raw in
            out.withUnsafeMutableBytes { Base64.encode(raw, padded: true, into: $0) }
        }
        #expect(written == 8)
        #expect(String(decoding: out, as: UTF8.self) == "Zm9vYmE=....")

        var appended = Array("sig=".utf8)
        input.withUnsafeBytes { Base64.encode($0, appendingTo: &appended) }
        #expect(String(decoding: appended, as: UTF8.self) == "sig=Zm9vYmE")
        input.withUnsafeBytes { Base64.encode($0, padded: true, appendingTo: &appended) }
        #expect(String(decoding: appended, as: UTF8.self) == "sig=Zm9vYmEZm9vYmE=")
    }

    @Test("every length from 0 to 100 bytes encodes as a plain bit-by-bit reference does, and never writes past its count")
    func encodeMatchesReferenceAtEveryLength() {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        func reference(_ bytes: [UInt8], padded: Bool) -> [UInt8] {
            var bits = bytes.flatMap { byte in (0..<8).reversed().map { byte >> $0 & 1 } }
            while bits.count % 6 != 0 { bits.append(0) }
            var out = stride(from: 0, to: bits.count, by: 6).map { start in
                alphabet[Int(bits[start..<start + 6].reduce(0) { $0 << 1 | $1 })]
            }
            while padded && out.count % 4 != 0 { out.append(UInt8(ascii: "=")) }
            return out
        }
        var generator = SystemRandomNumberGenerator()
        for length in 0...100 {
            let input = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for padded in [false, true] {
                let count = Base64.encodedCount(length, padded: padded)
                var out = [UInt8](repeating: 0x2E, count: count + 8)
                input.withUnsafeBytes { raw in
                    out.withUnsafeMutableBytes {
                        _ = Base64.encode(raw, padded: padded, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<count]))
                    }
                }
                #expect(Array(out[..<count]) == reference(input, padded: padded), "\(length) bytes, padded \(padded)")
                #expect(out[count...].allSatisfy { $0 == 0x2E }, "\(length) bytes: wrote past the end")
            }
        }
    }

    @Test("non-contiguous collections encode like arrays")
    func nonContiguous() {
        let bytes: [UInt8] = [0xDE, 0xAD, 0xBE, 0xEF, 0x01]
        #expect(Base64.encode(bytes.lazy.map { $0 }) == Base64.encode(bytes))
        #expect(Base64.encode(bytes[1...]) == Base64.encode(Array(bytes[1...])))
        #expect(Base64.decode("3q2+7wE"[...]) == bytes)
    }

    @Test("random bytes round-trip and match libsodium's encoder")
    func randomRoundTrips() throws {
        #expect(sodium_init() >= 0)
        var rng = SystemRandomNumberGenerator()
        for length in 0...100 {
            for _ in 0..<3 {
                let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let unpadded = Base64.encode(bytes)
                let padded = Base64.encode(bytes, padded: true)
                #expect(Base64.decode(unpadded) == bytes)
                #expect(Base64.decode(padded) == bytes)
                #expect(unpadded == sodiumEncode(bytes, variant: sodium_base64_VARIANT_ORIGINAL_NO_PADDING))
                #expect(padded == sodiumEncode(bytes, variant: sodium_base64_VARIANT_ORIGINAL))
                // Whitespace-wrapped padded text decodes too (a PEM body wrapped at any width).
                var wrapped = Array(padded.utf8)
                if !wrapped.isEmpty { wrapped.insert(contentsOf: [0x0D, 0x0A], at: Int.random(in: 0..<wrapped.count, using: &rng)) }
                let decoded = try wrapped.withUnsafeBytes { raw -> [UInt8] in
                    var out = [UInt8](repeating: 0, count: try Base64.decodedCount(raw, skippingWhitespace: true))
                    try out.withUnsafeMutableBytes { try Base64.decode(raw, skippingWhitespace: true, into: $0) }
                    return out
                }
                #expect(decoded == bytes)
            }
        }
    }

    private func sodiumEncode(_ bytes: [UInt8], variant: Int32) -> String {
        let capacity = sodium_base64_encoded_len(bytes.count, variant)
        var out = [CChar](repeating: 0, count: capacity)
        _ = sodium_bin2base64(&out, capacity, bytes, bytes.count, variant)
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
