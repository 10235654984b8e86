import CSodium
import Testing

@testable import SigilCore

/// Verification edge cases. The expected outcome of each is computed by calling libsodium's
/// `crypto_sign_verify_detached` directly, and `PublicKey.verify` must agree with it; for the
/// cases a strict verifier must refuse, the test also insists on the refusal.
@Suite("Ed25519 verification edge cases (agreement with libsodium)")
struct Ed25519EdgeCaseTests {
    /// RFC 8032 TEST 1: empty message.
    static let publicKey = [UInt8](hex: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    static let signature = [UInt8](
        hex:
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    /// The order of the base point, little-endian.
    static let groupOrder = [UInt8](hex: "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
    static let identity = [UInt8](hex: "0100000000000000000000000000000000000000000000000000000000000000")

    /// Encodings of the points of small order (libsodium's list), with and without the sign bit.
    static let smallOrderPoints: [String] = {
        let base = [
            "0000000000000000000000000000000000000000000000000000000000000000",  // order 4
            "0100000000000000000000000000000000000000000000000000000000000000",  // identity
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  // order 8
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  // order 8
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p-1, order 2
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p (non-canonical 0)
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p+1 (non-canonical 1)
        ]
        return base
            + base.map { hex in
                var bytes = [UInt8](hex: hex)
                bytes[31] |= 0x80
                return bytes.hex
            }
    }()

    static func sodiumAccepts(signature: [UInt8], message: [UInt8], publicKey: [UInt8]) -> Bool {
        precondition(sodium_init() >= 0)
        precondition(signature.count == 64 && publicKey.count == 32)
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), publicKey) == 0
    }

    /// Asserts that our verify and libsodium's agree; returns the common answer.
    @discardableResult
    static func agree(
        signature: [UInt8], message: [UInt8], publicKey: [UInt8], sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        let expected = sodiumAccepts(signature: signature, message: message, publicKey: publicKey)
        guard let key = PublicKey(bytes: publicKey) else {
            Issue.record("PublicKey(bytes:) refused 32 bytes", sourceLocation: sourceLocation)
            return false
        }
        let ours = key.verify(signature: signature, message: message)
        #expect(ours == expected, "ours \(ours), libsodium \(expected)", sourceLocation: sourceLocation)
        // The raw-buffer entry point gives the same answer.
        let raw = signature.withUnsafeBytes { sig in message.withUnsafeBytes { key.verify(signature: sig, message: $0) } }
        #expect(raw == ours, sourceLocation: sourceLocation)
        return expected
    }

    static func addLittleEndian(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: a.count)
        var carry = 0
        for i in 0..<a.count {
            let sum = Int(a[i]) + Int(b[i]) + carry
            out[i] = UInt8(sum & 0xFF)
            carry = sum >> 8
        }
        return out
    }

    @Test("the unmodified signature is accepted by both")
    func baseline() {
        #expect(Self.agree(signature: Self.signature, message: [], publicKey: Self.publicKey))
    }

    @Test("S + L (a non-canonical S that a lenient verifier reduces to the valid S) is rejected")
    func nonCanonicalS() {
        let s = Array(Self.signature[32...])
        let sPlusL = Self.addLittleEndian(s, Self.groupOrder)
        #expect(sPlusL[31] < 0x20, "S + L still fits in 253 bits, so only the range check can catch it")
        let forged = Array(Self.signature[..<32]) + sPlusL
        #expect(!Self.agree(signature: forged, message: [], publicKey: Self.publicKey))
    }

    @Test("S = L, S = 2^256 - 1 and S with the top bits set are rejected")
    func outOfRangeS() {
        let r = Array(Self.signature[..<32])
        #expect(!Self.agree(signature: r + Self.groupOrder, message: [], publicKey: Self.publicKey))
        #expect(!Self.agree(signature: r + [UInt8](repeating: 0xFF, count: 32), message: [], publicKey: Self.publicKey))
        var high = Self.signature
        high[63] |= 0xE0
        #expect(!Self.agree(signature: high, message: [], publicKey: Self.publicKey))
    }

