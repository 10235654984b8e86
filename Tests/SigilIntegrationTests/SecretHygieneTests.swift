import Foundation
import SigilCore
import SigilTestSupport
import Testing

/// The brief's "a test greps what the tools print for key bytes": every tool, on success and on
/// failure, and the daemon's log, scanned for the seed in base64 (padded, unpadded, any
/// 16-character window), in hex, and for the 64-byte expanded secret key.
@Suite("Secrets hygiene: nothing printed holds key material")
struct SecretHygieneTests {
    static let seed = MMRFixtures.synapseA.seedText
    static let padded = MMRFixtures.synapseA.paddedSeed
    static let seedLine = "ed25519 a_RVfN \(seed)"
    static let mmrHeaders = "Key-ID: ed25519:e5d0oC\nVersion: 1\n"

    static func mmr(_ headers: String, body: String = padded, end: String = "-----END MMR PRIVATE KEY-----") -> String {
        "-----BEGIN MMR PRIVATE KEY-----\n\(headers)\n\(body)\n\(end)\n"
    }

    /// Malformed files built around real seeds, each putting a seed where an error might quote it.
    static let malformed: [(String, String)] = [
        ("seed line then four fields", "\(seedLine)\ned25519 IZJY6A \(MMRFixtures.synapseB.seedText) extra"),
        ("seed as the fourth field", "ed25519 v extra \(seed)"),
        ("seed as the algorithm", "\(seed) ed25519 v"),
        ("seed as the version", "ed25519 \(seed)\" \(seed)"),
        ("two fields", "ed25519 \(seed)"),
        ("bare seed (legacy Synapse)", seed),
        ("bare padded seed", padded),
        ("seed then a bad character", "ed25519 v \(seed)!"),
        ("33-byte seed", "ed25519 v \(seed)AAAA"),
        ("tab-separated, then a broken line", "ed25519\ta_RVfN\t\(seed)\ned25519 b"),
        ("duplicate key ID in one file", "\(seedLine)\n\(seedLine)"),
        ("seed as Key-ID", mmr("Key-ID: \(padded)\nVersion: 1\n")),
        ("seed as Version", mmr("Key-ID: ed25519:a\nVersion: \(padded)\n")),
        ("seed as PEM type", "-----BEGIN \(padded)-----\n\(padded)\n-----END \(padded)-----\n"),
        ("seed in the END line", mmr(mmrHeaders, end: "-----END \(padded)-----")),
        ("seed as a repeated header", mmr("\(seed): x\n\(seed): x\n\(mmrHeaders)")),
        ("seed before a block", "\(padded)\n" + TestKeys.mmrFile),
        ("seed after a block", TestKeys.mmrFile + "\(padded)\n"),
        ("unterminated block", "-----BEGIN MMR PRIVATE KEY-----\n\(mmrHeaders)\n\(padded)\n"),
        ("MMR version 2", mmr("Key-ID: ed25519:a\nVersion: 2\n")),
        ("seed too long in PEM", mmr(mmrHeaders, body: String(padded.dropLast()) + "AAAA")),
        ("mixed block types", TestKeys.mmrFile + MMRFixtures.dendriteBlock(MMRFixtures.dendriteA)),
        ("binary garbage around a seed", "\u{1}\u{2}\(seed)\u{7f}\n"),
    ]

    /// Every tool that reads a key file, pointed at `path`.
    static func invocations(_ path: String, _ directory: TemporaryDirectory) -> [(String, [String], String?)] {
        [
            (Tool.generate, ["-input", path, "-output", directory.file("out.key")], nil),
            (Tool.combine, ["-output", directory.file("out.key"), path], nil),
            (Tool.combine, ["-format", "synapse", "-output", directory.file("out.key"), directory.file("good.key"), path], nil),
            (Tool.sigil, ["keys", "show", path], nil),
            (Tool.sigil, ["keys", "document", path, "--server", "domain"], nil),
            (Tool.sigil, ["sign-json", "--key", path, "--server", "domain"], "{}"),
            (Tool.sigil, ["x-matrix", "--key", path, "--origin", "domain", "--destination", "example.org", "--uri", "/x"], nil),
        ]
    }

