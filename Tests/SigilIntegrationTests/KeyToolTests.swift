import Foundation
import SigilCore
import SigilTestSupport
import Testing

/// `generate_signing_key`, run as a real executable: MMR's flags and defaults, its three
/// layouts byte for byte, and Sigil's additions (0600, atomic replacement, clear errors).
@Suite("generate_signing_key")
struct GenerateSigningKeyTests {
    /// Checks the file is exactly one generated key in `format`, that `sigil keys show` loads it
    /// back with the public key the tool announced, and returns its key ID.
    @discardableResult
    static func expectGenerated(
        _ directory: TemporaryDirectory, _ name: String, format: KeyFileFormat, result: ProcessResult, watch: SecretWatch,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> String {
        #expect(result.status == 0, "\(result.output)", sourceLocation: sourceLocation)
        let path = directory.file(name)
        watch.learnSeeds(fromKeyFile: path)
        let bytes = try #require(FileManager.default.contents(atPath: path), sourceLocation: sourceLocation)
        #expect(bytes.count == KeyLayout.byteCount(format), sourceLocation: sourceLocation)
        let text = String(decoding: bytes, as: UTF8.self)
        let (version, seed) = try #require(
            KeyLayout.match(text, format: format), "not the \(format) layout:\n\(text)", sourceLocation: sourceLocation)
        #expect(Set(version).count == 6, "key version \(version) repeats a character", sourceLocation: sourceLocation)
        #expect(directory.mode(name) == 0o600, sourceLocation: sourceLocation)

        let announcedID = result.stdout.firstMatch(of: /Key ID will be 'ed25519:([A-Za-z0-9]+)'/)?.output.1
        #expect(announcedID.map(String.init) == version, "\(result.stdout)", sourceLocation: sourceLocation)
        let publicKey = ToolSeeds.publicKey(seedText: seed)
        #expect(result.stdout.contains("Public key: \(publicKey)"), "\(result.stdout)", sourceLocation: sourceLocation)

        let shown = try watch.run(Tool.sigil, ["keys", "show", path])
        #expect(shown.status == 0, "\(shown.output)", sourceLocation: sourceLocation)
        #expect(shown.stdout.contains("\(path): \(format) format, 1 key"), "\(shown.stdout)", sourceLocation: sourceLocation)
        #expect(shown.shownKeys.map(\.id) == ["ed25519:" + version], sourceLocation: sourceLocation)
        #expect(shown.shownKeys.map(\.publicKey) == [publicKey], sourceLocation: sourceLocation)
        return version
    }

