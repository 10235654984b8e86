import Testing

@testable import SigilCore

@Suite("Key files: writing")
struct KeyFileWriterTests {
    func keys(_ text: String) throws -> [SigningKey] {
        try KeyFile(fixture: text).loadKeys(lockPolicy: .warn)
    }

    func write(_ keys: [SigningKey], _ format: KeyFileFormat) throws -> String {
        String(decoding: try KeyFileWriter.encode(keys, format: format, lockPolicy: .warn).testBytes, as: UTF8.self)
    }

    @Test("MMR output is MMR's 142-byte file exactly")
    func mmr() throws {
        let out = try KeyFileWriter.encode(try keys(KeyFixtures.mmr), format: .mmr, lockPolicy: .warn)
        #expect(out.count == 142)
        #expect(out.testBytes == Array(KeyFixtures.mmr.utf8))
    }

    @Test("multi-key outputs match MMR's encoders byte for byte")
    func multi() throws {
        #expect(try write(try keys(KeyFixtures.mmrMulti), .mmr) == KeyFixtures.mmrMulti)
        #expect(try write(try keys(KeyFixtures.dendrite), .dendrite) == KeyFixtures.dendrite)
        #expect(try write(try keys(KeyFixtures.dendriteMulti), .dendrite) == KeyFixtures.dendriteMulti)
        // Synapse: joined by LF with no trailing newline.
        let synapse = try write(try keys(KeyFixtures.synapse), .synapse)
        #expect(synapse == KeyFixtures.synapse)
        #expect(synapse.utf8.last != 0x0A)
        #expect(
            try write(try keys(KeyFixtures.synapseLine(KeyFixtures.synapse1)), .synapse) == KeyFixtures.synapseLine(KeyFixtures.synapse1))
    }

    @Test("Synapse's own file (trailing LF) is rewritten without it")
    func synapseTrailingNewline() throws {
        #expect(try write(try keys(KeyFixtures.synapse + "\n"), .synapse) == KeyFixtures.synapse)
    }

    @Test("converting a Synapse key for MMR (generate_signing_key -input … -format mmr) pads the seed")
    func synapseToMMR() throws {
        let key = KeyFixtures.synapse1
        let expected =
            "-----BEGIN MMR PRIVATE KEY-----\nKey-ID: ed25519:a_RVfN\nVersion: 1\n\n\(key.seedBase64)=\n-----END MMR PRIVATE KEY-----\n"
        #expect(try write(try keys(KeyFixtures.synapseLine(key)), .mmr) == expected)
        let dendrite =
            "-----BEGIN MATRIX PRIVATE KEY-----\nKey-ID: ed25519:a_RVfN\n\n\(key.seedBase64)=\n-----END MATRIX PRIVATE KEY-----\n"
        #expect(try write(try keys(KeyFixtures.synapseLine(key)), .dendrite) == dendrite)
        // And back: the Synapse line drops the padding.
        #expect(
            try write(try keys(KeyFixtures.mmrBlock(KeyFixtures.mmr1)), .synapse)
                == "ed25519 e5d0oC PJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcgc")
    }

    static let sources: [(String, KeyFileFormat)] = [
        (KeyFixtures.mmrMulti, .mmr), (KeyFixtures.dendriteMulti, .dendrite), (KeyFixtures.synapse, .synapse),
        (KeyFixtures.mmr, .mmr), (KeyFixtures.dendrite, .dendrite),
    ]

    @Test(
        "round trips A → B → A are byte-identical for every pair of formats",
        arguments: sources, KeyFileFormat.allCases)
    func roundTrip(source: (String, KeyFileFormat), target: KeyFileFormat) throws {
        let (text, format) = source
        let original = try KeyFile(fixture: text)
        #expect(original.format == format)
        let originalKeys = try original.loadKeys(lockPolicy: .warn)

        let converted = try KeyFileWriter.encode(originalKeys, format: target, lockPolicy: .warn)
        let middle = try KeyFile(contents: converted, path: "converted")
        #expect(middle.format == target)
        #expect(middle.keyIDs == original.keyIDs)
        let middleKeys = try middle.loadKeys(lockPolicy: .warn)
        #expect(middleKeys.map(\.publicKey) == originalKeys.map(\.publicKey))
        #expect(middleKeys.map { $0.withSeed { Array($0) } } == originalKeys.map { $0.withSeed { Array($0) } })

        let back = try KeyFileWriter.encode(middleKeys, format: format, lockPolicy: .warn)
        #expect(back.testBytes == Array(text.utf8))
    }

    @Test("the spec seed's non-zero trailing bits are normalised on writing; the key is unchanged")
    func canonicalSeedOnWrite() throws {
        let loaded = try keys("ed25519 1 \(TestKeys.specSeedBase64)")
        let written = try write(loaded, .synapse)
        #expect(written == "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0")
        #expect(try keys(written).first?.publicKey.base64 == TestKeys.specPublicKey)
        #expect(try write(loaded, .mmr).contains("\nYJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0=\n"))
    }

    @Test("no keys write an empty file in every format")
    func empty() throws {
        for format in KeyFileFormat.allCases {
            let buffer = try KeyFileWriter.encode([], format: format, lockPolicy: .warn)
            #expect(buffer.count == 0)
            #expect(buffer.testBytes.isEmpty)
        }
    }

    @Test("keys from different files and arenas write together, in the order given")
    func mixedSources() throws {
        let all = try keys(KeyFixtures.synapse) + keys(KeyFixtures.mmr) + [TestKeys.spec()]
        let text = try write(all, .synapse)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        #expect(lines.map { $0.split(separator: " ")[1] } == ["a_RVfN", "IZJY6A", "e5d0oC", "1"])
        let reparsed = try KeyFile(fixture: text)
        #expect(try reparsed.loadKeys(lockPolicy: .warn).map(\.publicKey) == all.map(\.publicKey))
    }
}
