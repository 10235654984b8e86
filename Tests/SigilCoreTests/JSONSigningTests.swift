import Testing

@testable import SigilCore

@Suite("JSON signing")
struct JSONSigningTests {
    static let emptySignature = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
    static let oneTwoSignature = "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"

    static func sign(_ json: String, server: String = "domain", keys: [SigningKey]) throws -> String {
        String(decoding: try JSONSigning.sign(Array(json.utf8), serverName: server, keys: keys), as: UTF8.self)
    }

    static func specKeys() throws -> [KeyID: PublicKey] {
        [try #require(KeyID("ed25519:1")): try #require(PublicKey(base64: TestKeys.specPublicKey))]
    }

    @Test("the spec's test vectors reproduce exactly (bytes API)")
    func specVectorsBytes() throws {
        let key = try TestKeys.spec()
        #expect(key.publicKey.base64 == TestKeys.specPublicKey)
        #expect(try Self.sign("{}", keys: [key]) == #"{"signatures":{"domain":{"ed25519:1":"\#(Self.emptySignature)"}}}"#)
        #expect(
            try Self.sign(#"{"one": 1, "two": "Two"}"#, keys: [key])
                == #"{"one":1,"signatures":{"domain":{"ed25519:1":"\#(Self.oneTwoSignature)"}},"two":"Two"}"#)
        // Key order and whitespace in the input do not matter.
        #expect(try Self.sign("{\n  \"two\" : \"Two\",\t\"one\": 1e0 }", keys: [key]).contains(Self.oneTwoSignature))
    }

    @Test("the spec's test vectors reproduce exactly (tree API)")
    func specVectorsTree() throws {
        let key = try TestKeys.spec()
        let empty = JSONSigning.sign(JSONObject(), serverName: "domain", keys: [key])
        let expected: JSONValue = ["domain": ["ed25519:1": .string(Self.emptySignature)]]
        #expect(empty["signatures"] == expected)
        #expect(empty.keys == ["signatures"])
        let object: JSONObject = try #require(JSONObject([("one", 1), ("two", "Two")]))
        let signed = JSONSigning.sign(object, serverName: "domain", keys: [key])
        #expect(String(decoding: signed.canonicalBytes, as: UTF8.self)
            == #"{"one":1,"signatures":{"domain":{"ed25519:1":"\#(Self.oneTwoSignature)"}},"two":"Two"}"#)
    }

    @Test("existing signatures are kept and the new one merged in")
    func mergesSignatures() throws {
        let key = try TestKeys.spec()
        let input = #"{"signatures":{"other.org":{"ed25519:x":"AAAA"},"domain":{"ed25519:0":"BBBB","ed25519:1":"stale"}},"one":1,"two":"Two"}"#
        let out = try Self.sign(input, keys: [key])
        #expect(out == #"{"one":1,"signatures":{"domain":{"ed25519:0":"BBBB","ed25519:1":"\#(Self.oneTwoSignature)"},"other.org":{"ed25519:x":"AAAA"}},"two":"Two"}"#)

        let tree = try #require(try JSONValue(parsing: input).objectValue)
        #expect(JSONSigning.sign(tree, serverName: "domain", keys: [key]).canonicalBytes == Array(out.utf8))
    }

    @Test("unsigned is set aside for signing and put back unchanged")
    func unsigned() throws {
        let key = try TestKeys.spec()
        let out = try Self.sign(#"{"unsigned":{"age_ts":1000000,"x":[1,2]},"one":1,"two":"Two"}"#, keys: [key])
        #expect(out == #"{"one":1,"signatures":{"domain":{"ed25519:1":"\#(Self.oneTwoSignature)"}},"two":"Two","unsigned":{"age_ts":1000000,"x":[1,2]}}"#)
        let verification = try JSONSigning.verify(Array(out.utf8), serverName: "domain", publicKeys: try Self.specKeys())
        #expect(verification.isValid)
        // Changing unsigned does not break the signature; changing anything else does.
        let changedUnsigned = out.replacing(#""age_ts":1000000"#, with: #""age_ts":5"#)
        #expect(try JSONSigning.verify(Array(changedUnsigned.utf8), serverName: "domain", publicKeys: try Self.specKeys()).isValid)
        let changedBody = out.replacing(#""two":"Two""#, with: #""two":"Three""#)
        #expect(try !JSONSigning.verify(Array(changedBody.utf8), serverName: "domain", publicKeys: try Self.specKeys()).isValid)
    }

    @Test("signing with several keys adds one signature each")
    func severalKeys() throws {
        let keys = try TestKeys.keys([("a", [UInt8](repeating: 1, count: 32)), ("b", [UInt8](repeating: 2, count: 32))])
        let out = try JSONSigning.sign(Array(#"{"x":1}"#.utf8), serverName: "example.org", keys: keys)
        let signatures = try #require(try JSONValue(parsing: out).objectValue?["signatures"]?.objectValue?["example.org"]?.objectValue)
        #expect(signatures.keys == ["ed25519:a", "ed25519:b"])
        let publicKeys = Dictionary(uniqueKeysWithValues: keys.map { ($0.id, $0.publicKey) })
        let verification = try JSONSigning.verify(out, serverName: "example.org", publicKeys: publicKeys)
        #expect(verification.valid.map(\.version) == ["a", "b"])
        #expect(verification.isValid)
    }

    @Test("signing errors: no keys, invalid JSON, not an object, malformed signatures")
    func signErrors() throws {
        let key = try TestKeys.spec()
        #expect(throws: JSONSigningError.noKeys) { try JSONSigning.sign(Array("{}".utf8), serverName: "domain", keys: []) }
        #expect(throws: JSONSigningError.json(JSONError(.unexpectedEnd, at: 5))) {
            try JSONSigning.sign(Array(#"{"a":"#.utf8), serverName: "domain", keys: [key])
        }
        #expect(throws: JSONSigningError.json(JSONError(.wrongType(expected: "a JSON object"), at: 0))) {
            try JSONSigning.sign(Array("[1]".utf8), serverName: "domain", keys: [key])
        }
        #expect(throws: JSONSigningError.json(JSONError(.notAnInteger, at: 5))) {
            try JSONSigning.sign(Array(#"{"a":1.5}"#.utf8), serverName: "domain", keys: [key])
        }
        #expect(throws: JSONSigningError.malformedSignatures("not an object")) {
            try JSONSigning.sign(Array(#"{"signatures":[]}"#.utf8), serverName: "domain", keys: [key])
        }
        #expect(throws: JSONSigningError.malformedSignatures("signatures.domain is not an object")) {
            try JSONSigning.sign(Array(#"{"signatures":{"domain":"x"}}"#.utf8), serverName: "domain", keys: [key])
        }
        #expect(throws: JSONSigningError.malformedSignatures("signatures.other.org is not an object")) {
            try JSONSigning.sign(Array(#"{"signatures":{"other.org":1}}"#.utf8), serverName: "domain", keys: [key])
        }
        // The first bad entry in canonical key order is named, whatever order the input has.
        #expect(throws: JSONSigningError.malformedSignatures("signatures.a.org is not an object")) {
            try JSONSigning.sign(Array(#"{"signatures":{"b.org":[],"domain":{},"a.org":null}}"#.utf8), serverName: "domain", keys: [key])
        }
        let limits = JSONLimits(maxDepth: 2, maxBytes: 1024)
        #expect(throws: JSONSigningError.json(JSONError(.tooDeep(limit: 2), at: 6))) {
            try JSONSigning.sign(Array(#"{"a":[[1]]}"#.utf8), serverName: "domain", keys: [key], limits: limits)
        }
    }

    @Test("error descriptions")
    func errorDescriptions() {
        #expect(JSONSigningError.noKeys.description == "no signing key")
        #expect(JSONSigningError.malformedSignatures("not an object").description == "malformed \"signatures\": not an object")
        #expect(JSONSigningError.json(JSONError(.trailingData, at: 2)).description == "invalid JSON: data after the JSON value at byte 2")
    }

    // MARK: Verification

    @Test("a valid signature verifies; the spec's signed objects check out")
    func verifyValid() throws {
        let out = #"{"one":1,"signatures":{"domain":{"ed25519:1":"\#(Self.oneTwoSignature)"}},"two":"Two"}"#
        let result = try JSONSigning.verify(Array(out.utf8), serverName: "domain", publicKeys: try Self.specKeys())
        #expect(result == JSONSigning.Verification(valid: [KeyID("ed25519:1")!], invalid: [], missing: []))
        #expect(result.isValid)
        let empty = #"{"signatures":{"domain":{"ed25519:1":"\#(Self.emptySignature)"}}}"#
        #expect(try JSONSigning.verify(Array(empty.utf8), serverName: "domain", publicKeys: try Self.specKeys()).isValid)
        // A padded signature decodes too.
        let padded = #"{"signatures":{"domain":{"ed25519:1":"\#(Self.emptySignature)=="}}}"#
        #expect(try JSONSigning.verify(Array(padded.utf8), serverName: "domain", publicKeys: try Self.specKeys()).isValid)
    }

    @Test("a tampered object fails with the key listed as invalid")
    func verifyTampered() throws {
        let tampered = #"{"one":2,"signatures":{"domain":{"ed25519:1":"\#(Self.oneTwoSignature)"}},"two":"Two"}"#
        let result = try JSONSigning.verify(Array(tampered.utf8), serverName: "domain", publicKeys: try Self.specKeys())
        #expect(result.invalid == [KeyID("ed25519:1")!])
        #expect(result.valid.isEmpty)
        #expect(!result.isValid)
        // Adding a member is tampering too.
        let added = #"{"one":1,"signatures":{"domain":{"ed25519:1":"\#(Self.oneTwoSignature)"}},"three":3,"two":"Two"}"#
        #expect(try !JSONSigning.verify(Array(added.utf8), serverName: "domain", publicKeys: try Self.specKeys()).isValid)
    }

    @Test("missing signatures: no signatures member, none for the server, none for the key")
    func verifyMissing() throws {
        let id = KeyID("ed25519:1")!
        for json in [
            #"{"one":1,"two":"Two"}"#, #"{"one":1,"signatures":{},"two":"Two"}"#,
            #"{"one":1,"signatures":{"other.org":{"ed25519:1":"\#(Self.oneTwoSignature)"}},"two":"Two"}"#,
            #"{"one":1,"signatures":{"domain":{"ed25519:2":"\#(Self.oneTwoSignature)"}},"two":"Two"}"#,
        ] {
            let result = try JSONSigning.verify(Array(json.utf8), serverName: "domain", publicKeys: try Self.specKeys())
            #expect(result == JSONSigning.Verification(valid: [], invalid: [], missing: [id]), "\(json)")
            #expect(!result.isValid)
        }
        // With no keys given, nothing is valid.
        let signed = #"{"signatures":{"domain":{"ed25519:1":"\#(Self.emptySignature)"}}}"#
        #expect(try !JSONSigning.verify(Array(signed.utf8), serverName: "domain", publicKeys: [:]).isValid)
    }

    @Test("a signature checked against the wrong public key is invalid; one good and one bad is not valid")
    func verifyWrongKey() throws {
        let other = try TestKeys.random(version: "1")
        let signed = #"{"signatures":{"domain":{"ed25519:1":"\#(Self.emptySignature)"}}}"#
        let result = try JSONSigning.verify(Array(signed.utf8), serverName: "domain", publicKeys: [other.id: other.publicKey])
        #expect(result.invalid == [other.id])
        #expect(!result.isValid)

        let spec = try TestKeys.spec()
        let second = try TestKeys.random(version: "2")
        let both = try JSONSigning.sign(Array("{}".utf8), serverName: "domain", keys: [spec, second])
        let wrongSecond = try TestKeys.random(version: "2")
        let mixed = try JSONSigning.verify(both, serverName: "domain", publicKeys: [spec.id: spec.publicKey, second.id: wrongSecond.publicKey])
        #expect(mixed.valid == [spec.id])
        #expect(mixed.invalid == [second.id])
        #expect(!mixed.isValid)
    }

    @Test("signatures that are not strings, not base64 or not 64 bytes are invalid, not errors")
    func verifyMalformedSignatureValues() throws {
        let id = KeyID("ed25519:1")!
        for value in ["1", "null", #""not base64!""#, #""AAAA""#, #""\#(Self.emptySignature)AAAA""#, "{}", #""""#] {
            let json = #"{"signatures":{"domain":{"ed25519:1":\#(value)}}}"#
            let result = try JSONSigning.verify(Array(json.utf8), serverName: "domain", publicKeys: try Self.specKeys())
            #expect(result == JSONSigning.Verification(valid: [], invalid: [id], missing: []), "\(value)")
        }
    }

    @Test("a malformed signatures member is an error")
    func verifyMalformedSignatures() throws {
        for (json, why) in [
            (#"{"signatures":1}"#, "not an object"), (#"{"signatures":[]}"#, "not an object"),
            (#"{"signatures":{"domain":[]}}"#, "signatures.domain is not an object"),
            (#"{"signatures":{"elsewhere":"x"}}"#, "signatures.elsewhere is not an object"),
        ] {
            #expect(throws: JSONSigningError.malformedSignatures(why)) {
                try JSONSigning.verify(Array(json.utf8), serverName: "domain", publicKeys: try Self.specKeys())
            }
        }
        #expect(throws: JSONSigningError.json(JSONError(.duplicateKey("a"), at: 7))) {
            try JSONSigning.verify(Array(#"{"a":1,"a":2}"#.utf8), serverName: "domain", publicKeys: try Self.specKeys())
        }
    }

    @Test("results list keys in ID order")
    func verifyOrder() throws {
        let keys = try TestKeys.keys([("c", [UInt8](repeating: 3, count: 32)), ("a", [UInt8](repeating: 1, count: 32)), ("b", [UInt8](repeating: 2, count: 32))])
        let signed = try JSONSigning.sign(Array("{}".utf8), serverName: "s", keys: [keys[0], keys[1]])
        let result = try JSONSigning.verify(signed, serverName: "s", publicKeys: Dictionary(uniqueKeysWithValues: keys.map { ($0.id, $0.publicKey) }))
        #expect(result.valid.map(\.version) == ["a", "c"])
        #expect(result.missing.map(\.version) == ["b"])
        #expect(result.isValid)
    }

    @Test("property: random objects sign then verify; the tree and bytes APIs agree")
    func randomObjects() throws {
        let key = try TestKeys.random(version: "prop")
        let other = try TestKeys.random(version: "prop")
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<150 {
            var object = JSONObject()
            for _ in 0..<Int.random(in: 0...5, using: &rng) {
                object[RandomJSON.string(using: &rng)] = RandomJSON.value(depth: 1, using: &rng)
            }
            if Bool.random(using: &rng) { object["unsigned"] = RandomJSON.value(depth: 2, using: &rng) }
            let text = RandomJSON.render(.object(object), using: &rng)

            let signed = try JSONSigning.sign(Array(text.utf8), serverName: "example.org", keys: [key])
            let tree = JSONSigning.sign(object, serverName: "example.org", keys: [key])
            #expect(tree.canonicalBytes == signed)
            #expect(try CanonicalJSON.canonicalize(signed) == signed)

            let good = try JSONSigning.verify(signed, serverName: "example.org", publicKeys: [key.id: key.publicKey])
            #expect(good.isValid)
            let bad = try JSONSigning.verify(signed, serverName: "example.org", publicKeys: [other.id: other.publicKey])
            #expect(!bad.isValid)
            #expect(try !JSONSigning.verify(signed, serverName: "other.org", publicKeys: [key.id: key.publicKey]).isValid)

            // Signing again with the same key is idempotent.
            #expect(try JSONSigning.sign(signed, serverName: "example.org", keys: [key]) == signed)
        }
    }
}