    @Test("with no flags: an MMR key in ./signing.key")
    func defaults() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let result = try watch.run(Tool.generate, [], currentDirectory: directory.path)
        try Self.expectGenerated(directory, "signing.key", format: .mmr, result: result, watch: watch)
        #expect(directory.entries == ["signing.key"])
    }

    @Test("-format and -output", arguments: KeyFileFormat.allCases)
    func formats(format: KeyFileFormat) throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let result = try watch.run(Tool.generate, ["-format", format.rawValue, "-output", directory.file("k.key")])
        try Self.expectGenerated(directory, "k.key", format: format, result: result, watch: watch)
        #expect(directory.entries == ["k.key"])
    }

    @Test("--output and --format are accepted too")
    func doubleDash() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let result = try watch.run(Tool.generate, ["--format", "synapse", "--output", directory.file("k.key")])
        try Self.expectGenerated(directory, "k.key", format: .synapse, result: result, watch: watch)
        // A relative -output is relative to the working directory.
        let relative = try watch.run(Tool.generate, ["-output", "rel.key", "-format", "dendrite"], currentDirectory: directory.path)
        try Self.expectGenerated(directory, "rel.key", format: .dendrite, result: relative, watch: watch)
    }

    @Test("key IDs: ed25519: and 6 distinct alphanumeric characters, fresh each time")
    func keyIDs() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        var versions: Set<String> = []
        for index in 0..<6 {
            let result = try watch.run(Tool.generate, ["-format", "synapse", "-output", directory.file("\(index).key")])
            let text = try directory.read("\(index).key")
            watch.learnSeeds(fromKeyFile: directory.file("\(index).key"))
            let (version, _) = try #require(KeyLayout.match(text, format: .synapse), "\(result.output)")
            #expect(Set(version).count == 6)
            versions.insert(version)
        }
        #expect(versions.count == 6)
        #expect(Set(try (0..<6).map { try directory.read("\($0).key") }).count == 6, "the seeds are fresh too")
    }

    struct Conversion: Sendable, CustomTestStringConvertible {
        let input: String
        let format: KeyFileFormat
        let expected: MMRFixtures.Key
        var testDescription: String { "\(expected.id) to \(format)" }
    }

    static let conversions: [Conversion] = [
        Conversion(input: MMRFixtures.mmrTwo, format: .mmr, expected: MMRFixtures.mmrA),
        Conversion(input: MMRFixtures.mmrTwo, format: .synapse, expected: MMRFixtures.mmrA),
        Conversion(input: MMRFixtures.dendriteTwo, format: .mmr, expected: MMRFixtures.dendriteA),
        Conversion(input: MMRFixtures.dendriteTwo, format: .dendrite, expected: MMRFixtures.dendriteA),
        Conversion(input: MMRFixtures.synapseTwo, format: .mmr, expected: MMRFixtures.synapseA),
        Conversion(input: MMRFixtures.synapseTwo, format: .dendrite, expected: MMRFixtures.synapseA),
        Conversion(input: MMRFixtures.synapseTwo + "\n\n", format: .synapse, expected: MMRFixtures.synapseA),
        // The spec seed has non-zero trailing bits; it is written back in canonical form.
        Conversion(input: TestKeys.specSynapseFile, format: .mmr, expected: MMRFixtures.spec),
    ]

    @Test("-input converts the first key of a file in any format, public key kept", arguments: conversions)
    func convert(conversion: Conversion) throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let input = directory.write("in.key", conversion.input)
        let result = try watch.run(
            Tool.generate, ["-input", input, "-format", conversion.format.rawValue, "-output", directory.file("out.key")])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.stdout.contains("Key ID will be '\(conversion.expected.id)'"), "\(result.stdout)")
        #expect(try directory.read("out.key") == MMRFixtures.file([conversion.expected], format: conversion.format))
        #expect(directory.mode("out.key") == 0o600)

        let shown = try watch.run(Tool.sigil, ["keys", "show", directory.file("out.key")])
        #expect(shown.shownKeys.map(\.id) == [conversion.expected.id])
        #expect(shown.shownKeys.map(\.publicKey) == [conversion.expected.publicKey])
        if let verified = MMRFixtures.verifiedPublicKeys[conversion.expected.version] {
            #expect(shown.shownKeys.first?.publicKey == verified)
        }
        #expect(result.stdout.contains("Public key: \(conversion.expected.publicKey)"))
    }

    @Test("converting MMR's fixture to MMR reproduces its 142 bytes exactly")
    func mmrRoundTrip() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let input = directory.write("mmr.key", TestKeys.mmrFile)
        let result = try watch.run(Tool.generate, ["-input", input], currentDirectory: directory.path)
        #expect(result.status == 0, "\(result.output)")
        let written = try #require(FileManager.default.contents(atPath: directory.file("signing.key")))
        #expect(written == Data(TestKeys.mmrFile.utf8))
        #expect(written.count == 142)
        // In place: -input and -output the same file.
        let inPlace = try watch.run(Tool.generate, ["-input", input, "-output", input, "-format", "synapse"])
        #expect(inPlace.status == 0, "\(inPlace.output)")
        #expect(try directory.read("mmr.key") == "ed25519 e5d0oC PJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcgc")
    }

    @Test("the output is 0600 whatever the umask", arguments: ["000", "002", "022", "077"])
    func modeUnderUmask(mask: String) throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let generated = try watch.run(umask: mask, Tool.generate, ["-output", directory.file("new.key")])
        #expect(generated.status == 0, "\(generated.output)")
        #expect(directory.mode("new.key") == 0o600)
        watch.learnSeeds(fromKeyFile: directory.file("new.key"))
        let input = directory.write("in.key", MMRFixtures.synapseTwo)
        let converted = try watch.run(
            umask: mask, Tool.generate, ["-input", input, "-output", directory.file("conv.key"), "-format", "dendrite"])
        #expect(converted.status == 0, "\(converted.output)")
        #expect(directory.mode("conv.key") == 0o600)
    }

    @Test("an existing output file is replaced atomically, by a new 0600 file")
    func replacesAtomically() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let old = directory.write("signing.key", "old contents\n", mode: 0o644)
        // A second name for the old file: an in-place rewrite would change it too; a rename does not.
        #expect(link(old, directory.file("old.link")) == 0)
        let oldInode = directory.inode("signing.key")
        let result = try watch.run(umask: "000", Tool.generate, ["-format", "synapse"], currentDirectory: directory.path)
        watch.learnSeeds(fromKeyFile: old)
        #expect(result.status == 0, "\(result.output)")
        #expect(KeyLayout.match(try directory.read("signing.key"), format: .synapse) != nil)
        #expect(directory.mode("signing.key") == 0o600)
        #expect(directory.inode("signing.key") != oldInode)
        #expect(try directory.read("old.link") == "old contents\n")
        #expect(directory.mode("old.link") == 0o644)
        #expect(directory.entries == ["old.link", "signing.key"], "no temporary file left behind")
    }

    @Test("an unknown format is refused, and nothing is written")
    func unknownFormat() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        for format in ["rsa", "MMR", ""] {
            let result = try watch.run(Tool.generate, ["-format", format], currentDirectory: directory.path)
            #expect(result.status != 0)
            #expect(result.stderr.contains("'\(format)'"), "\(result.stderr)")
            #expect(
                result.stderr.contains("mmr") && result.stderr.contains("synapse") && result.stderr.contains("dendrite"), "\(result.stderr)"
            )
            #expect(result.stdout.isEmpty)
        }
        let input = directory.write("in.key", TestKeys.mmrFile)
        let converting = try watch.run(Tool.generate, ["-input", input, "-format", "pem"], currentDirectory: directory.path)
        #expect(converting.status != 0)
        #expect(directory.entries == ["in.key"])
    }

    @Test("a malformed -input file: an error naming the file and line, nothing written")
    func malformedInput() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let cases: [(name: String, text: String, location: String)] = [
            (
                "fields.key", "ed25519 a_RVfN \(MMRFixtures.synapseA.seedText)\ned25519 IZJY6A \(MMRFixtures.synapseB.seedText) extra\n",
                "fields.key:2"
            ),
            ("short.key", "\n\ned25519 v AAAA\n", "short.key:3"),
            ("version.key", TestKeys.mmrFile.replacingOccurrences(of: "Version: 1", with: "Version: 2"), "version.key:1"),
            ("stray.key", TestKeys.mmrFile + "trailing text\n", "stray.key:7"),
        ]
        for (name, text, location) in cases {
            let input = directory.write(name, text)
            let result = try watch.run(Tool.generate, ["-input", input, "-output", directory.file("out.key")])
            #expect(result.status != 0, "\(name)")
            #expect(result.stderr.contains("\(directory.path)/\(location): "), "\(result.stderr)")
            #expect(!directory.exists("out.key"))
        }
        // An empty input (MMR's tool panics on it) and a missing one are named too.
        let empty = directory.write("empty.key", "\n\n")
        let emptyResult = try watch.run(Tool.generate, ["-input", empty, "-output", directory.file("out.key")])
        #expect(emptyResult.status != 0)
        #expect(emptyResult.stderr.contains("\(empty): the key file is empty"), "\(emptyResult.stderr)")
        let missing = try watch.run(Tool.generate, ["-input", directory.file("absent.key"), "-output", directory.file("out.key")])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains(directory.file("absent.key")), "\(missing.stderr)")
        #expect(!directory.exists("out.key"))
        // An unwritable output is an error too, naming it.
        let unwritable = try watch.run(Tool.generate, ["-output", directory.file("no/such/dir.key")])
        #expect(unwritable.status != 0)
        #expect(unwritable.stderr.contains(directory.file("no/such/dir.key")), "\(unwritable.stderr)")
    }
}

