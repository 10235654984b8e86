import Testing

@testable import SigilCore

@Suite("Keyring")
struct KeyringTests {
    static func file(_ text: String, path: String = "<fixture>") throws -> KeyFile {
        try KeyFile(fixture: text, path: path)
    }

    static func retired(_ version: String, _ key: KnownKey, expired: Int64 = 1_600_000_000_000) throws -> RetiredKey {
        RetiredKey(id: try #require(KeyID(version: version)), publicKey: try #require(PublicKey(base64: key.publicKey)), expiredTS: expired)
    }

    static func keyring(_ sources: [Keyring.Source]) throws(KeyringError) -> Keyring {
        try Keyring(sources: sources, lockPolicy: .warn)
    }

    @Test("several servers are kept in name order (for paging); each server's first key signs")
    func severalServers() throws {
        let keyring = try Self.keyring([
            Keyring.Source(serverName: "example.org", files: [try Self.file(KeyFixtures.synapse)]),
            Keyring.Source(
                serverName: "media.example.org:8448", files: [try Self.file(KeyFixtures.mmrMulti), try Self.file(KeyFixtures.dendrite)]),
            Keyring.Source(serverName: "[::1]:8448", files: [try Self.file("ed25519 1 \(TestKeys.specSeedBase64)")]),
        ])
        #expect(keyring.serverNames == ["[::1]:8448", "example.org", "media.example.org:8448"])
        #expect(keyring.keyCount == 6)

        let first = try #require(keyring.server("example.org"))
        #expect(first.serverName == "example.org")
        #expect(first.activeKeys.map(\.id.version) == ["a_RVfN", "IZJY6A"])
        #expect(first.signingKey.id.version == "a_RVfN")
        #expect(first.signingKey.publicKey.base64 == KeyFixtures.synapse1.publicKey)

        let second = try #require(keyring.server("media.example.org:8448"))
        #expect(second.activeKeys.map(\.id.version) == ["e5d0oC", "CjtBYA", "1Pu3u3"])
        #expect(
            second.activeKeys.map(\.publicKey.base64) == [
                KeyFixtures.mmr1.publicKey, KeyFixtures.mmr2.publicKey, KeyFixtures.dendrite1.publicKey,
            ])
        #expect(second.signingKey.id.version == "e5d0oC")

        let third = try #require(keyring.server("[::1]:8448"))
        #expect(third.signingKey.publicKey.base64 == TestKeys.specPublicKey)

        // Lookups are exact.
        #expect(keyring.server("EXAMPLE.ORG") == nil)
        #expect(keyring.server("media.example.org") == nil)
        #expect(keyring.server("") == nil)
    }

    @Test("keys signing through a keyring give the published signatures")
    func signing() throws {
        let keyring = try Self.keyring([Keyring.Source(serverName: "localhost", files: [try Self.file(KeyFixtures.mmr)])])
        let server = try #require(keyring.server("localhost"))
        let (key, validUntil, signature) = KeyFixtures.keyDocuments[0]
        let json = Array(KeyFixtures.keyDocumentJSON(key, validUntilTS: validUntil).utf8)
        #expect(server.signingKey.sign(json).base64 == signature)
    }

    @Test("active and retired keys are found by ID; unknown IDs are not")
    func lookups() throws {
        let old = try Self.retired("old1", KeyFixtures.dendrite2, expired: 1_650_000_000_000)
        let server = try TestKeys.server("example.org", files: [KeyFixtures.synapse], retired: [old])
        let a = try #require(KeyID(version: "a_RVfN"))
        let b = try #require(KeyID(version: "IZJY6A"))
        #expect(server.activeKey(a)?.publicKey.base64 == KeyFixtures.synapse1.publicKey)
        #expect(server.activeKey(b)?.publicKey.base64 == KeyFixtures.synapse2.publicKey)
        #expect(server.activeKey(old.id) == nil)
        #expect(server.publicKey(a)?.base64 == KeyFixtures.synapse1.publicKey)
        #expect(server.publicKey(old.id)?.base64 == KeyFixtures.dendrite2.publicKey)
        #expect(server.publicKey(try #require(KeyID(version: "nope"))) == nil)
        #expect(server.retiredKeys == [old])
        #expect(server.retiredKeys[0].expiredTS == 1_650_000_000_000)
    }