    @Test(
        "small-order public keys are rejected, even with the signature (R = identity, S = 0) that cofactorless math accepts for the identity"
    )
    func smallOrderPublicKeys() {
        let trivial = Self.identity + [UInt8](repeating: 0, count: 32)
        for hex in Self.smallOrderPoints {
            let publicKey = [UInt8](hex: hex)
            #expect(!Self.agree(signature: trivial, message: [], publicKey: publicKey), "pk \(hex)")
            #expect(!Self.agree(signature: trivial, message: Array("any message".utf8), publicKey: publicKey), "pk \(hex)")
            #expect(!Self.agree(signature: Self.signature, message: [], publicKey: publicKey), "pk \(hex)")
        }
    }

    @Test("small-order R values are rejected")
    func smallOrderR() {
        let s = Array(Self.signature[32...])
        for hex in Self.smallOrderPoints {
            #expect(!Self.agree(signature: [UInt8](hex: hex) + s, message: [], publicKey: Self.publicKey), "R \(hex)")
            #expect(
                !Self.agree(signature: [UInt8](hex: hex) + [UInt8](repeating: 0, count: 32), message: [], publicKey: Self.publicKey),
                "R \(hex)")
        }
    }

    @Test("a public key with its sign bit flipped, or a non-canonical y, does not verify")
    func alteredPublicKeys() {
        var flipped = Self.publicKey
        flipped[31] ^= 0x80
        #expect(!Self.agree(signature: Self.signature, message: [], publicKey: flipped))
        // y = p + 3 (non-canonical encoding of 3, not a curve point anyway) and all-ones.
        let nonCanonical = [UInt8](hex: "f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
        #expect(!Self.agree(signature: Self.signature, message: [], publicKey: nonCanonical))
        #expect(!Self.agree(signature: Self.signature, message: [], publicKey: [UInt8](repeating: 0xFF, count: 32)))
    }

    @Test("a tampered message or signature is rejected")
    func tampering() throws {
        let key = try TestKeys.random()
        let message = Array("{\"destination\":\"example.org\"}".utf8)
        let signature = key.sign(message).bytes
        let publicKey = key.publicKey.bytes
        #expect(Self.agree(signature: signature, message: message, publicKey: publicKey))
        for index in [0, 5, message.count - 1] {
            var altered = message
            altered[index] ^= 0x20
            #expect(!Self.agree(signature: signature, message: altered, publicKey: publicKey))
        }
        #expect(!Self.agree(signature: signature, message: message + [0x20], publicKey: publicKey))
        #expect(!Self.agree(signature: signature, message: Array(message.dropLast()), publicKey: publicKey))
        for index in [0, 31, 32, 63] {
            var altered = signature
            altered[index] ^= 0x01
            #expect(!Self.agree(signature: altered, message: message, publicKey: publicKey))
        }
        let other = try TestKeys.random()
        #expect(!Self.agree(signature: signature, message: message, publicKey: other.publicKey.bytes))
    }

    @Test("signatures of the wrong length are rejected without reaching libsodium")
    func wrongLength() throws {
        let key = try TestKeys.random()
        let message = Array("hello".utf8)
        let signature = key.sign(message).bytes
        #expect(key.publicKey.verify(signature: signature, message: message))
        for length in [0, 1, 32, 63, 65, 128] {
            let wrong = length <= 64 ? Array(signature.prefix(length)) : signature + [UInt8](repeating: 0, count: length - 64)
            #expect(!key.publicKey.verify(signature: wrong, message: message), "length \(length)")
            #expect(Signature(bytes: wrong) == nil, "length \(length)")
        }
    }

    @Test("random signatures and random public keys: our answer is always libsodium's")
    func randomAgreement() throws {
        let key = try TestKeys.random()
        let message = Array("random agreement".utf8)
        let valid = key.sign(message).bytes
        for _ in 0..<200 {
            let randomSignature = (0..<64).map { _ in UInt8.random(in: 0...255) }
            Self.agree(signature: randomSignature, message: message, publicKey: key.publicKey.bytes)
            let randomKey = (0..<32).map { _ in UInt8.random(in: 0...255) }
            Self.agree(signature: valid, message: message, publicKey: randomKey)
            // R from the valid signature with a random S below 2^252 (mostly canonical, wrong).
            var s = (0..<32).map { _ in UInt8.random(in: 0...255) }
            s[31] &= 0x0F
            Self.agree(signature: Array(valid[..<32]) + s, message: message, publicKey: key.publicKey.bytes)
        }
    }
}