/// `combine_signing_keys`, run as a real executable, on MMR's fixtures.
@Suite("combine_signing_keys")
struct CombineSigningKeysTests {
    /// The three two-key fixture files, each in its own format.
    static func writeFixtures(_ directory: TemporaryDirectory) -> (synapse: String, mmr: String, dendrite: String) {
        (
            directory.write("synapse.key", MMRFixtures.synapseTwo), directory.write("mmr.key", MMRFixtures.mmrTwo),
            directory.write("dendrite.key", MMRFixtures.dendriteTwo)
        )
    }

    static func expectShows(
        _ path: String, _ keys: [MMRFixtures.Key], format: KeyFileFormat, watch: SecretWatch,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let shown = try watch.run(Tool.sigil, ["keys", "show", path])
        #expect(shown.status == 0, "\(shown.output)", sourceLocation: sourceLocation)
        #expect(shown.stdout.hasPrefix("\(path): \(format) format, \(keys.count) keys"), "\(shown.stdout)", sourceLocation: sourceLocation)
        #expect(shown.shownKeys.map(\.id) == keys.map(\.id), sourceLocation: sourceLocation)
        #expect(shown.shownKeys.map(\.publicKey) == keys.map(\.publicKey), sourceLocation: sourceLocation)
        for (shownKey, key) in zip(shown.shownKeys, keys) {
            if let verified = MMRFixtures.verifiedPublicKeys[key.version] {
                #expect(shownKey.publicKey == verified, sourceLocation: sourceLocation)
            }
        }
    }

