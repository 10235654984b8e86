import Testing

@testable import SigilCore

/// A fixture and what it must parse to.
struct KeyFileCase: Sendable, CustomStringConvertible {
    let name: String
    let text: String
    let format: KeyFileFormat
    let keys: [KnownKey]
    let lines: [Int]
    var description: String { name }

    static let fixtures: [KeyFileCase] = [
        KeyFileCase(name: "MMR", text: KeyFixtures.mmr, format: .mmr, keys: [KeyFixtures.mmr1], lines: [1]),
        KeyFileCase(
            name: "MMR, two keys", text: KeyFixtures.mmrMulti, format: .mmr, keys: [KeyFixtures.mmr1, KeyFixtures.mmr2], lines: [1, 7]),
        KeyFileCase(name: "Dendrite", text: KeyFixtures.dendrite, format: .dendrite, keys: [KeyFixtures.dendrite1], lines: [1]),
        KeyFileCase(
            name: "Dendrite, two keys", text: KeyFixtures.dendriteMulti, format: .dendrite,
            keys: [KeyFixtures.dendrite1, KeyFixtures.dendrite2], lines: [1, 6]),
        KeyFileCase(
            name: "Synapse (MMR's writer)", text: KeyFixtures.synapse, format: .synapse,
            keys: [KeyFixtures.synapse1, KeyFixtures.synapse2], lines: [1, 2]),
        KeyFileCase(
            name: "Synapse (Synapse's writer, trailing LF)", text: KeyFixtures.synapse + "\n", format: .synapse,
            keys: [KeyFixtures.synapse1, KeyFixtures.synapse2], lines: [1, 2]),
    ]
}

@Suite("Key files: parsing")
struct KeyFileParsingTests {
    /// Parses and loads `text`, checking format, IDs, lines, public keys and seeds.
    func check(
        _ text: String, format: KeyFileFormat, keys: [KnownKey], lines: [Int], sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let file = try KeyFile(fixture: text, path: "/etc/sigil/test.key")
        #expect(file.path == "/etc/sigil/test.key", sourceLocation: sourceLocation)
        #expect(file.format == format, sourceLocation: sourceLocation)
        #expect(file.keyIDs.map(\.description) == keys.map(\.id), sourceLocation: sourceLocation)
        #expect(file.entries.map(\.line) == lines, sourceLocation: sourceLocation)
        let loaded = try file.loadKeys(lockPolicy: .warn)
        #expect(loaded.map(\.id.description) == keys.map(\.id), sourceLocation: sourceLocation)
        #expect(loaded.map(\.publicKey.base64) == keys.map(\.publicKey), sourceLocation: sourceLocation)
        #expect(loaded.map { $0.withSeed { Array($0).hex } } == keys.map(\.seedHex), sourceLocation: sourceLocation)
    }

    @Test("MMR's fixtures parse with the right format, IDs, lines and public keys", arguments: KeyFileCase.fixtures)
    func fixtures(fixture: KeyFileCase) throws {
        try check(fixture.text, format: fixture.format, keys: fixture.keys, lines: fixture.lines)
    }

    @Test("the MMR fixture is byte for byte MMR's 142-byte file (research doc §1.2 hex dump)")
    func mmrFixtureBytes() {
        let dump = """
            2d2d 2d2d 2d42 4547 494e 204d 4d52 2050
            5249 5641 5445 204b 4559 2d2d 2d2d 2d0a
            4b65 792d 4944 3a20 6564 3235 3531 393a
            6535 6430 6f43 0a56 6572 7369 6f6e 3a20
            310a 0a50 4a74 304f 6149 496d 444a 6b38
            502f 5044 6234 544e 5148 6749 2f31 4141
            3143 2b41 6151 6141 4278 4163 6763 3d0a
            2d2d 2d2d 2d45 4e44 204d 4d52 2050 5249
            5641 5445 204b 4559 2d2d 2d2d 2d0a
            """
        let bytes = [UInt8](hex: dump.filter { !$0.isWhitespace })
        #expect(bytes.count == 142)
        #expect(Array(KeyFixtures.mmr.utf8) == bytes)
    }

    @Test("CRLF line endings parse the same", arguments: KeyFileCase.fixtures)
    func crlf(fixture: KeyFileCase) throws {
        let crlf = fixture.text.replacing("\n", with: "\r\n")
        #expect(crlf.utf8.count > fixture.text.utf8.count)
        try check(crlf, format: fixture.format, keys: fixture.keys, lines: fixture.lines)
    }

