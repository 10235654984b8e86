import Testing

@testable import SigilCore

@Suite("Key documents (/_matrix/key/v2/server)")
struct KeyDocumentTests {
    static func string(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test("MMR's key-server vectors (§1.9) reproduce the published signatures", arguments: [0, 1, 2])
    func mmrVectors(index: Int) throws {
        let (key, validUntil, signature) = KeyFixtures.keyDocuments[index]
        let fileText = [KeyFixtures.mmr, KeyFixtures.dendrite, KeyFixtures.synapseLine(KeyFixtures.synapse1)][index]
        let server = try TestKeys.server("localhost", files: [fileText])
        let document = KeyDocument.build(for: server, validUntilTS: validUntil)
        let unsignedJSON = KeyFixtures.keyDocumentJSON(key, validUntilTS: validUntil)
        let expected =
            String(unsignedJSON.dropLast()).replacing(
                #","valid_until_ts""#, with: #","signatures":{"localhost":{"\#(key.id)":"\#(signature)"}},"valid_until_ts""#) + "}"
        #expect(Self.string(document) == expected)
        #expect(KeyDocument.object(for: server, validUntilTS: validUntil).canonicalBytes == document)
    }

    @Test("the spec key's document (§3.8) reproduces exactly")
    func specVector() throws {
        let server = try TestKeys.server("domain", files: ["ed25519 1 \(TestKeys.specSeedBase64)"])
        let document = KeyDocument.build(for: server, validUntilTS: 1_700_000_000_000)
        #expect(
            Self.string(document)
                == #"{"old_verify_keys":{},"server_name":"domain","signatures":{"domain":{"ed25519:1":"ewq/uPhfAzmWSa/3PRlr5Q0W59jG75Wtb6mzxIELuVRAxYMHOeMFue6fNXijZkIwLLembQ0+gl7DIkiUGcoUBg"}},"valid_until_ts":1700000000000,"verify_keys":{"ed25519:1":{"key":"XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"}}}"#
        )
    }

    @Test("retired keys appear in old_verify_keys with expired_ts, covered by the signature")
    func oldVerifyKeys() throws {
        let retired = RetiredKey(
            id: KeyID("ed25519:old")!, publicKey: PublicKey(base64: KeyFixtures.mmr1.publicKey)!, expiredTS: 1_600_000_000_000)
        let server = try TestKeys.server("domain", files: ["ed25519 1 \(TestKeys.specSeedBase64)"], retired: [retired])
        let document = KeyDocument.build(for: server, validUntilTS: 1_700_000_000_000)
        // Signature computed independently (Python `cryptography`, json.dumps sort_keys).
        #expect(
            Self.string(document)
                == #"{"old_verify_keys":{"ed25519:old":{"expired_ts":1600000000000,"key":"TohekYXzLx7VzV8FtLQlI3XsSdPv1CjhVYY5rZmFCvU"}},"server_name":"domain","signatures":{"domain":{"ed25519:1":"tpmh0Ej8izbuJ40TmQa1DvDC7ea0otmFhlIpzGpxw0WW2N0aTToUuiwuEHfGMRguGa99t0sYdtvvOeHt/jLYDw"}},"valid_until_ts":1700000000000,"verify_keys":{"ed25519:1":{"key":"XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"}}}"#
        )
        // Retired keys do not sign.
        let signatures = try #require(try JSONValue(parsing: document).objectValue?["signatures"]?.objectValue?["domain"]?.objectValue)
        #expect(signatures.keys == ["ed25519:1"])
    }

    @Test("a document is signed by every active key, and each signature verifies")
    func signedByEveryActiveKey() throws {
        let retired = [
            RetiredKey(id: KeyID("ed25519:r1")!, publicKey: PublicKey(base64: KeyFixtures.dendrite1.publicKey)!, expiredTS: 1),
            RetiredKey(id: KeyID("ed25519:r2")!, publicKey: PublicKey(base64: KeyFixtures.dendrite2.publicKey)!, expiredTS: 2),
        ]
        let server = try TestKeys.server("example.org:8448", files: [KeyFixtures.synapse, KeyFixtures.mmrMulti], retired: retired)
        let document = KeyDocument.build(for: server, validUntilTS: 1_234_567_890_123)
        let object = try #require(try JSONValue(parsing: document).objectValue)
        #expect(object.keys == ["old_verify_keys", "server_name", "signatures", "valid_until_ts", "verify_keys"])
        #expect(object["server_name"] == .string("example.org:8448"))
        #expect(object["valid_until_ts"] == .integer(1_234_567_890_123))

        let verifyKeys = try #require(object["verify_keys"]?.objectValue)
        #expect(verifyKeys.keys == ["ed25519:CjtBYA", "ed25519:IZJY6A", "ed25519:a_RVfN", "ed25519:e5d0oC"])
        for known in [KeyFixtures.synapse1, KeyFixtures.synapse2, KeyFixtures.mmr1, KeyFixtures.mmr2] {
            #expect(verifyKeys[known.id] == .object(JSONObject([("key", .string(known.publicKey))])!))
        }
        let old = try #require(object["old_verify_keys"]?.objectValue)
        #expect(
            old["ed25519:r1"] == .object(JSONObject([("expired_ts", .integer(1)), ("key", .string(KeyFixtures.dendrite1.publicKey))])!))
        #expect(old["ed25519:r2"]?.objectValue?["expired_ts"] == .integer(2))

        let publicKeys = Dictionary(uniqueKeysWithValues: server.activeKeys.map { ($0.id, $0.publicKey) })
        let verification = try JSONSigning.verify(document, serverName: "example.org:8448", publicKeys: publicKeys)
        #expect(verification.valid.count == 4)
        #expect(verification.invalid.isEmpty && verification.missing.isEmpty)
        #expect(verification.isValid)
        // Each signature alone is the signature of the document without signatures.
        let bare = try #require(JSONObject(object.members.filter { $0.key != "signatures" }.map { ($0.key, $0.value) }))
        for key in server.activeKeys {
            let signature = object["signatures"]?.objectValue?["example.org:8448"]?.objectValue?[key.id.description]?.stringValue
            #expect(signature == key.sign(bare.canonicalBytes).base64)
        }
    }

    @Test("validity limits are 7 days and 1 hour in milliseconds")
    func limits() {
        #expect(KeyDocument.maxValidity == 604_800_000)
        #expect(KeyDocument.minValidity == 3_600_000)
    }
}