    @Test("argument order, then file order; formats mixed across files; MMR by default")
    func order() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let (synapse, mmr, dendrite) = Self.writeFixtures(directory)
        let forward = [
            MMRFixtures.synapseA, MMRFixtures.synapseB, MMRFixtures.mmrA, MMRFixtures.mmrB, MMRFixtures.dendriteA, MMRFixtures.dendriteB,
        ]
        let result = try watch.run(Tool.combine, ["-output", directory.file("out.key"), synapse, mmr, dendrite])
        #expect(result.status == 0, "\(result.output)")
        #expect(try directory.read("out.key") == MMRFixtures.file(forward, format: .mmr))
        #expect(FileManager.default.contents(atPath: directory.file("out.key"))?.count == 6 * 142)
        #expect(result.stdout.contains("Wrote 6 keys"), "\(result.stdout)")
        try Self.expectShows(directory.file("out.key"), forward, format: .mmr, watch: watch)

        let backward = [
            MMRFixtures.dendriteA, MMRFixtures.dendriteB, MMRFixtures.mmrA, MMRFixtures.mmrB, MMRFixtures.synapseA, MMRFixtures.synapseB,
        ]
        let reversed = try watch.run(Tool.combine, ["--output", directory.file("back.key"), dendrite, mmr, synapse])
        #expect(reversed.status == 0, "\(reversed.output)")
        try Self.expectShows(directory.file("back.key"), backward, format: .mmr, watch: watch)
    }

    @Test("-format synapse: 'ed25519 VERSION SEED' lines joined by \\n, no trailing newline")
    func synapseOutput() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let (synapse, mmr, _) = Self.writeFixtures(directory)
        let single = directory.write("dendrite1.key", MMRFixtures.file([MMRFixtures.dendriteA], format: .dendrite))
        let result = try watch.run(Tool.combine, ["-format", "synapse", "-output", directory.file("merged.key"), synapse, single, mmr])
        #expect(result.status == 0, "\(result.output)")
        let expected = """
            ed25519 a_RVfN wdSWsTNSOmMuNA1Ej6JUyeNbiBEt5jexHmVs7mHKZVc
            ed25519 IZJY6A dvA8xfimUqog15zY6n5uRfVHb/pQ0sw9jRORJslYsoI
            ed25519 1Pu3u3 1Pu3u3solToI2pTdsHA4wj05bANnzPwJoxPepw2he2s
            ed25519 e5d0oC PJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcgc
            ed25519 CjtBYA Xj/gSXAtSOTPG54sAWjm9BMVNX/Pa8ujIzwYbvLk7mM
            """
        #expect(try directory.read("merged.key") == expected)
        try Self.expectShows(
            directory.file("merged.key"),
            [MMRFixtures.synapseA, MMRFixtures.synapseB, MMRFixtures.dendriteA, MMRFixtures.mmrA, MMRFixtures.mmrB], format: .synapse,
            watch: watch)

        let dendriteOut = try watch.run(Tool.combine, ["-format", "dendrite", "-output", directory.file("d.key"), mmr, single])
        #expect(dendriteOut.status == 0, "\(dendriteOut.output)")
        #expect(
            try directory.read("d.key") == MMRFixtures.file([MMRFixtures.mmrA, MMRFixtures.mmrB, MMRFixtures.dendriteA], format: .dendrite))
    }

    @Test("MMR's documented flow: generate, then merge with the homeserver's key first")
    func documentedFlow() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        directory.write("existing.signing.key", "ed25519 a_RVfN \(MMRFixtures.synapseA.seedText)\n")
        let generated = try watch.run(Tool.generate, ["-output", "mmr.signing.key"], currentDirectory: directory.path)
        #expect(generated.status == 0, "\(generated.output)")
        watch.learnSeeds(fromKeyFile: directory.file("mmr.signing.key"))
        let (version, _) = try #require(KeyLayout.match(try directory.read("mmr.signing.key"), format: .mmr))
        let merged = try watch.run(
            Tool.combine, ["-format", "synapse", "-output", "./merged.signing.key", "./existing.signing.key", "./mmr.signing.key"],
            currentDirectory: directory.path)
        #expect(merged.status == 0, "\(merged.output)")
        let lines = try directory.read("merged.signing.key").split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 2)
        #expect(lines.first == "ed25519 a_RVfN wdSWsTNSOmMuNA1Ej6JUyeNbiBEt5jexHmVs7mHKZVc")
        #expect(lines.last?.hasPrefix("ed25519 \(version) ") == true)
        // The default output is ./signing.key.
        let defaulted = try watch.run(Tool.combine, ["mmr.signing.key"], currentDirectory: directory.path)
        #expect(defaulted.status == 0, "\(defaulted.output)")
        #expect(try directory.read("signing.key") == directory.read("mmr.signing.key"))
    }

    @Test("a duplicate key version is refused, naming both files, printing no key")
    func duplicates() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let (synapse, mmr, dendrite) = Self.writeFixtures(directory)
        let again = directory.write("again.key", MMRFixtures.file([MMRFixtures.mmrA], format: .mmr))
        // The same version holding a different seed, in another format: still a duplicate.
        let impostor = directory.write("impostor.key", "ed25519 CjtBYA \(MMRFixtures.synapseB.seedText)\n")
        let cases: [(inputs: [String], version: String, first: String, second: String)] = [
            ([synapse, mmr, again], "e5d0oC", "\(mmr):1", "\(again):1"),
            ([mmr, dendrite, impostor], "CjtBYA", "\(mmr):7", "\(impostor):1"),
            ([synapse, synapse], "a_RVfN", "\(synapse):1", "\(synapse):1"),
        ]
        for (inputs, version, first, second) in cases {
            let result = try watch.run(Tool.combine, ["-output", directory.file("out.key")] + inputs)
            #expect(result.status != 0)
            #expect(result.stderr.contains("'\(version)'"), "\(result.stderr)")
            #expect(result.stderr.contains(first) && result.stderr.contains(second), "\(result.stderr)")
            #expect(!result.stdout.contains("Wrote"), "\(result.stdout)")
            #expect(!directory.exists("out.key"), "nothing written on a duplicate")
        }
    }

    @Test("the output is 0600 whatever the umask, and replaces an existing file")
    func outputMode() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let (synapse, mmr, _) = Self.writeFixtures(directory)
        directory.write("out.key", "previous\n", mode: 0o666)
        let result = try watch.run(umask: "000", Tool.combine, ["-output", directory.file("out.key"), mmr, synapse])
        #expect(result.status == 0, "\(result.output)")
        #expect(directory.mode("out.key") == 0o600)
        #expect(
            try directory.read("out.key")
                == MMRFixtures.file([MMRFixtures.mmrA, MMRFixtures.mmrB, MMRFixtures.synapseA, MMRFixtures.synapseB], format: .mmr))
        #expect(directory.entries == ["dendrite.key", "mmr.key", "out.key", "synapse.key"], "no temporary file left behind")
    }

    @Test("no inputs, or an empty input file, is refused with a clear message")
    func emptyInputs() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let none = try watch.run(Tool.combine, [], currentDirectory: directory.path)
        #expect(none.status != 0)
        #expect(none.stderr.contains("no input files"), "\(none.stderr)")
        let noneWithOutput = try watch.run(Tool.combine, ["-format", "synapse", "-output", directory.file("out.key")])
        #expect(noneWithOutput.status != 0)
        #expect(directory.entries.isEmpty, "MMR would write an empty file; Sigil writes nothing")

        let (_, mmr, _) = Self.writeFixtures(directory)
        for (name, text) in [("empty.key", ""), ("blank.key", "\n\n\r\n")] {
            let empty = directory.write(name, text)
            let result = try watch.run(Tool.combine, ["-output", directory.file("out.key"), mmr, empty])
            #expect(result.status != 0)
            #expect(result.stderr.contains("\(empty): the key file is empty"), "\(result.stderr)")
            #expect(!directory.exists("out.key"))
        }
        let malformed = directory.write("bad.key", MMRFixtures.synapseTwo + "\ned25519 x\n")
        let bad = try watch.run(Tool.combine, ["-output", directory.file("out.key"), mmr, malformed])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("\(malformed):3: "), "\(bad.stderr)")
        #expect(!directory.exists("out.key"))
    }
}

