import Foundation
import SigilCore
import SigilTestSupport
import Testing

/// Vectors: the spec's (research notes §3.7) and those derived from the spec key (§3.8).
enum CLIVectors {
    static let specPublicKeyArgument = "ed25519:1=\(TestKeys.specPublicKey)"
    static let oneTwo = #"{"one": 1, "two": "Two"}"#
    static let oneTwoSignature = "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
    static let oneTwoSigned = #"{"one":1,"signatures":{"domain":{"ed25519:1":"\#(oneTwoSignature)"}},"two":"Two"}"#
    static let emptySigned =
        #"{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}"#

    static let downloadURI = "/_matrix/federation/v1/media/download/abc123"
    static let downloadSignature = "UxgQZoKQVT7ekj4hjL7QlLRJwA7YaGP7mDBBXDITiGiVDxcGOep/LlSrlzfWGQ6GvgeMdydmBp2v9r+rHdKhDA"
    static let downloadHeader = #"X-Matrix origin="domain",destination="example.org",key="ed25519:1",sig="\#(downloadSignature)""#
    /// The canonical JSON the download header's signature covers.
    static let downloadSigned =
        #"{"destination":"example.org","method":"GET","origin":"domain","uri":"/_matrix/federation/v1/media/download/abc123"}"#

    static let sendURI = "/_matrix/federation/v1/send/1"
    static let sendContent = #"{"pdus": [], "edus": []}"#
    static let sendSignature = "UHEIs1sToaPQ7o8tKTAPKYmK1R4jt64IKM/aaTH51wdAtzU6wWFd6r+bIC5Y+/LWozlLxBq9706047+gWxfuBg"

    static let documentSignature = "ewq/uPhfAzmWSa/3PRlr5Q0W59jG75Wtb6mzxIELuVRAxYMHOeMFue6fNXijZkIwLLembQ0+gl7DIkiUGcoUBg"
    static let document =
        #"{"old_verify_keys":{},"server_name":"domain","signatures":{"domain":{"ed25519:1":"\#(documentSignature)"}},"valid_until_ts":1700000000000,"verify_keys":{"ed25519:1":{"key":"\#(TestKeys.specPublicKey)"}}}"#

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text)")
    }
}

