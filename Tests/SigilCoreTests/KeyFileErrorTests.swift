import Testing

@testable import SigilCore

/// A malformed key file and the error it must give.
struct KeyFileErrorCase: Sendable, CustomStringConvertible {
    let name: String
    let text: String
    let line: Int?
    let problem: KeyFileError.Problem
    var description: String { name }

    init(_ name: String, _ text: String, _ line: Int?, _ problem: KeyFileError.Problem) {
        self.name = name
        self.text = text
        self.line = line
        self.problem = problem
    }
}

/// Building blocks for malformed files.
enum BadKeys {
    static let synapseSeed = KeyFixtures.synapse1.seedBase64
    static let pemSeed = KeyFixtures.mmr1.seedBase64
    static let seed31 = Base64.encode([UInt8](repeating: 0xAB, count: 31))
    static let seed31Padded = Base64.encode([UInt8](repeating: 0xAB, count: 31), padded: true)
    static let seed33 = Base64.encode([UInt8](repeating: 0xAB, count: 33))

    static func mmr(_ headers: String, body: String = pemSeed, type: String = "MMR PRIVATE KEY", end: String? = nil) -> String {
        "-----BEGIN \(type)-----\n\(headers)\n\(body)\n\(end ?? "-----END \(type)-----")\n"
    }

    static let mmrHeaders = "Key-ID: ed25519:e5d0oC\nVersion: 1\n"
    static let dendriteHeaders = "Key-ID: ed25519:1Pu3u3\n"
}