    @Test("each key signs its key-server JSON to MMR's published signature (§1.9), whichever format holds it")
    func publishedSignatures() throws {
        let files: [(KnownKey, String)] = [
            (KeyFixtures.mmr1, KeyFixtures.mmr), (KeyFixtures.dendrite1, KeyFixtures.dendrite), (KeyFixtures.synapse1, KeyFixtures.synapse),
        ]
        for (known, validUntil, signature) in KeyFixtures.keyDocuments {
            let text = try #require(files.first { $0.0.id == known.id }?.1)
            let key = try #require(try KeyFile(fixture: text).loadKeys(lockPolicy: .warn).first)
            let json = Array(KeyFixtures.keyDocumentJSON(known, validUntilTS: validUntil).utf8)
            #expect(key.sign(json).base64 == signature, "\(known)")
            // The same seed written in each of the three formats signs identically.
            for line in [KeyFixtures.mmrBlock(known), KeyFixtures.dendriteBlock(known), "ed25519 \(known.version) \(known.seedBase64)"] {
                let converted = try #require(try KeyFile(fixture: line).loadKeys(lockPolicy: .warn).first)
                #expect(converted.id.description == known.id)
                #expect(converted.sign(json).base64 == signature, "\(known) as \(line.prefix(20))")
            }
        }
    }

    @Test("blank lines are skipped and line numbers still count them")
    func blankLines() throws {
        let synapse =
            "\n\n" + KeyFixtures.synapseLine(KeyFixtures.synapse1) + "\n  \n\t\n" + KeyFixtures.synapseLine(KeyFixtures.synapse2) + "\n\n"
        try check(synapse, format: .synapse, keys: [KeyFixtures.synapse1, KeyFixtures.synapse2], lines: [3, 6])
        let pem = "\n" + KeyFixtures.mmrBlock(KeyFixtures.mmr1) + "\n\n" + KeyFixtures.mmrBlock(KeyFixtures.mmr2)
        try check(pem, format: .mmr, keys: [KeyFixtures.mmr1, KeyFixtures.mmr2], lines: [2, 10])
    }

    @Test("trailing blank lines after the last PEM block are accepted (MMR itself refuses them)")
    func trailingBlankLines() throws {
        try check(KeyFixtures.mmr + "\n\n\n", format: .mmr, keys: [KeyFixtures.mmr1], lines: [1])
        try check(KeyFixtures.dendrite + "\r\n  \n", format: .dendrite, keys: [KeyFixtures.dendrite1], lines: [1])
    }

    @Test("a file missing its final newline is accepted")
    func noFinalNewline() throws {
        try check(String(KeyFixtures.mmr.dropLast()), format: .mmr, keys: [KeyFixtures.mmr1], lines: [1])
        try check(
            String(KeyFixtures.dendriteMulti.dropLast()), format: .dendrite, keys: [KeyFixtures.dendrite1, KeyFixtures.dendrite2],
            lines: [1, 6])
    }

    @Test("the blank line after PEM headers is optional, as in Go's PEM reader")
    func noBlankLineAfterHeaders() throws {
        let mmr =
            "-----BEGIN MMR PRIVATE KEY-----\nKey-ID: ed25519:e5d0oC\nVersion: 1\n\(KeyFixtures.mmr1.seedBase64)\n-----END MMR PRIVATE KEY-----\n"
        try check(mmr, format: .mmr, keys: [KeyFixtures.mmr1], lines: [1])
        let dendrite =
            "-----BEGIN MATRIX PRIVATE KEY-----\nKey-ID: ed25519:1Pu3u3\n\(KeyFixtures.dendrite1.seedBase64)\n-----END MATRIX PRIVATE KEY-----"
        try check(dendrite, format: .dendrite, keys: [KeyFixtures.dendrite1], lines: [1])
    }

    @Test("a PEM body wrapped over several lines, padded or not, decodes")
    func wrappedBody() throws {
        let seed = KeyFixtures.mmr1.seedBase64
        let split = seed.index(seed.startIndex, offsetBy: 20)
        let wrapped =
            "-----BEGIN MMR PRIVATE KEY-----\nKey-ID: ed25519:e5d0oC\nVersion: 1\n\n\(seed[..<split])\r\n  \(seed[split...])\n-----END MMR PRIVATE KEY-----\n"
        try check(wrapped, format: .mmr, keys: [KeyFixtures.mmr1], lines: [1])
        let unpadded = KeyFixtures.mmrBlock(KeyFixtures.mmr1).replacing(seed, with: String(seed.dropLast()))
        try check(unpadded, format: .mmr, keys: [KeyFixtures.mmr1], lines: [1])
    }