/// The `sigil` commands that work on key files directly, with no daemon.
@Suite("sigil: offline commands")
struct SigilOfflineTests {
    @Test("keys show: format, key IDs and public keys, first key marked, nothing private")
    func keysShow() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let files: [(String, String, KeyFileFormat, [MMRFixtures.Key])] = [
            ("mmr.key", MMRFixtures.mmrTwo, .mmr, [MMRFixtures.mmrA, MMRFixtures.mmrB]),
            ("dendrite.key", MMRFixtures.dendriteTwo, .dendrite, [MMRFixtures.dendriteA, MMRFixtures.dendriteB]),
            ("synapse.key", MMRFixtures.synapseTwo, .synapse, [MMRFixtures.synapseA, MMRFixtures.synapseB]),
            ("spec.key", TestKeys.specSynapseFile, .synapse, [MMRFixtures.spec]),
        ]
        for (name, text, format, keys) in files {
            let path = directory.write(name, text)
            let result = try watch.run(Tool.sigil, ["keys", "show", path])
            #expect(result.status == 0, "\(result.output)")
            #expect(result.stderr.isEmpty, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "\(path): \(format) format, \(keys.count) key\(keys.count == 1 ? "" : "s")")
            #expect(result.shownKeys.map(\.id) == keys.map(\.id))
            #expect(result.shownKeys.map(\.publicKey) == keys.map(\.publicKey))
            #expect(lines.dropFirst().first?.hasSuffix("(first: signs)") == true, "\(result.stdout)")
            #expect(lines.dropFirst(2).allSatisfy { !$0.contains("first") })
            for key in keys where MMRFixtures.verifiedPublicKeys[key.version] != nil {
                #expect(result.stdout.contains("\(key.id)  \(MMRFixtures.verifiedPublicKeys[key.version]!)"))
            }
        }
        let missing = try watch.run(Tool.sigil, ["keys", "show", directory.file("absent.key")])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("\(directory.file("absent.key")): cannot open"), "\(missing.stderr)")
    }

    @Test("keys document: every key signs and verifies, old keys listed with expired_ts")
    func keysDocument() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let keys = [MMRFixtures.mmrA, MMRFixtures.dendriteA, MMRFixtures.synapseA]
        let path = directory.write("keys.key", MMRFixtures.file(keys, format: .mmr))
        let oldKey = MMRFixtures.mmrB
        let before = Int64(Date().timeIntervalSince1970 * 1000)
        let result = try watch.run(
            Tool.sigil,
            [
                "keys", "document", path, "--server", "example.org", "--old-key", "\(oldKey.id)=\(oldKey.publicKey)@1700000000000",
                "--valid-for", "12h",
            ])
        let after = Int64(Date().timeIntervalSince1970 * 1000)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.stderr.isEmpty, "\(result.stderr)")
        let document = try CLIVectors.json(result.stdout)
        #expect(document["server_name"] as? String == "example.org")
        let validUntil = try #require((document["valid_until_ts"] as? NSNumber)?.int64Value)
        let twelveHours: Int64 = 12 * 3600 * 1000
        #expect(validUntil >= before + twelveHours && validUntil <= after + twelveHours)
        let verifyKeys = try #require(document["verify_keys"] as? [String: [String: String]])
        #expect(verifyKeys == Dictionary(uniqueKeysWithValues: keys.map { ($0.id, ["key": $0.publicKey]) }))
        let oldKeys = try #require(document["old_verify_keys"] as? [String: [String: Any]])
        #expect(Array(oldKeys.keys) == [oldKey.id])
        #expect(oldKeys[oldKey.id]?["key"] as? String == oldKey.publicKey)
        #expect((oldKeys[oldKey.id]?["expired_ts"] as? NSNumber)?.int64Value == 1_700_000_000_000)
        let signatures = try #require(document["signatures"] as? [String: [String: String]])
        #expect(signatures["example.org"].map { Set($0.keys) } == Set(keys.map(\.id)))

        // Each active key's signature verifies on its own, and all of them together.
        for key in keys {
            let verified = try watch.run(
                Tool.sigil, ["verify-json", "--server", "example.org", "--public-key", "\(key.id)=\(key.publicKey)"], input: result.stdout)
            #expect(verified.status == 0, "\(key.id): \(verified.output)")
            #expect(verified.stderr.contains("valid: example.org \(key.id)"), "\(verified.stderr)")
        }
        let all = try watch.run(
            Tool.sigil, ["verify-json", "--server", "example.org"] + keys.flatMap { ["--public-key", "\($0.id)=\($0.publicKey)"] },
            input: result.stdout)
        #expect(all.status == 0, "\(all.output)")
        // The retired key did not sign.
        let retired = try watch.run(
            Tool.sigil, ["verify-json", "--server", "example.org", "--public-key", "\(oldKey.id)=\(oldKey.publicKey)"], input: result.stdout
        )
        #expect(retired.status == 1)
        #expect(retired.stderr.contains("missing"), "\(retired.stderr)")
        // Nor does the document verify for another server name.
        let otherServer = try watch.run(
            Tool.sigil, ["verify-json", "--server", "other.org", "--public-key", "\(keys[0].id)=\(keys[0].publicKey)"], input: result.stdout
        )
        #expect(otherServer.status == 1)
    }

    @Test("keys document: --valid-for warnings and errors")
    func keysDocumentValidity() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let path = directory.write("spec.key", TestKeys.specSynapseFile)
        let long = try watch.run(Tool.sigil, ["keys", "document", path, "--server", "domain", "--valid-for", "30d"])
        #expect(long.status == 0, "\(long.output)")
        #expect(long.stderr.contains("7 days"), "\(long.stderr)")
        let short = try watch.run(Tool.sigil, ["keys", "document", path, "--server", "domain", "--valid-for", "10m"])
        #expect(short.status == 0, "\(short.output)")
        #expect(short.stderr.contains("hour"), "\(short.stderr)")
        for bad in ["0", "soon", "-1h"] {
            let result = try watch.run(Tool.sigil, ["keys", "document", path, "--server", "domain", "--valid-for", bad])
            #expect(result.status != 0, "--valid-for \(bad)")
            #expect(result.stdout.isEmpty)
            #expect(!result.stderr.isEmpty)
        }
    }

    @Test("sign-json with a key file: the spec's vectors")
    func signJSON() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let path = directory.write("spec.key", TestKeys.specSynapseFile)
        let oneTwo = try watch.run(Tool.sigil, ["sign-json", "--key", path, "--server", "domain"], input: CLIVectors.oneTwo)
        #expect(oneTwo.status == 0, "\(oneTwo.output)")
        #expect(oneTwo.stdout == CLIVectors.oneTwoSigned + "\n")
        #expect(oneTwo.stderr.isEmpty, "\(oneTwo.stderr)")
        let empty = try watch.run(Tool.sigil, ["sign-json", "--key", path, "--server", "domain"], input: "{}")
        #expect(empty.stdout == CLIVectors.emptySigned + "\n")
        // The same key in MMR format signs the same way.
        let converted = try watch.run(Tool.generate, ["-input", path, "-output", directory.file("spec.mmr")])
        #expect(converted.status == 0)
        let viaMMR = try watch.run(
            Tool.sigil, ["sign-json", "--key", directory.file("spec.mmr"), "--server", "domain"], input: CLIVectors.oneTwo)
        #expect(viaMMR.stdout == CLIVectors.oneTwoSigned + "\n")
        // Existing signatures are kept; a second server's signature is added beside them.
        let twice = try watch.run(Tool.sigil, ["sign-json", "--key", path, "--server", "other.org"], input: CLIVectors.oneTwoSigned)
        let signatures = try #require(try CLIVectors.json(twice.stdout)["signatures"] as? [String: [String: String]])
        #expect(signatures["domain"]?["ed25519:1"] == CLIVectors.oneTwoSignature)
        #expect(signatures["other.org"]?["ed25519:1"] == CLIVectors.oneTwoSignature, "the signature does not cover the signatures key")
    }

    @Test("verify-json: exit status 0 when valid, 1 when not")
    func verifyJSON() throws {
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let arguments = ["verify-json", "--server", "domain", "--public-key", CLIVectors.specPublicKeyArgument]
        let valid = try watch.run(Tool.sigil, arguments, input: CLIVectors.oneTwoSigned)
        #expect(valid.status == 0, "\(valid.output)")
        #expect(valid.stderr.contains("valid: domain ed25519:1"))
        // Pretty-printed input with the keys in another order is the same object.
        let pretty = """
            {
                "two": "Two",
                "signatures": { "domain": { "ed25519:1": "\(CLIVectors.oneTwoSignature)" } },
                "one": 1
            }
            """
        #expect(try watch.run(Tool.sigil, arguments, input: pretty).status == 0)

        let tampered = try watch.run(
            Tool.sigil, arguments, input: CLIVectors.oneTwoSigned.replacingOccurrences(of: #""one":1"#, with: #""one":2"#))
        #expect(tampered.status == 1)
        #expect(tampered.stderr.contains("INVALID: domain ed25519:1"), "\(tampered.stderr)")
        let wrongKey = try watch.run(
            Tool.sigil, ["verify-json", "--server", "domain", "--public-key", "ed25519:1=\(MMRFixtures.mmrA.publicKey)"],
            input: CLIVectors.oneTwoSigned)
        #expect(wrongKey.status == 1)
        let unsigned = try watch.run(Tool.sigil, arguments, input: CLIVectors.oneTwo)
        #expect(unsigned.status == 1)
        #expect(unsigned.stderr.contains("missing"), "\(unsigned.stderr)")
        let noKeys = try watch.run(Tool.sigil, ["verify-json", "--server", "domain"], input: CLIVectors.oneTwoSigned)
        #expect(noKeys.status != 0)
        #expect(noKeys.stderr.contains("--public-key"), "\(noKeys.stderr)")
        let badKey = try watch.run(
            Tool.sigil, ["verify-json", "--server", "domain", "--public-key", "ed25519:1=short"], input: CLIVectors.oneTwoSigned)
        #expect(badKey.status != 0)
        #expect(badKey.stderr.contains("ed25519:1=short"), "\(badKey.stderr)")
    }

    @Test("x-matrix: the derived vectors, with and without a body")
    func xMatrix() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let path = directory.write("spec.key", TestKeys.specSynapseFile)
        let download = try watch.run(
            Tool.sigil, ["x-matrix", "--key", path, "--origin", "domain", "--destination", "example.org", "--uri", CLIVectors.downloadURI])
        #expect(download.status == 0, "\(download.output)")
        #expect(download.stdout == CLIVectors.downloadHeader + "\n")
        let thumbnail = try watch.run(
            Tool.sigil,
            [
                "x-matrix", "--key", path, "--origin", "domain", "--destination", "example.org:8448",
                "--uri", "/_matrix/federation/v1/media/thumbnail/abc123?width=32&height=32&method=crop",
            ])
        #expect(
            thumbnail.stdout.contains(#"sig="xUdl0crwyIIxOoybW4873YLdTI/rENy856g/SH9OLZkeNyMDpmyxNpCr53LWHnEYO5PQ9OJ/6JKqkbkpV0IdCg""#),
            "\(thumbnail.output)")
        let body = directory.write("body.json", CLIVectors.sendContent, mode: 0o644)
        let send = try watch.run(
            Tool.sigil,
            [
                "x-matrix", "--key", path, "--origin", "domain", "--destination", "example.org", "--method", "PUT", "--uri",
                CLIVectors.sendURI, "--content", body,
            ])
        #expect(send.status == 0, "\(send.output)")
        #expect(send.stdout.contains(#"sig="\#(CLIVectors.sendSignature)""#), "\(send.output)")
        let noBody = try watch.run(
            Tool.sigil,
            [
                "x-matrix", "--key", path, "--origin", "domain", "--destination", "example.org", "--uri", CLIVectors.downloadURI,
                "--content", directory.file("absent.json"),
            ])
        #expect(noBody.status != 0)
        #expect(noBody.stderr.contains(directory.file("absent.json")), "\(noBody.stderr)")
    }

    @Test("verify-request without --socket: checked locally against --origin-key")
    func verifyRequestLocally() throws {
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let originKey = "domain/ed25519:1=\(TestKeys.specPublicKey)"
        func verify(_ header: String, uri: String = CLIVectors.downloadURI, destination: String = "example.org", keys: [String]? = nil)
            throws -> ProcessResult
        {
            try watch.run(
                Tool.sigil,
                ["verify-request", "--authorization", header, "--uri", uri, "--destination", destination]
                    + (keys ?? [originKey]).flatMap { ["--origin-key", $0] })
        }
        let valid = try verify(CLIVectors.downloadHeader)
        #expect(valid.status == 0, "\(valid.output)")
        #expect(try verify(CLIVectors.downloadHeader, uri: CLIVectors.downloadURI + "x").status == 1)
        #expect(try verify(CLIVectors.downloadHeader, destination: "elsewhere.org").status == 1)
        #expect(try verify(CLIVectors.downloadHeader, keys: ["domain/ed25519:1=\(MMRFixtures.mmrA.publicKey)"]).status == 1)
        #expect(try verify(CLIVectors.downloadHeader, keys: ["other/ed25519:1=\(TestKeys.specPublicKey)"]).status == 1)
        #expect(try verify("Bearer abc").status == 1)
        let noKeys = try verify(CLIVectors.downloadHeader, keys: [])
        #expect(noKeys.status != 0)
        #expect(noKeys.stderr.contains("--origin-key"), "\(noKeys.stderr)")
        let badKey = try verify(CLIVectors.downloadHeader, keys: ["domain-ed25519:1"])
        #expect(badKey.status != 0)
        #expect(badKey.stderr.contains("domain-ed25519:1"), "\(badKey.stderr)")
        // A header made by x-matrix with a freshly generated key verifies against its public key.
        let directory = TemporaryDirectory()
        let generated = try watch.run(Tool.generate, ["-output", directory.file("new.key")])
        watch.learnSeeds(fromKeyFile: directory.file("new.key"))
        let (version, seed) = try #require(KeyLayout.match(try directory.read("new.key"), format: .mmr), "\(generated.output)")
        let header = try watch.run(
            Tool.sigil,
            [
                "x-matrix", "--key", directory.file("new.key"), "--origin", "me.org", "--destination", "example.org", "--uri",
                CLIVectors.downloadURI,
            ])
        let roundTrip = try verify(
            header.stdout.trimmingCharacters(in: .newlines), keys: ["me.org/ed25519:\(version)=\(ToolSeeds.publicKey(seedText: seed))"])
        #expect(roundTrip.status == 0, "\(roundTrip.output)")
    }

    @Test("errors go to stderr with a non-zero exit")
    func errors() throws {
        let directory = TemporaryDirectory()
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let path = directory.write("spec.key", TestKeys.specSynapseFile)
        func expectError(_ arguments: [String], input: String? = nil, mentions: String, sourceLocation: SourceLocation = #_sourceLocation)
            throws
        {
            let result = try watch.run(Tool.sigil, arguments, input: input)
            #expect(result.status != 0, "\(arguments)", sourceLocation: sourceLocation)
            #expect(result.stdout.isEmpty, "\(arguments): \(result.stdout)", sourceLocation: sourceLocation)
            #expect(result.stderr.contains(mentions), "\(arguments): \(result.stderr)", sourceLocation: sourceLocation)
        }
        try expectError(["sign-json", "--key", path, "--server", "domain"], input: #"{"a": 1,}"#, mentions: "at byte 8")
        try expectError(["sign-json", "--key", path, "--server", "domain"], input: "[1, 2]", mentions: "object")
        try expectError(["sign-json", "--key", path, "--server", "domain"], input: "", mentions: "JSON")
        try expectError(
            ["verify-json", "--server", "domain", "--public-key", CLIVectors.specPublicKeyArgument], input: #"{"one": 1"#, mentions: "byte")
        try expectError(
            ["sign-json", "--key", directory.file("absent.key"), "--server", "domain"], input: "{}",
            mentions: "\(directory.file("absent.key")): cannot open")
        try expectError(
            ["x-matrix", "--key", directory.file("absent.key"), "--origin", "domain", "--destination", "example.org", "--uri", "/x"],
            mentions: directory.file("absent.key"))
        try expectError(["keys", "document", directory.file("absent.key"), "--server", "domain"], mentions: directory.file("absent.key"))
        // Bad --old-key syntax. The value is quoted, but a 43-character key in it (which may be a
        // seed pasted in the wrong place) is shown only by its length.
        let publicKey = MMRFixtures.mmrB.publicKey
        for (bad, quoted) in [
            ("foo", "'foo'"), ("ed25519:old=short@1", "'ed25519:old=short@1'"),
            ("ed25519:old=\(publicKey)", "'ed25519:old=<43 base64 characters>'"),
            ("old=\(publicKey)@1", "'old=<43 base64 characters>@1'"),
            ("ed25519:old=\(publicKey)@soon", "'ed25519:old=<43 base64 characters>@soon'"),
        ] {
            try expectError(
                ["keys", "document", path, "--server", "domain", "--old-key", bad],
                mentions: "document: --old-key \(quoted): expected ed25519:ID=PUBLICKEY@EXPIRED_TS")
        }
        try expectError(
            ["sign-json", "--key", path, "--socket", directory.file("s.sock"), "--server", "domain"], input: "{}", mentions: "not both")
    }
}

/// The `sigil` commands that talk to a real sigild.
@Suite("sigil: daemon commands")
struct SigilDaemonCommandTests {
    @Test("ping, keys, sign-request, verify, verify-json, verify-request, key-document and stats")
    func commands() throws {
        let daemon = try DaemonFixture.quickStart()
        defer { daemon.stop() }
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let socket = ["--socket", daemon.socketPath]

        let ping = try watch.run(Tool.sigil, ["ping"] + socket)
        #expect(ping.status == 0, "\(ping.output)")
        #expect(ping.stdout.contains("at \(daemon.socketPath): protocol 1"), "\(ping.stdout)")
        #expect(ping.stdout.contains("servers: domain"), "\(ping.stdout)")
        #expect(ping.stdout.contains("sign_request") && !ping.stdout.contains("sign_json"), "\(ping.stdout)")

        for arguments in [["keys"], ["keys", "list"]] {
            let keys = try watch.run(Tool.sigil, arguments + socket)
            #expect(keys.status == 0, "\(keys.output)")
            #expect(keys.stdout == "domain\n  ed25519:1  \(TestKeys.specPublicKey)  (signing)\n", "\(keys.stdout)")
        }

        let signed = try watch.run(
            Tool.sigil, ["sign-request"] + socket + ["--origin", "domain", "--destination", "example.org", "--uri", CLIVectors.downloadURI])
        #expect(signed.status == 0, "\(signed.output)")
        #expect(signed.stdout == CLIVectors.downloadHeader + "\n")
        let directory = TemporaryDirectory()
        let body = directory.write("body.json", CLIVectors.sendContent)
        let put = try watch.run(
            Tool.sigil,
            ["sign-request"] + socket + [
                "--origin", "domain", "--destination", "example.org", "--method", "PUT", "--uri", CLIVectors.sendURI, "--content", body,
            ])
        #expect(put.stdout.contains(#"sig="\#(CLIVectors.sendSignature)""#), "\(put.output)")
        let unknownOrigin = try watch.run(
            Tool.sigil,
            ["sign-request"] + socket + ["--origin", "other.org", "--destination", "example.org", "--uri", CLIVectors.downloadURI])
        #expect(unknownOrigin.status != 0)
        #expect(unknownOrigin.stdout.isEmpty)

        // verify: a raw signature over standard input, by key ID in sigild's keyring or by public key.
        for keyArguments in [["--server", "domain", "--key-id", "ed25519:1"], ["--public-key", TestKeys.specPublicKey]] {
            let valid = try watch.run(
                Tool.sigil, ["verify"] + socket + keyArguments + ["--signature", CLIVectors.downloadSignature],
                input: CLIVectors.downloadSigned)
            #expect(valid.status == 0, "\(keyArguments): \(valid.output)")
            #expect(valid.stderr.contains("valid"))
            let invalid = try watch.run(
                Tool.sigil, ["verify"] + socket + keyArguments + ["--signature", CLIVectors.downloadSignature],
                input: CLIVectors.downloadSigned + " ")
            #expect(invalid.status == 1, "\(keyArguments): \(invalid.output)")
            #expect(invalid.stderr.contains("INVALID"))
        }

        // verify-json with the daemon's own keys for --server.
        let verifyJSON = try watch.run(Tool.sigil, ["verify-json"] + socket + ["--server", "domain"], input: CLIVectors.oneTwoSigned)
        #expect(verifyJSON.status == 0, "\(verifyJSON.output)")
        #expect(verifyJSON.stderr.contains("valid: domain ed25519:1"), "\(verifyJSON.stderr)")
        let tampered = try watch.run(
            Tool.sigil, ["verify-json"] + socket + ["--server", "domain"],
            input: CLIVectors.oneTwoSigned.replacingOccurrences(of: "Two", with: "Three"))
        #expect(tampered.status == 1, "\(tampered.output)")
        #expect(tampered.stderr.contains("INVALID"), "\(tampered.stderr)")
        let withKey = try watch.run(
            Tool.sigil, ["verify-json"] + socket + ["--server", "domain", "--public-key", CLIVectors.specPublicKeyArgument],
            input: CLIVectors.emptySigned)
        #expect(withKey.status == 0, "\(withKey.output)")

        // verify-request against sigild's keyring.
        let request = ["verify-request"] + socket + ["--authorization", CLIVectors.downloadHeader, "--destination", "example.org"]
        let validRequest = try watch.run(Tool.sigil, request + ["--uri", CLIVectors.downloadURI])
        #expect(validRequest.status == 0, "\(validRequest.output)")
        #expect(validRequest.stderr.contains("domain"), "\(validRequest.stderr)")
        let wrongURI = try watch.run(Tool.sigil, request + ["--uri", CLIVectors.downloadURI + "/other"])
        #expect(wrongURI.status == 1, "\(wrongURI.output)")

        // key-document: the derived vector at a fixed valid_until_ts, and a default one that verifies.
        let fixed = try watch.run(Tool.sigil, ["key-document"] + socket + ["--server", "domain", "--valid-until-ts", "1700000000000"])
        #expect(fixed.status == 0, "\(fixed.output)")
        #expect(fixed.stdout == CLIVectors.document + "\n")
        let current = try watch.run(Tool.sigil, ["key-document"] + socket + ["--server", "domain"])
        #expect(current.status == 0, "\(current.output)")
        let document = try CLIVectors.json(current.stdout)
        let validUntil = try #require((document["valid_until_ts"] as? NSNumber)?.int64Value)
        #expect(validUntil > Int64(Date().timeIntervalSince1970 * 1000))
        let checked = try watch.run(
            Tool.sigil, ["verify-json", "--server", "domain", "--public-key", CLIVectors.specPublicKeyArgument], input: current.stdout)
        #expect(checked.status == 0, "\(checked.output)")

        // stats: JSON, with what we did counted.
        let stats = try watch.run(Tool.sigil, ["stats"] + socket)
        #expect(stats.status == 0, "\(stats.output)")
        let counters = try CLIVectors.json(stats.stdout)
        let requests = try #require(counters["requests"] as? [String: [String: Int]], "\(stats.stdout)")
        #expect((requests["ping"]?["count"] ?? 0) >= 3)
        #expect(requests["sign_request"]?["count"] == 3)
        #expect(requests["sign_request"]?["errors"] == 1)
        #expect(requests["verify"]?["count"] == 4)
        #expect(requests["verify_json"]?["count"] == 3)
        #expect(requests["verify_request"]?["count"] == 2)
        #expect(requests["key_document"]?["count"] == 2)
        #expect((counters["requests_total"] as? Int ?? 0) >= 20)
        #expect(counters["key_count"] as? Int == 1)

        ToolSeeds.expectClean(daemon.log, "sigild's log")
    }

    @Test("sign-json through sigild is DENIED unless granted")
    func signJSONDenied() throws {
        let daemon = try DaemonFixture.quickStart()
        defer { daemon.stop() }
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let result = try watch.run(
            Tool.sigil, ["sign-json", "--socket", daemon.socketPath, "--server", "domain"], input: CLIVectors.oneTwo)
        #expect(result.status != 0)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("DENIED"), "\(result.stderr)")
        #expect(result.stderr.contains("sign_json"), "\(result.stderr)")
        #expect(daemon.waitForLog("refused sign_json"))
        ToolSeeds.expectClean(daemon.log, "sigild's log")
    }

    @Test("SIGIL_SOCKET stands in for --socket")
    func environmentSocket() throws {
        let daemon = try DaemonFixture.quickStart()
        defer { daemon.stop() }
        let watch = SecretWatch()
        defer { watch.expectNoSecrets() }
        let environment = ["SIGIL_SOCKET": daemon.socketPath]
        let ping = try watch.run(Tool.sigil, ["ping", "--count", "1"], environment: environment)
        #expect(ping.status == 0, "\(ping.output)")
        #expect(ping.stdout.contains(daemon.socketPath))
        let keys = try watch.run(Tool.sigil, ["keys"], environment: environment)
        #expect(keys.stdout.contains("ed25519:1  \(TestKeys.specPublicKey)"), "\(keys.output)")
        let signed = try watch.run(
            Tool.sigil, ["sign-request", "--origin", "domain", "--destination", "example.org", "--uri", CLIVectors.downloadURI],
            environment: environment)
        #expect(signed.stdout == CLIVectors.downloadHeader + "\n", "\(signed.output)")
        let stats = try watch.run(Tool.sigil, ["stats"], environment: environment)
        #expect(try CLIVectors.json(stats.stdout)["requests_total"] != nil)
        // --socket wins over the environment.
        let nowhere = try watch.run(
            Tool.sigil, ["ping", "--socket", daemon.directory.file("absent.sock")], environment: environment)
        #expect(nowhere.status != 0)
        #expect(nowhere.stderr.contains("absent.sock"), "\(nowhere.stderr)")
        // And a wrong SIGIL_SOCKET fails clearly.
        let wrong = try watch.run(Tool.sigil, ["keys"], environment: ["SIGIL_SOCKET": daemon.directory.file("absent.sock")])
        #expect(wrong.status != 0)
        #expect(wrong.stdout.isEmpty)
    }
}