@Suite("Key files: errors")
struct KeyFileErrorTests {
    static let cases: [KeyFileErrorCase] = [
        // Empty.
        KeyFileErrorCase("empty file", "", nil, .empty),
        KeyFileErrorCase("whitespace-only file", " \n\t\r\n\n  ", nil, .empty),
        KeyFileErrorCase("newlines only", "\n\n\n", nil, .empty),

        // Synapse lines.
        KeyFileErrorCase("wrong algorithm", "ed448 a_RVfN \(BadKeys.synapseSeed)", 1, .unsupportedAlgorithm("ed448")),
        KeyFileErrorCase("algorithm is case-sensitive", "ED25519 a_RVfN \(BadKeys.synapseSeed)", 1, .unsupportedAlgorithm("ED25519")),
        KeyFileErrorCase("2 fields", "ed25519 a_RVfN", 1, .fieldCount(2)),
        KeyFileErrorCase("2 fields, seed but no version", "ed25519 \(BadKeys.synapseSeed)", 1, .fieldCount(2)),
        KeyFileErrorCase("4 fields", "ed25519 a_RVfN \(BadKeys.synapseSeed) extra", 1, .fieldCount(4)),
        KeyFileErrorCase(
            "old-key line (4 fields)", "ed25519 a_RVfN 1700000000000 \(KeyFixtures.synapse1.publicKey)", 1, .fieldCount(4)),
        KeyFileErrorCase("a lone ed25519", "ed25519", 1, .fieldCount(1)),
        KeyFileErrorCase("a short word", "hello", 1, .unsupportedAlgorithm("hello")),
        KeyFileErrorCase("legacy single-token line", BadKeys.synapseSeed, 1, .legacyUnversionedKey),
        KeyFileErrorCase("legacy single-token line, padded", BadKeys.pemSeed + "\n", 1, .legacyUnversionedKey),
        KeyFileErrorCase("bad second line", "ed25519 a \(BadKeys.synapseSeed)\n\ned25519 b", 3, .fieldCount(2)),
        KeyFileErrorCase("version with a quote", "ed25519 a\"b \(BadKeys.synapseSeed)", 1, .invalidKeyVersion("a\"b")),
        KeyFileErrorCase("version with a comma", "ed25519 a,b \(BadKeys.synapseSeed)", 1, .invalidKeyVersion("a,b")),
        KeyFileErrorCase("non-ASCII version", "ed25519 é \(BadKeys.synapseSeed)", 1, .invalidKeyVersion(nil)),
        KeyFileErrorCase(
            "version of 65 characters", "ed25519 \(String(repeating: "a", count: 65)) \(BadKeys.synapseSeed)", 1, .invalidKeyVersion(nil)),
        KeyFileErrorCase(
            "bad version and bad seed: the version is reported", "ed25519 a\"b \(BadKeys.seed31)", 1, .invalidKeyVersion("a\"b")),
        KeyFileErrorCase("fields swapped: seed, then version", "ed25519 \(BadKeys.synapseSeed) e5d0oC", 1, .seedLength(4)),
        KeyFileErrorCase("31-byte seed", "ed25519 a \(BadKeys.seed31)", 1, .seedLength(31)),
        KeyFileErrorCase("31-byte seed, padded", "ed25519 a \(BadKeys.seed31Padded)", 1, .seedLength(31)),
        KeyFileErrorCase("33-byte seed is refused, not truncated", "ed25519 a \(BadKeys.seed33)", 1, .seedLength(33)),
        KeyFileErrorCase("64-byte expanded key", "ed25519 a \(Base64.encode([UInt8](repeating: 1, count: 64)))", 1, .seedLength(64)),
        KeyFileErrorCase(
            "invalid base64 character", "ed25519 a \(BadKeys.synapseSeed.prefix(10))!\(BadKeys.synapseSeed.dropFirst(11))", 1,
            .invalidSeedEncoding("invalid base64 character at offset 10")),
        KeyFileErrorCase(
            "URL-safe base64", "ed25519 a \(BadKeys.synapseSeed.prefix(5))-\(BadKeys.synapseSeed.dropFirst(6))", 1,
            .invalidSeedEncoding("invalid base64 character at offset 5")),
        KeyFileErrorCase(
            "truncated base64", "ed25519 a \(BadKeys.synapseSeed.prefix(41))", 1,
            .invalidSeedEncoding("truncated base64 (a lone final character)")),
        KeyFileErrorCase(
            "bad padding", "ed25519 a \(BadKeys.synapseSeed)==", 1, .invalidSeedEncoding("misplaced base64 padding at offset 44")),
        KeyFileErrorCase(
            "duplicate key ID (Synapse)", "ed25519 a \(BadKeys.synapseSeed)\ned25519 b \(BadKeys.pemSeed)\ned25519 a \(BadKeys.pemSeed)", 3,
            .duplicateKeyID(KeyID(version: "a")!, firstLine: 1)),

        // PEM headers.
        KeyFileErrorCase("MMR: missing Key-ID", BadKeys.mmr("Version: 1\n"), 1, .missingKeyID),
        KeyFileErrorCase("Dendrite: missing Key-ID", BadKeys.mmr("", type: "MATRIX PRIVATE KEY"), 1, .missingKeyID),
        KeyFileErrorCase("Key-ID header name is case-sensitive", BadKeys.mmr("key-id: ed25519:abc\nVersion: 1\n"), 1, .missingKeyID),
        KeyFileErrorCase(
            "Key-ID not ed25519", BadKeys.mmr("Key-ID: rsa:abc\nVersion: 1\n"), 2, .keyIDNotEd25519("rsa:abc")),
        KeyFileErrorCase(
            "Key-ID without algorithm", BadKeys.mmr("Version: 1\nKey-ID: e5d0oC\n"), 3, .keyIDNotEd25519("e5d0oC")),
        KeyFileErrorCase(
            "Key-ID with empty version", BadKeys.mmr("Key-ID: ed25519:\n", type: "MATRIX PRIVATE KEY"), 2, .keyIDNotEd25519("ed25519:")),
        KeyFileErrorCase(
            "Key-ID version of 65 characters", BadKeys.mmr("Key-ID: ed25519:\(String(repeating: "a", count: 65))\nVersion: 1\n"), 2,
            .keyIDNotEd25519(nil)),
        KeyFileErrorCase("Key-ID with a quote", BadKeys.mmr("Key-ID: ed25519:a\"b\nVersion: 1\n"), 2, .keyIDNotEd25519("ed25519:a\"b")),
        KeyFileErrorCase("Key-ID with a non-ASCII version", BadKeys.mmr("Key-ID: ed25519:é\nVersion: 1\n"), 2, .keyIDNotEd25519(nil)),
        KeyFileErrorCase(
            "Key-ID is a seed, body is not", BadKeys.mmr("Key-ID: ed25519:\(BadKeys.pemSeed)\nVersion: 1\n", body: "e5d0oC"), 5,
            .seedLength(4)),
        KeyFileErrorCase(
            "bad Key-ID and bad body: the Key-ID is reported", BadKeys.mmr("Key-ID: ed25519:a,b\nVersion: 1\n", body: BadKeys.seed31Padded),
            2,
            .keyIDNotEd25519("ed25519:a,b")),
        KeyFileErrorCase("MMR: missing Version", BadKeys.mmr("Key-ID: ed25519:e5d0oC\n"), 1, .missingVersionHeader),
        KeyFileErrorCase("MMR: Version 2", BadKeys.mmr("Key-ID: ed25519:e5d0oC\nVersion: 2\n"), 1, .unsupportedVersionHeader("2")),
        KeyFileErrorCase("MMR: empty Version", BadKeys.mmr("Key-ID: ed25519:e5d0oC\nVersion:\n"), 1, .unsupportedVersionHeader(nil)),
        KeyFileErrorCase(
            "MMR: Version is checked before Key-ID", BadKeys.mmr("Version: 10\n"), 1, .unsupportedVersionHeader("10")),
        KeyFileErrorCase(
            "duplicate Key-ID header", BadKeys.mmr("Key-ID: ed25519:a\nKey-ID: ed25519:b\nVersion: 1\n"), 3, .duplicateHeader("Key-ID")),
        KeyFileErrorCase(
            "duplicate Version header", BadKeys.mmr("Key-ID: ed25519:a\nVersion: 1\nVersion: 1\n"), 4, .duplicateHeader("Version")),
        KeyFileErrorCase(
            "duplicate long header name is not echoed",
            BadKeys.mmr("\(String(repeating: "X", count: 25)): 1\n\(String(repeating: "X", count: 25)): 2\n"), 3,
            .duplicateHeader("(a long name)")),
        KeyFileErrorCase(
            "a header name is the same without trailing spaces", BadKeys.mmr("Key-ID \t: ed25519:a\nKey-ID: ed25519:b\nVersion: 1\n"), 3,
            .duplicateHeader("Key-ID")),
        KeyFileErrorCase(
            "duplicate unknown header", BadKeys.mmr("Comment: x\nKey-ID: ed25519:a\nComment: y\nVersion: 1\n"), 4,
            .duplicateHeader("Comment")),
        KeyFileErrorCase("header with an empty name", BadKeys.mmr(": value\nKey-ID: ed25519:a\nVersion: 1\n"), 2, .malformedHeader),

        // PEM bodies.
        KeyFileErrorCase("PEM: 31-byte seed", BadKeys.mmr(BadKeys.mmrHeaders, body: BadKeys.seed31Padded), 5, .seedLength(31)),
        KeyFileErrorCase(
            "PEM: 33-byte seed is refused, not truncated (MMR truncates)", BadKeys.mmr(BadKeys.mmrHeaders, body: BadKeys.seed33), 5,
            .seedLength(33)),
        KeyFileErrorCase(
            "PEM: 33-byte seed wrapped over two lines",
            BadKeys.mmr(
                BadKeys.dendriteHeaders, body: "\(BadKeys.seed33.prefix(20))\n\(BadKeys.seed33.dropFirst(20))", type: "MATRIX PRIVATE KEY"),
            4,
            .seedLength(33)),
        KeyFileErrorCase(
            "PEM: invalid base64", BadKeys.mmr(BadKeys.mmrHeaders, body: "PJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcg*="), 5,
            .invalidSeedEncoding("invalid base64 character at offset 42")),
        KeyFileErrorCase(
            "PEM: empty body", "-----BEGIN MMR PRIVATE KEY-----\n\(BadKeys.mmrHeaders)\n-----END MMR PRIVATE KEY-----\n", 5, .seedLength(0)),
        KeyFileErrorCase(
            "PEM: BEGIN then END at once", "-----BEGIN MATRIX PRIVATE KEY-----\n-----END MATRIX PRIVATE KEY-----\n", 1, .missingKeyID),

        // PEM structure.
        KeyFileErrorCase("mixed MATRIX and MMR blocks", KeyFixtures.dendrite + KeyFixtures.mmr, 6, .mixedBlockTypes),
        KeyFileErrorCase("mixed MMR and MATRIX blocks", KeyFixtures.mmr + "\n" + KeyFixtures.dendrite, 8, .mixedBlockTypes),
        KeyFileErrorCase(
            "unknown PEM type", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", 1,
            .unexpectedBlockType("RSA PRIVATE KEY")),
        KeyFileErrorCase(
            "unknown PEM type after a good block", KeyFixtures.mmr + "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", 7,
            .unexpectedBlockType("PUBLIC KEY")),
        KeyFileErrorCase(
            "unterminated block", "-----BEGIN MMR PRIVATE KEY-----\n\(BadKeys.mmrHeaders)\n\(BadKeys.pemSeed)\n", 1,
            .unterminatedBlock(type: "MMR PRIVATE KEY")),
        KeyFileErrorCase(
            "second block unterminated", KeyFixtures.dendrite + "-----BEGIN MATRIX PRIVATE KEY-----\n\(BadKeys.dendriteHeaders)\n", 6,
            .unterminatedBlock(type: "MATRIX PRIVATE KEY")),
        KeyFileErrorCase(
            "mismatched END", BadKeys.mmr(BadKeys.mmrHeaders, end: "-----END MATRIX PRIVATE KEY-----"), 6,
            .mismatchedEnd(begin: "MMR PRIVATE KEY", end: "-----END MATRIX PRIVATE KEY-----")),
        KeyFileErrorCase(
            "a BEGIN where END should be", BadKeys.mmr(BadKeys.mmrHeaders, end: "-----BEGIN MMR PRIVATE KEY-----"), 6,
            .mismatchedEnd(begin: "MMR PRIVATE KEY", end: "-----BEGIN MMR PRIVATE KEY-----")),
        KeyFileErrorCase("text before the block", "hello\n" + KeyFixtures.mmr, 1, .textOutsideBlock),
        KeyFileErrorCase("text between blocks", KeyFixtures.mmr + "junk\n" + KeyFixtures.mmrBlock(KeyFixtures.mmr2), 7, .textOutsideBlock),
        KeyFileErrorCase("text after the block", KeyFixtures.mmr + "\ntrailing", 8, .textOutsideBlock),
        KeyFileErrorCase(
            "Synapse line and a PEM block", KeyFixtures.synapseLine(KeyFixtures.synapse1) + "\n" + KeyFixtures.mmr, 1, .textOutsideBlock),
        KeyFileErrorCase("BEGIN line without closing dashes", "-----BEGIN MMR PRIVATE KEY\n", 1, .textOutsideBlock),
        KeyFileErrorCase("short BEGIN line", "-----BEGIN X\n", 1, .textOutsideBlock),
        KeyFileErrorCase("BEGIN line one dash short", "-----BEGIN ----\n", 1, .textOutsideBlock),
        KeyFileErrorCase("BEGIN line that trims to no type", "-----BEGIN -\r\n", 1, .textOutsideBlock),
        KeyFileErrorCase("a bare BEGIN word is not PEM", "-----BEGIN \n", 1, .unsupportedAlgorithm("-----BEGIN")),
        KeyFileErrorCase("BEGIN line with empty type", "-----BEGIN -----\n", 1, .textOutsideBlock),
        KeyFileErrorCase(
            "duplicate key ID (MMR)", KeyFixtures.mmr + KeyFixtures.mmr, 7,
            .duplicateKeyID(KeyID(version: "e5d0oC")!, firstLine: 1)),
        KeyFileErrorCase(
            "duplicate key ID (Dendrite, different seeds)",
            KeyFixtures.dendrite + KeyFixtures.dendriteBlock(KeyFixtures.dendrite2).replacing("wBZqM2", with: "1Pu3u3"), 6,
            .duplicateKeyID(KeyID(version: "1Pu3u3")!, firstLine: 1)),
    ]