/// Key files other users can read: the tools warn and go on; the daemon refuses.
@Suite("Key file permissions")
struct KeyFilePermissionTests {
    @Test("the tools warn with the chmod to run, and still work", arguments: [0o644, 0o640, 0o604, 0o660])
    func toolsWarn(mode: Int) throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let key = directory.write("open.key", TestKeys.specSynapseFile, mode: mode)
        let advice = "chmod 600 \(key)"
        let invocations: [(String, [String], String?)] = [
            (Tool.generate, ["-input", key, "-output", directory.file("converted.key")], nil),
            (Tool.combine, ["-output", directory.file("combined.key"), key], nil),
            (Tool.sigil, ["keys", "show", key], nil),
            (Tool.sigil, ["keys", "document", key, "--server", "domain"], nil),
            (Tool.sigil, ["sign-json", "--key", key, "--server", "domain"], "{}"),
            (
                Tool.sigil,
                [
                    "x-matrix", "--key", key, "--origin", "domain", "--destination", "example.org", "--uri",
                    "/_matrix/federation/v1/media/download/abc123",
                ], nil
            ),
        ]
        for (tool, arguments, input) in invocations {
            let result = try watch.run(tool, arguments, input: input)
            #expect(result.status == 0, "\(arguments): \(result.output)")
            #expect(result.stderr.contains(advice), "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("warning"), "\(arguments): \(result.stderr)")
            #expect(!result.stdout.contains("chmod"), "warnings go to stderr")
        }
        #expect(directory.mode("converted.key") == 0o600)
        #expect(directory.mode("combined.key") == 0o600)
        #expect(directory.mode("open.key") == mode, "the tools do not change the input's mode")
        // With the advice followed, no warning.
        #expect(chmod(key, 0o600) == 0)
        let quiet = try watch.run(Tool.sigil, ["keys", "show", key])
        #expect(quiet.status == 0)
        #expect(quiet.stderr.isEmpty, "\(quiet.stderr)")
    }

    @Test("sigild refuses to start with a key file other users can read", arguments: [0o644, 0o640])
    func daemonRefuses(mode: Int) throws {
        let directory = TemporaryDirectory()
        let key = directory.write("spec.key", TestKeys.specSynapseFile, mode: mode)
        let config = """
            listen:
              - name: main
                path: {dir}/s.sock
            servers:
              domain:
                keys: [{dir}/spec.key]
            """
        var thrown: (any Error)?
        do {
            let daemon = try DaemonFixture(config: config, directory: directory)
            daemon.stop()
        } catch {
            thrown = error
        }
        let error = try #require(thrown, "sigild started with a mode \(String(mode, radix: 8)) key")
        let text = String(describing: error)
        #expect(text.contains("sigild exited with status"), "\(text)")
        #expect(!text.contains("exited with status 0"), "\(text)")
        #expect(text.contains("chmod 600 \(key)"), "\(text)")
        let log = try directory.read("sigild.log")
        #expect(log.contains("chmod 600 \(key)"), "\(log)")
        #expect(log.contains("mode 0\(String(mode, radix: 8))"), "\(log)")
        ToolSeeds.expectClean(log, "sigild's log")
        #expect(!directory.exists("s.sock"), "no socket left behind")
    }
}

