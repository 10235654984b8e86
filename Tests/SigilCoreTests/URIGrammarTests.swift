import Testing

@testable import SigilCore

/// `XMatrixFields.isURI` checks eight bytes at a time; these compare it with the grammar read
/// one byte at a time.
@Suite("SIGN_REQUEST uri grammar: the word-at-a-time check")
struct URIGrammarTests {
    static func reference(_ bytes: [UInt8]) -> Bool {
        bytes.first == UInt8(ascii: "/") && bytes.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "#") }
    }

    static func check(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { XMatrixFields.isURI($0) }
    }

    @Test("every byte value at every position of every length up to 24 (words, tails and both)")
    func everyByteEverywhere() {
        for length in 1...24 {
            let base = [UInt8(ascii: "/")] + Array("abcdefghijklmnopqrstuvwx".utf8.prefix(length - 1))
            #expect(Self.check(base), "\(length) valid bytes")
            for position in 1..<length {
                for value in 0...255 {
                    var bytes = base
                    bytes[position] = UInt8(value)
                    if Self.check(bytes) != Self.reference(bytes) {
                        Issue.record("length \(length), byte 0x\(String(value, radix: 16)) at \(position)")
                        return
                    }
                }
            }
        }
    }

    @Test("bytes next to the limits, in every lane of a word, alone and in pairs (carries between lanes)")
    func neighbours() {
        let edges: [UInt8] = [0x00, 0x01, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x24, 0x7E, 0x7F, 0x80, 0x81, 0xFE, 0xFF]
        for first in edges {
            for second in edges {
                for position in 1..<16 {
                    var bytes = Array("/abcdefghijklmnopq".utf8)
                    bytes[position] = first
                    bytes[(position % 15) + 1] = second
                    #expect(Self.check(bytes) == Self.reference(bytes), "\(first), \(second) at \(position)")
                }
            }
        }
    }

    @Test("random requests targets, seeded")
    func random() {
        var generator = SplitMix(seed: 0x5167_11)
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 80) + 1
            var bytes = (0..<length).map { _ in UInt8(0x21 + generator.next() % 0x5E) }
            bytes[0] = UInt8(ascii: "/")
            // Usually valid; sometimes one or two bytes from anywhere in 0...255.
            for _ in 0..<Int(generator.next() % 3) where length > 1 {
                bytes[Int(generator.next() % UInt64(length - 1)) + 1] = UInt8(truncatingIfNeeded: generator.next())
            }
            #expect(Self.check(bytes) == Self.reference(bytes), "\(bytes)")
        }
        #expect(!Self.check([]))
        #expect(!Self.check(Array("x/".utf8)))
    }
}

/// A small seeded generator (SplitMix64), so a failure reproduces.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