    @Test("malformed files give the right path, line and problem", arguments: cases)
    func malformed(bad: KeyFileErrorCase) {
        #expect(throws: KeyFileError(path: "/keys/bad.key", line: bad.line, bad.problem)) {
            try KeyFile(fixture: bad.text, path: "/keys/bad.key")
        }
    }

    @Test("CRLF versions of the malformed files give the same errors", arguments: cases)
    func malformedCRLF(bad: KeyFileErrorCase) {
        #expect(throws: KeyFileError(path: "bad.key", line: bad.line, bad.problem)) {
            try KeyFile(fixture: bad.text.replacing("\n", with: "\r\n"), path: "bad.key")
        }
    }

    @Test("a header name that is not UTF-8 is malformed")
    func headerNameNotUTF8() throws {
        let text = Array(BadKeys.mmr("K?: x\nKey-ID: ed25519:a\nVersion: 1\n").utf8)
        let question = try #require(text.firstIndex(of: UInt8(ascii: "?")))
        var bytes = text
        bytes[question] = 0xFF  // never valid in UTF-8
        let buffer = try GuardedBuffer(count: bytes.count, lockPolicy: .warn)
        buffer.withUnsafeMutableBytes { $0.copyBytes(from: bytes) }
        #expect(throws: KeyFileError(path: "bad.key", line: 2, .malformedHeader)) { try KeyFile(contents: buffer, path: "bad.key") }
    }

    @Test("versions of 1 to 64 characters are read, in every format")
    func versionLengths() throws {
        for version in ["a", String(repeating: "v", count: 64)] {
            let synapse = try KeyFile(fixture: "ed25519 \(version) \(BadKeys.synapseSeed)")
            #expect(synapse.keyIDs.map(\.version) == [version])
            let mmr = try KeyFile(fixture: BadKeys.mmr("Key-ID: ed25519:\(version)\nVersion: 1\n"))
            #expect(mmr.keyIDs.map(\.version) == [version])
            let dendrite = try KeyFile(fixture: BadKeys.mmr("Key-ID: ed25519:\(version)\n", type: "MATRIX PRIVATE KEY"))
            #expect(dendrite.keyIDs.map(\.version) == [version])
        }
    }

    @Test("a file over 1 MiB is refused before parsing")
    func tooLarge() {
        let text = String(repeating: "\n", count: KeyFile.maxSize + 1)
        #expect(throws: KeyFileError(path: "big.key", line: nil, .tooLarge(limit: 1 << 20))) {
            try KeyFile(fixture: text, path: "big.key")
        }
    }

    @Test("descriptions name the file and line")
    func descriptions() {
        #expect(KeyFileError(path: "k.key", line: 3, .missingKeyID).description == "k.key:3: missing Key-ID header")
        #expect(KeyFileError(path: "k.key", .empty).description == "k.key: the key file is empty (no keys)")
        #expect(
            KeyFileError(path: "k.key", line: 1, .seedLength(33)).description
                == "k.key:1: the seed is 33 bytes; an Ed25519 seed is exactly 32 bytes")
        #expect(
            KeyFileError(path: "k.key", line: 2, .unsupportedAlgorithm(nil)).description
                == "k.key:2: unsupported key algorithm (a long field); only ed25519 is supported")
        #expect(
            KeyFileError(path: "k.key", line: 7, .duplicateKeyID(KeyID(version: "a")!, firstLine: 1)).description
                == "k.key:7: duplicate key ID ed25519:a (first seen on line 1)")
        let permissions = KeyFileError(path: "/etc/k.key", .unsafePermissions(mode: 0o100644)).description
        #expect(permissions.hasPrefix("/etc/k.key: ") && permissions.contains("(mode 0644)"))
        #expect(permissions.hasSuffix("fix it with: chmod 600 /etc/k.key"))
        #expect(KeyFileError(path: "k", .unsafePermissions(mode: 0o7)).description.contains("mode 0007"))
        #expect(KeyFileError(path: "k", .unreadable("permission denied")).description == "k: permission denied")
        #expect(KeyFileError(path: "k", .tooLarge(limit: 10)).description == "k: the key file is larger than 10 bytes")
        // Every problem has a non-empty explanation.
        let problems: [KeyFileError.Problem] = [
            .empty, .tooLarge(limit: 1), .unrecognizedFormat, .fieldCount(2), .legacyUnversionedKey, .unsupportedAlgorithm("x"),
            .invalidKeyVersion(nil), .invalidSeedEncoding("why"), .seedLength(1), .missingKeyID, .keyIDNotEd25519(nil),
            .missingVersionHeader, .unsupportedVersionHeader(nil), .duplicateHeader("H"), .malformedHeader,
            .unterminatedBlock(type: "T"), .mismatchedEnd(begin: "T", end: nil), .unexpectedBlockType(nil), .mixedBlockTypes,
            .textOutsideBlock, .duplicateKeyID(KeyID(version: "v")!, firstLine: 1), .unreadable("r"), .unsafePermissions(mode: 0o644),
        ]
        for problem in problems {
            #expect(!KeyFileError(path: "p", problem).explanation.isEmpty, "\(problem)")
        }
    }
}
