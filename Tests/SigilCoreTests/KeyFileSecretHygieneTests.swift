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
    ]

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
}
