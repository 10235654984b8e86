import Testing

@testable import SigilCore

@Suite("PublicKey, Signature and KeyID values")
struct KeyValueTypeTests {
    @Test("PublicKey takes exactly 32 bytes, from bytes or base64 (padded or not)")
    func publicKeyInit() throws {
        let bytes = [UInt8](hex: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let key = try #require(PublicKey(bytes: bytes))
        #expect(key.bytes == bytes)
        #expect(key.base64 == "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo")
        #expect(key.description == key.base64)
        #expect(PublicKey(base64: key.base64) == key)
        #expect(PublicKey(base64: key.base64 + "=") == key)
        #expect(PublicKey(base64: Substring(key.base64)) == key)
        #expect(PublicKey(bytes: bytes[...]) == key)
        for count in [0, 31, 33, 64] {
            #expect(PublicKey(bytes: [UInt8](repeating: 1, count: count)) == nil)
        }
        #expect(PublicKey(base64: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHUR") == nil)  // 31 bytes
        #expect(PublicKey(base64: "not base64!") == nil)
        #expect(PublicKey.zero.bytes == [UInt8](repeating: 0, count: 32))
    }

    @Test("PublicKey equality and hashing follow the bytes")
    func publicKeyEquality() throws {
        var bytes = [UInt8](repeating: 7, count: 32)
        let a = try #require(PublicKey(bytes: bytes))
        let b = try #require(PublicKey(bytes: bytes))
        #expect(a == b)
        #expect(Set([a, b]).count == 1)
        for index in [0, 8, 16, 24, 31] {
            bytes = [UInt8](repeating: 7, count: 32)
            bytes[index] = 8
            let c = try #require(PublicKey(bytes: bytes))
            #expect(a != c, "differs at byte \(index)")
            #expect(Set([a, c]).count == 2)
        }
    }

    @Test("Signature takes exactly 64 bytes")
    func signatureInit() throws {
        let bytes = (0..<64).map { UInt8($0) }
        let signature = try #require(Signature(bytes: bytes))
        #expect(signature.bytes == bytes)
        #expect(signature.base64.utf8.count == 86)
        #expect(signature.description == signature.base64)
        #expect(Signature(base64: signature.base64) == signature)
        #expect(Signature(base64: Base64.encode(bytes, padded: true)) == signature)
        #expect(Signature(bytes: Array(bytes.dropLast())) == nil)
        #expect(Signature(bytes: bytes + [0]) == nil)
        #expect(Signature(base64: Base64.encode(Array(bytes.dropLast()))) == nil)
        #expect(Signature(base64: "****") == nil)
    }

    @Test(
        "valid key IDs keep their version byte-exact",
        arguments: ["a_RVfN", "e5d0oC", "1", "0", "abcdefgh", "auto2", "x-y.z", "a+b/c=", "ed25519:nested"])
    func validKeyIDs(version: String) throws {
        let id = try #require(KeyID(version: version))
        #expect(id.version == version)
        #expect(id.description == "ed25519:" + version)
        #expect(KeyID(id.description) == id)
    }

    @Test(
        "invalid versions are refused",
        arguments: ["", "a b", "a\tb", "a\"b", "a\\b", "a,b", "é", "a\u{7F}", "a\u{0}", String(repeating: "a", count: 256)])
    func invalidKeyIDs(version: String) {
        #expect(KeyID(version: version) == nil)
        #expect(KeyID("ed25519:" + version) == nil)
        #expect(!KeyID.isValidVersion(version))
    }

    @Test("a full ID needs the ed25519: prefix")
    func fullIDs() {
        #expect(KeyID("ed25519:abc")?.version == "abc")
        #expect(KeyID(String(repeating: "a", count: 255)) == nil)
        #expect(KeyID(version: String(repeating: "a", count: 255)) != nil)
        for bad in ["abc", "ed25519", "ed25519:", "Ed25519:abc", "curve25519:abc", ":abc", " ed25519:abc", "ed448:abc"] {
            #expect(KeyID(bad) == nil, "\(bad)")
        }
    }

    @Test("spec compliance is [a-zA-Z0-9_]")
    func specCompliance() throws {
        for good in ["a_RVfN", "e5d0oC", "0", "ABC_xyz_09"] { #expect(try #require(KeyID(version: good)).isSpecCompliant) }
        for odd in ["a-b", "a.b", "a+b/c", "ed25519:x"] { #expect(try #require(KeyID(version: odd)).isSpecCompliant == false) }
    }

    @Test("key IDs order by bytes")
    func ordering() throws {
        let ids = try ["b", "a_", "B", "a", "_", "0", "ab"].map { try #require(KeyID(version: $0)) }
        #expect(ids.sorted().map(\.version) == ["0", "B", "_", "a", "a_", "ab", "b"])
    }
}