    @Test("malformed key files: every tool fails, naming the file, and prints no seed", arguments: malformed)
    func malformedFiles(name: String, text: String) throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        directory.write("good.key", MMRFixtures.mmrTwo)
        let path = directory.write("bad.key", text)
        for (tool, arguments, input) in Self.invocations(path, directory) {
            let result = try watch.run(tool, arguments, input: input)
            #expect(result.status != 0, "\(name): \(arguments) succeeded")
            #expect(result.stderr.contains(path), "\(name): \(arguments): \(result.stderr)")
            #expect(!directory.exists("out.key"), "\(name): \(arguments) wrote a file")
        }
        #expect(watch.count == 7)
    }

    @Test("failures with valid key files print no key either: duplicates, permissions, bad arguments")
    func otherFailures() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let synapse = directory.write("synapse.key", MMRFixtures.synapseTwo)
        let mmr = directory.write("mmr.key", MMRFixtures.mmrTwo)
        let dendrite = directory.write("dendrite.key", MMRFixtures.dendriteTwo)
        directory.write("good.key", MMRFixtures.dendriteTwo)
        let open = directory.write("open.key", TestKeys.specSynapseFile, mode: 0o644)
        let shared = directory.write("shared.key", MMRFixtures.mmrTwo, mode: 0o640)
        // MMR prints both 64-byte private keys on a duplicate version; Sigil must not.
        for inputs in [[synapse, mmr, dendrite, mmr], [mmr, shared], [synapse, directory.write("dup.key", MMRFixtures.synapseTwo)]] {
            let result = try watch.run(Tool.combine, ["-output", directory.file("out.key")] + inputs)
            #expect(result.status != 0)
            #expect(result.stderr.contains("Duplicate key version"), "\(result.stderr)")
        }
        // Wrong permissions: warnings, and the tools still work (and print no key).
        for (tool, arguments, input) in Self.invocations(open, directory) + Self.invocations(shared, directory) {
            let result = try watch.run(tool, arguments, input: input)
            #expect(result.status == 0, "\(arguments): \(result.output)")
            #expect(result.stderr.contains("chmod 600"), "\(arguments): \(result.stderr)")
            try? FileManager.default.removeItem(atPath: directory.file("out.key"))
        }
        // Bad arguments next to a good key file.
        let badArguments: [[String]] = [
            ["keys", "document", mmr, "--server", "domain", "--old-key", "x=\(Self.seed)@1"],
            ["keys", "document", mmr, "--server", "domain", "--old-key", "ed25519:x=\(Self.seed)"],
            ["verify-request", "--authorization", "X", "--uri", "/x", "--destination", "d", "--origin-key", "d/ed25519:x+\(Self.seed)"],
            ["keys", "document", mmr, "--server", "domain", "--old-key", "ed25519:x=\(Self.padded)@soon"],
            ["keys", "document", mmr, "--server", "bad server name"],
            ["keys", "document", mmr, "--server", "domain", "--valid-for", "0"],
            ["verify-json", "--server", "domain", "--public-key", "ed25519:1=\(Self.seed)x"],
            [
                "x-matrix", "--key", mmr, "--origin", "domain", "--destination", "example.org", "--uri", "/x", "--content",
                directory.file("absent"),
            ],
            ["sign-json", "--key", mmr, "--server", "domain"],
        ]
        for arguments in badArguments {
            let result = try watch.run(Tool.sigil, arguments, input: "not json")
            #expect(result.status != 0, "\(arguments): \(result.output)")
        }
        #expect(try watch.run(Tool.generate, ["-format", "pem", "-input", mmr]).status != 0)
        #expect(watch.count > 20)
    }

    @Test("the scanner finds every form of a leaked seed")
    func scannerCatchesLeaks() {
        let key = MMRFixtures.spec
        let material = SeedMaterial(label: key.id, seedText: key.seedText)
        let expanded = key.seed + Base64.decode(key.publicKey)!
        let hex = key.seed.map { String(format: "%02x", $0) }.joined()
        let leaks = [
            key.seedText, key.unpaddedSeed, key.paddedSeed, "xx" + String(key.unpaddedSeed.dropFirst(20).prefix(16)) + "yy",
            hex, hex.uppercased(), String(hex.dropFirst(30).prefix(16)),
            Base64.encode(expanded), Base64.encode(expanded, padded: true),
            String(Base64.encode(expanded).dropFirst(30).prefix(16)),
            key.unpaddedSeed.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-"),
        ]
        for leak in leaks {
            #expect(!material.leaks(in: "message: \(leak) end").isEmpty, "not caught: \(leak)")
        }
        // Public material is not a leak.
        let clean =
            "ed25519:1  \(key.publicKey)  \(CLIVectors.oneTwoSignature) \(Base64.encode(Base64.decode(key.publicKey)!, padded: true))"
        #expect(material.leaks(in: clean).isEmpty)
        #expect(material.leaks(in: String(Base64.encode(expanded).dropFirst(43))).isEmpty, "the public half of the expanded key")
    }

    @Test("sigild's log holds no key material after serving and after refused reloads")
    func daemonLog() throws {
        let daemon = try DaemonFixture.quickStart()
        defer { daemon.stop() }
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let socket = ["--socket", daemon.socketPath]
        #expect(try watch.run(Tool.sigil, ["ping"] + socket).status == 0)
        #expect(try watch.run(Tool.sigil, ["keys"] + socket).status == 0)
        #expect(
            try watch.run(Tool.sigil, ["sign-request"] + socket + ["--origin", "domain", "--destination", "example.org", "--uri", "/x"])
                .status == 0)
        #expect(try watch.run(Tool.sigil, ["sign-json"] + socket + ["--server", "domain"], input: "{}").status != 0)
        #expect(try watch.run(Tool.sigil, ["key-document"] + socket + ["--server", "domain"]).status == 0)
        #expect(try watch.run(Tool.sigil, ["verify-json"] + socket + ["--server", "domain"], input: CLIVectors.oneTwoSigned).status == 0)
        #expect(try watch.run(Tool.sigil, ["stats"] + socket).status == 0)
        ToolSeeds.expectClean(daemon.log, "sigild's log after serving")

        let keyPath = daemon.directory.file("spec.key")
        // A reload onto a file other users can read is refused; the old keys keep serving.
        #expect(chmod(keyPath, 0o644) == 0)
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("chmod 600 \(keyPath)"))
        #expect(daemon.log.contains("reload failed"), "\(daemon.log)")
        ToolSeeds.expectClean(daemon.log, "sigild's log after a refused reload (permissions)")

        // A reload onto malformed files built around the real seed is refused too.
        var reloads = 1
        for (name, text) in [
            ("four fields", "ed25519 1 \(TestKeys.specSeed) extra\n"),
            ("seed as version", "ed25519 \(TestKeys.specSeed)\" \(TestKeys.specSeed)\n"),
            ("seed outside a block", "\(TestKeys.specSeed)=\n" + TestKeys.mmrFile),
            ("seed as Key-ID", Self.mmr("Key-ID: \(TestKeys.specSeed)=\nVersion: 1\n")),
        ] {
            daemon.directory.write("spec.key", text)
            daemon.signal(SIGHUP)
            reloads += 1
            let failed = Self.eventually { daemon.log.components(separatedBy: "reload failed").count - 1 >= reloads }
            #expect(failed, "\(name): no refused reload in the log\n\(daemon.log)")
            ToolSeeds.expectClean(daemon.log, "sigild's log after a refused reload (\(name))")
        }
        // Still serving the original key.
        let signed = try watch.run(
            Tool.sigil, ["sign-request"] + socket + ["--origin", "domain", "--destination", "example.org", "--uri", CLIVectors.downloadURI])
        #expect(signed.stdout == CLIVectors.downloadHeader + "\n", "\(signed.output)")
        let stats = try CLIVectors.json(try watch.run(Tool.sigil, ["stats"] + socket).stdout)
        let reloadCounters = try #require(stats["reloads"] as? [String: Any])
        #expect(reloadCounters["failed"] as? Int == reloads)
        #expect(reloadCounters["ok"] as? Int == 0)
        #expect(reloadCounters["last_error"] is String)
        ToolSeeds.expectClean(daemon.log, "sigild's log at the end")
        daemon.stop()
        ToolSeeds.expectClean(daemon.log, "sigild's log after stopping")
    }

    @Test("sigild refusing to start on a malformed key file logs no key material")
    func daemonStartRefusal() throws {
        for (name, text) in [
            ("four fields", "ed25519 1 \(TestKeys.specSeed) extra\n"),
            ("seed as algorithm", "\(TestKeys.specSeed) ed25519 1\n"),
            ("seed in the END line", Self.mmr(Self.mmrHeaders, end: "-----END \(Self.padded)-----")),
        ] {
            let directory = TemporaryDirectory()
            directory.write("spec.key", text)
            var thrown: (any Error)?
            do {
                let daemon = try DaemonFixture(
                    config: "listen:\n  - name: main\n    path: {dir}/s.sock\nservers:\n  domain:\n    keys: [{dir}/spec.key]\n",
                    directory: directory)
                daemon.stop()
            } catch {
                thrown = error
            }
            let error = try #require(thrown, "\(name): sigild started")
            #expect(String(describing: error).contains(directory.file("spec.key")), "\(name): \(error)")
            ToolSeeds.expectClean(try directory.read("sigild.log"), "sigild's log (\(name))")
            ToolSeeds.expectClean(String(describing: error), "the fixture's error (\(name))")
        }
    }
}

extension SecretHygieneTests {
    /// Polls `condition` for up to `timeout` seconds.
    static func eventually(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(5_000)
        }
        return condition()
    }
}