    @Test(
        "invalid server names are refused",
        arguments: ["", "exa mple.org", "example.org:", "example.org:123456", "\"example.org\"", "[::1", "exämple.org", "example.org/path"])
    func invalidServerName(name: String) throws {
        let file = try Self.file(KeyFixtures.mmr)
        #expect(throws: KeyringError.invalidServerName(name)) {
            try Self.keyring([Keyring.Source(serverName: name, files: [file])])
        }
    }

    @Test("the same server twice is refused")
    func duplicateServer() throws {
        let file = try Self.file(KeyFixtures.mmr)
        let other = try Self.file(KeyFixtures.dendrite)
        #expect(throws: KeyringError.duplicateServer("example.org")) {
            try Self.keyring([
                Keyring.Source(serverName: "example.org", files: [file]),
                Keyring.Source(serverName: "other.org", files: [other]),
                Keyring.Source(serverName: "example.org", files: [other]),
            ])
        }
    }

    @Test("a server without keys is refused, whether it has no files or only retired keys")
    func emptyServer() throws {
        #expect(throws: KeyringError.noActiveKeys(server: "example.org")) {
            try Self.keyring([Keyring.Source(serverName: "example.org", files: [])])
        }
        let old = try Self.retired("old", KeyFixtures.mmr2)
        #expect(throws: KeyringError.noActiveKeys(server: "example.org")) {
            try Self.keyring([Keyring.Source(serverName: "example.org", files: [], retired: [old])])
        }
    }

    @Test("the same key ID in two files of one server is refused")
    func duplicateAcrossFiles() throws {
        let first = try Self.file(KeyFixtures.mmr, path: "a.key")
        // Same ID, different seed, another format.
        let second = try Self.file("ed25519 e5d0oC \(KeyFixtures.synapse2.seedBase64)", path: "b.key")
        #expect(throws: KeyringError.duplicateKeyID(server: "example.org", KeyID(version: "e5d0oC")!)) {
            try Self.keyring([Keyring.Source(serverName: "example.org", files: [first, second])])
        }
        // The same file twice as well.
        #expect(throws: KeyringError.duplicateKeyID(server: "example.org", KeyID(version: "e5d0oC")!)) {
            try Self.keyring([Keyring.Source(serverName: "example.org", files: [first, first])])
        }
    }

    @Test("the same key ID on two different servers is fine (each server has its own namespace)")
    func sameIDOnTwoServers() throws {
        let file = try Self.file(KeyFixtures.mmr)
        let keyring = try Self.keyring([
            Keyring.Source(serverName: "a.example", files: [file]),
            Keyring.Source(serverName: "b.example", files: [file]),
        ])
        #expect(keyring.keyCount == 2)
        #expect(keyring.server("a.example")?.signingKey.publicKey == keyring.server("b.example")?.signingKey.publicKey)
    }

    @Test("a key both active and retired is refused; two retired keys with one ID are refused")
    func retiredConflicts() throws {
        let file = try Self.file(KeyFixtures.mmrMulti)
        let clash = try Self.retired("CjtBYA", KeyFixtures.mmr2)
        #expect(throws: KeyringError.retiredKeyIsActive(server: "example.org", clash.id)) {
            try Self.keyring([Keyring.Source(serverName: "example.org", files: [file], retired: [clash])])
        }
        let old = try Self.retired("old", KeyFixtures.dendrite1)
        let again = try Self.retired("old", KeyFixtures.dendrite2, expired: 1)
        #expect(throws: KeyringError.duplicateKeyID(server: "example.org", old.id)) {
            try Self.keyring([Keyring.Source(serverName: "example.org", files: [file], retired: [old, again])])
        }
    }

    @Test("errors describe themselves")
    func descriptions() {
        let id = KeyID(version: "a")!
        #expect(KeyringError.invalidServerName("a b").description == "'a b' is not a valid Matrix server name")
        #expect(KeyringError.duplicateServer("x.org").description == "server x.org is configured twice")
        #expect(KeyringError.noActiveKeys(server: "x.org").description == "server x.org has no signing keys")
        #expect(KeyringError.duplicateKeyID(server: "x.org", id).description.contains("two keys with ID ed25519:a"))
        #expect(KeyringError.retiredKeyIsActive(server: "x.org", id).description.contains("both as an active and as a retired key"))
        #expect(KeyringError.memory(.allocationFailed(bytes: 8)).description == GuardedMemoryError.allocationFailed(bytes: 8).description)
    }

    @Test("an empty keyring is allowed and knows nothing")
    func emptyKeyring() throws {
        let keyring = try Self.keyring([])
        #expect(keyring.serverNames.isEmpty)
        #expect(keyring.keyCount == 0)
        #expect(keyring.server("example.org") == nil)
    }
}