/// Paths that are not regular files: refused at once, never waited on.
@Suite("Key file kinds")
struct KeyFileKindTests {
    @Test("a FIFO, a directory or a device as a key file is refused at once, by the tools and by sigild")
    func notRegularFiles() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        // Opening a FIFO for reading blocks until a writer comes, unless opened non-blocking.
        #expect(mkfifo(directory.file("fifo.key"), 0o600) == 0)
        #expect(mkdir(directory.file("dir.key"), 0o700) == 0)
        for path in [directory.file("fifo.key"), directory.file("dir.key"), "/dev/null"] {
            for arguments in [["keys", "show", path], ["x-matrix", "--key", path, "--origin", "d", "--destination", "e", "--uri", "/x"]] {
                let started = Date()
                let result = try watch.run(Tool.sigil, arguments, timeout: 10)
                #expect(Date().timeIntervalSince(started) < 5, "\(arguments) hung")
                #expect(result.status != 0)
                #expect(result.stderr.contains(path), "\(result.stderr)")
            }
            let generated = try watch.run(Tool.generate, ["-input", path, "-output", directory.file("out.key")], timeout: 10)
            #expect(generated.status != 0)
            #expect(generated.stderr.contains("\(path): "), "\(generated.stderr)")
            let combined = try watch.run(Tool.combine, ["-output", directory.file("out.key"), path], timeout: 10)
            #expect(combined.status != 0)
            #expect(combined.stderr.contains("\(path): "), "\(combined.stderr)")
        }
        #expect(try watch.run(Tool.sigil, ["keys", "show", directory.file("fifo.key")]).stderr.contains("not a regular file"))
        #expect(!directory.exists("out.key"))

        // sigild refuses a FIFO at start rather than waiting for a writer.
        var thrown: (any Error)?
        do {
            let daemon = try DaemonFixture(
                config: "listen:\n  - name: main\n    path: {dir}/s.sock\nservers:\n  domain:\n    keys: [{dir}/fifo.key]\n",
                directory: directory)
            daemon.stop()
        } catch {
            thrown = error
        }
        let error = try #require(thrown, "sigild started with a FIFO as its key")
        #expect(String(describing: error).contains("sigild exited with status"), "\(error)")
        #expect(String(describing: error).contains("\(directory.file("fifo.key")): not a regular file"), "\(error)")
    }
}
