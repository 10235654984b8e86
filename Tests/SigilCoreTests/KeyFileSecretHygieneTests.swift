import Testing

@testable import SigilCore

/// Errors from malformed key files must never quote a seed (research doc §1.7: MMR's combine tool
/// logs both private keys on a duplicate ID, which is what to avoid).
@Suite("Key files: errors never echo a seed")
struct KeyFileSecretHygieneTests {
    static let synapse = BadKeys.synapseSeed
    static let pem = BadKeys.pemSeed

    /// Malformed files built around a real seed, each in a place where an error might quote it.
    static let files: [(String, String)] = [
        ("wrong algorithm", "ed448 v \(synapse)"),
        ("seed as algorithm", "\(synapse) ed25519 v"),
        ("three seeds", "\(synapse) \(synapse) \(synapse)"),
        ("two fields", "ed25519 \(synapse)"),
        ("four fields", "ed25519 v \(synapse) extra"),
        ("seed as the 4th field", "ed25519 v extra \(synapse)"),
        ("legacy single token", synapse),
        ("legacy single token, padded", pem),
        ("seed as an invalid version", "ed25519 \(synapse)\" \(synapse)"),
        ("invalid base64 inside the seed", "ed25519 v \(synapse)!"),
        ("33-byte seed", "ed25519 v \(synapse)AAAA"),
        ("duplicate ID", "ed25519 v \(synapse)\ned25519 v \(synapse)"),
        ("seed as Key-ID", BadKeys.mmr("Key-ID: \(pem)\nVersion: 1\n")),
        ("seed after a foreign algorithm in Key-ID", BadKeys.mmr("Key-ID: x:\(synapse)\nVersion: 1\n")),
        ("seed as Version", BadKeys.mmr("Key-ID: ed25519:a\nVersion: \(pem)\n")),
        ("seed as PEM type", "-----BEGIN \(pem)-----\n\(pem)\n-----END \(pem)-----\n"),
        ("seed in END line", BadKeys.mmr(BadKeys.mmrHeaders, end: "-----END \(pem)-----")),
        ("seed as a repeated header name", BadKeys.mmr("\(synapse): x\n\(synapse): x\nKey-ID: ed25519:a\nVersion: 1\n")),
        ("seed as a repeated header value", BadKeys.mmr("Key-ID: \(pem)\nKey-ID: \(pem)\nVersion: 1\n")),
        ("seed outside a block", "\(pem)\n" + KeyFixtures.mmr),
        ("seed in an unterminated block", "-----BEGIN MMR PRIVATE KEY-----\n\(BadKeys.mmrHeaders)\n\(pem)\n"),
        ("seed with a bad MMR version", BadKeys.mmr("Key-ID: ed25519:a\nVersion: 3\n", body: pem)),
        ("seed too long in PEM", BadKeys.mmr(BadKeys.mmrHeaders, body: String(pem.dropLast()) + "AAAA")),
        ("seed and version swapped", "ed25519 \(synapse) v"),
        ("seed as Key-ID version, body not a seed", BadKeys.mmr("Key-ID: ed25519:\(pem)\nVersion: 1\n", body: "e5d0oC")),
    ]

    /// Files with a seed where a version belongs and no valid seed where the seed belongs: the
    /// seed passes the checks a version gets, and the file fails only at its seed field.
    static let misplacedSeeds: [(String, String)] = [
        ("Synapse fields swapped", "ed25519 \(synapse) e5d0oC"),
        ("Synapse fields swapped, padded seed", "ed25519 \(pem) v"),
        ("Synapse: seed as version, short seed", "ed25519 \(synapse) \(BadKeys.seed31)"),
        ("Synapse: a good line, then fields swapped", "ed25519 a \(pem)\ned25519 \(synapse) e5d0oC"),
        ("Synapse: fields swapped, then a good line", "ed25519 \(synapse) e5d0oC\ned25519 a \(pem)"),
        ("MMR: seed as Key-ID version, body not a seed", BadKeys.mmr("Key-ID: ed25519:\(pem)\nVersion: 1\n", body: "e5d0oC")),
        (
            "MMR: seed as Key-ID version, empty body",
            "-----BEGIN MMR PRIVATE KEY-----\nKey-ID: ed25519:\(synapse)\nVersion: 1\n\n-----END MMR PRIVATE KEY-----\n"
        ),
        (
            "Dendrite: seed as Key-ID version, short seed",
            BadKeys.mmr("Key-ID: ed25519:\(synapse)\n", body: BadKeys.seed31Padded, type: "MATRIX PRIVATE KEY")
        ),
        (
            "Dendrite: a good block, then seed as Key-ID version",
            KeyFixtures.dendrite + BadKeys.mmr("Key-ID: ed25519:\(pem)\n", body: "AAAA", type: "MATRIX PRIVATE KEY")
        ),
    ]

    /// Records what the parser turns into text (`KeyFileParser.versionTextObserver`). Used by one
    /// test at a time, on the test's own thread.
    final class VersionTexts: @unchecked Sendable {
        var made: [String] = []

        func parse(_ text: String) throws -> KeyFile {
            try KeyFileParser.$versionTextObserver.withValue({ [self] in made.append($0) }) { try KeyFile(fixture: text) }
        }
    }