    @Test("PEM headers: unknown ones are ignored, spacing around the value is free, Dendrite ignores Version")
    func headers() throws {
        let mmr =
            "-----BEGIN MMR PRIVATE KEY-----\nComment: made by hand\nKey-ID:ed25519:e5d0oC\nVersion:\t1  \n\n\(KeyFixtures.mmr1.seedBase64)\n-----END MMR PRIVATE KEY-----\n"
        try check(mmr, format: .mmr, keys: [KeyFixtures.mmr1], lines: [1])
        let dendrite =
            "-----BEGIN MATRIX PRIVATE KEY-----\nVersion: 7\nKey-ID: ed25519:1Pu3u3\n\n\(KeyFixtures.dendrite1.seedBase64)\n-----END MATRIX PRIVATE KEY-----\n"
        try check(dendrite, format: .dendrite, keys: [KeyFixtures.dendrite1], lines: [1])
    }

    @Test("Synapse lines: tabs and repeated spaces separate fields (as Python's split() does); padding is optional")
    func synapseSpacing() throws {
        let key = KeyFixtures.synapse1
        try check("ed25519\t\(key.version)  \(key.seedBase64)", format: .synapse, keys: [key], lines: [1])
        try check("  ed25519 \(key.version) \(key.seedBase64)=  \n", format: .synapse, keys: [key], lines: [1])
    }

    @Test("the spec's seed with non-zero trailing bits loads from a Synapse line")
    func specSeedLine() throws {
        let file = try KeyFile(fixture: "ed25519 1 \(TestKeys.specSeedBase64)\n")
        let key = try #require(try file.loadKeys(lockPolicy: .warn).first)
        #expect(key.id.description == "ed25519:1")
        #expect(key.publicKey.base64 == TestKeys.specPublicKey)
        #expect(key.withSeed { Array($0).hex } == TestKeys.specSeedHex)
    }

    @Test("many keys stay in file order, including MMR-generated and Synapse-style IDs side by side")
    func order() throws {
        let keys = [
            KeyFixtures.synapse2, KeyFixtures.mmr1, KeyFixtures.dendrite2, KeyFixtures.synapse1, KeyFixtures.mmr2, KeyFixtures.dendrite1,
        ]
        let synapse = keys.map { "ed25519 \($0.version) \(Base64.encode([UInt8](hex: $0.seedHex)))" }.joined(separator: "\n")
        try check(synapse, format: .synapse, keys: keys, lines: Array(1...6))
        let mmr = keys.map(KeyFixtures.mmrBlock).joined()
        try check(mmr, format: .mmr, keys: keys, lines: [1, 7, 13, 19, 25, 31])
    }

    @Test("the same seed under two IDs is allowed (MMR de-duplicates by ID only)")
    func sameSeedTwoIDs() throws {
        let seed = KeyFixtures.synapse1.seedBase64
        let file = try KeyFile(fixture: "ed25519 a \(seed)\ned25519 b \(seed)")
        let keys = try file.loadKeys(lockPolicy: .warn)
        #expect(keys.map(\.id.version) == ["a", "b"])
        #expect(keys[0].publicKey == keys[1].publicKey)
    }

    @Test("a file already in guarded memory parses in place")
    func guardedContents() throws {
        let text = Array(KeyFixtures.dendriteMulti.utf8)
        let buffer = try GuardedBuffer(count: text.count, lockPolicy: .warn)
        buffer.withUnsafeMutableBytes { $0.copyBytes(from: text) }
        let file = try KeyFile(contents: buffer, path: "dendrite.key")
        #expect(file.format == .dendrite)
        #expect(file.keyIDs.map(\.version) == ["1Pu3u3", "wBZqM2"])
        var builder = try KeyArena.Builder(capacity: 2, lockPolicy: .warn)
        let loaded = file.load(into: &builder)
        #expect(loaded.map(\.slot) == [0, 1])
        #expect(loaded.map(\.publicKey.base64) == [KeyFixtures.dendrite1.publicKey, KeyFixtures.dendrite2.publicKey])
        #expect(builder.finish().count == 2)
    }

    @Test("formats describe themselves by name")
    func formatNames() {
        #expect(KeyFileFormat.allCases.map(\.description) == ["mmr", "synapse", "dendrite"])
        #expect(KeyFileFormat(rawValue: "synapse") == .synapse)
        #expect(KeyFileFormat(rawValue: "pem") == nil)
    }
}