    @Test("a seed where a version belongs never becomes a String, even for a moment", arguments: misplacedSeeds)
    func misplacedSeedNeverText(name: String, text: String) throws {
        let texts = VersionTexts()
        #expect(throws: KeyFileError.self, "\(name) should fail to parse") { try texts.parse(text) }
        // Versions of earlier, good entries may have been made; never anything with a seed in it.
        for made in texts.made {
            #expect(
                !made.contains(Self.synapse.prefix(16)) && !made.contains(Self.pem.prefix(16)),
                "\(name): made \(made.count) bytes of a seed into text")
            #expect(made.utf8.count < 16, "\(name): \(made)")
        }
    }

    @Test("only versions become Strings, each once, after its entry's seed is checked")
    func versionTextsOfGoodFiles() throws {
        for (text, versions) in [
            (KeyFixtures.synapse, [KeyFixtures.synapse1.version, KeyFixtures.synapse2.version]),
            (KeyFixtures.mmrMulti, [KeyFixtures.mmr1.version, KeyFixtures.mmr2.version]),
            (KeyFixtures.dendrite, [KeyFixtures.dendrite1.version]),
        ] {
            let texts = VersionTexts()
            let file = try texts.parse(text)
            #expect(texts.made == versions)
            #expect(file.keyIDs.map(\.version) == versions)
        }
        // A bad seed: its line's version is never made into text.
        let texts = VersionTexts()
        #expect(throws: KeyFileError(path: "<fixture>", line: 2, .seedLength(31))) {
            try texts.parse("ed25519 a \(Self.synapse)\ned25519 b \(BadKeys.seed31)")
        }
        #expect(texts.made == ["a"])
    }

    @Test("no error description contains the seed", arguments: files)
    func noSeedInErrors(name: String, text: String) throws {
        let thrown: (any Error)?
        do {
            _ = try KeyFile(fixture: text, path: "secret.key")
            thrown = nil
        } catch {
            thrown = error
        }
        let error = try #require(thrown as? KeyFileError, "\(name) should fail to parse")
        let description = String(describing: error)
        let reflected = String(reflecting: error)
        for seed in [Self.synapse, Self.pem] {
            // Not the seed, nor any 16-character piece of it.
            for start in stride(from: 0, through: seed.utf8.count - 16, by: 4) {
                let piece = String(seed.dropFirst(start).prefix(16))
                #expect(!description.contains(piece), "\(name): \(description)")
                #expect(!reflected.contains(piece), "\(name): \(reflected)")
            }
        }
    }

    /// Found by the FuzzKeyFile fuzzer: END lines, block types and Key-ID values were echoed
    /// whole up to 40 characters, so most of a seed pasted there (40 of 43 characters leave 18
    /// bits to guess) showed in the error.
    static let partialSeeds: [(String, String)] = [
        ("most of a seed in the END line", BadKeys.mmr(BadKeys.mmrHeaders, end: "-----END \(pem.prefix(30))")),
        ("most of a seed as the END line", BadKeys.mmr(BadKeys.mmrHeaders, end: "-----END MAT" + pem.prefix(28))),
        ("most of a seed as the block type", "-----BEGIN \(pem.prefix(29))-----\n\(pem)\n-----END MMR PRIVATE KEY-----\n"),
        ("most of a seed as Key-ID", BadKeys.mmr("Key-ID: \(synapse.prefix(40))\nVersion: 1\n")),
        ("most of a seed after ed25519: in Key-ID, with a quote", BadKeys.mmr("Key-ID: ed25519:\(synapse.prefix(30))\"\nVersion: 1\n")),
    ]

    @Test("no error repeats more than 24 base64 characters of the file", arguments: partialSeeds)
    func noPartialSeedInErrors(name: String, text: String) throws {
        let thrown: (any Error)?
        do {
            _ = try KeyFile(fixture: text, path: "secret.key")
            thrown = nil
        } catch {
            thrown = error
        }
        let error = try #require(thrown as? KeyFileError, "\(name) should fail to parse")
        for seed in [Self.synapse, Self.pem] {
            for start in 0...(seed.utf8.count - 25) {
                let piece = String(seed.dropFirst(start).prefix(25))
                #expect(!String(describing: error).contains(piece), "\(name): \(error)")
                #expect(!String(reflecting: error).contains(piece), "\(name): \(String(reflecting: error))")
            }
        }
    }

    @Test("lines without a long base64 run are still echoed")
    func ordinaryLinesStillEchoed() throws {
        #expect(
            throws: KeyFileError(
                path: "<fixture>", line: 6, .mismatchedEnd(begin: "MMR PRIVATE KEY", end: "-----END MATRIX PRIVATE KEY-----"))
        ) {
            try KeyFile(fixture: BadKeys.mmr(BadKeys.mmrHeaders, end: "-----END MATRIX PRIVATE KEY-----"))
        }
        #expect(throws: KeyFileError(path: "<fixture>", line: 2, .keyIDNotEd25519("rsa:abcdefghijklmnopqrstuvwx"))) {
            try KeyFile(fixture: BadKeys.mmr("Key-ID: rsa:abcdefghijklmnopqrstuvwx\nVersion: 1\n"))
        }
        // 25 base64 characters in a row are not repeated.
        #expect(throws: KeyFileError(path: "<fixture>", line: 2, .keyIDNotEd25519(nil))) {
            try KeyFile(fixture: BadKeys.mmr("Key-ID: rsa:abcdefghijklmnopqrstuvwxy\nVersion: 1\n"))
        }
    }
}
