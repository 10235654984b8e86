import Foundation
import SigilCore
import SigilTestSupport
import Testing

/// Sigil against Synapse's own signing library (python-signedjson on PyNaCl, from Debian):
/// key files written by our tools load there, and both sides produce byte-identical canonical
/// JSON, signatures, X-Matrix signatures and key documents.
@Suite(
    "Cross-implementation: python-signedjson and PyNaCl",
    .enabled(if: Python.available, "needs /usr/bin/python3 with python3-signedjson, python3-canonicaljson, python3-nacl"))
struct CrossImplementationTests {
    @Test("a Synapse-format key from generate_signing_key signs identically in Synapse's library")
    func synapseKeyFile() throws {
        let dir = TemporaryDirectory()
        let keyPath = dir.file("synapse.key")
        try #require(run(Binaries.path("generate_signing_key"), ["-format", "synapse", "-output", keyPath]).status == 0)
        let document =
            #"{"content":{"body":"héllo \u2028 / \"q\""},"origin_server_ts":1700000000000,"type":"m.room.message","unsigned":{"age":3}}"#
        let ours = try run(Binaries.path("sigil"), ["sign-json", "--key", keyPath, "--server", "example.org"], input: document)
        try #require(ours.status == 0, "\(ours.stderr)")
        let theirs = try Python.run(
            """
            import sys, json
            from signedjson.key import read_signing_keys
            from signedjson.sign import sign_json
            from canonicaljson import encode_canonical_json
            with open(sys.argv[1]) as f:
                key = read_signing_keys(f)[0]
            signed = sign_json(json.loads(sys.argv[2]), "example.org", key)
            sys.stdout.buffer.write(encode_canonical_json(signed))
            """, arguments: [keyPath, document])
        #expect(ours.stdout.trimmingCharacters(in: .newlines) == theirs)
    }

    @Test("Synapse's library verifies the key document sigil keys document builds")
    func keyDocument() throws {
        let dir = TemporaryDirectory()
        let first = dir.file("a.key")
        let second = dir.file("b.key")
        let merged = dir.file("merged.key")
        try #require(run(Binaries.path("generate_signing_key"), ["-format", "synapse", "-output", first]).status == 0)
        try #require(run(Binaries.path("generate_signing_key"), ["-output", second]).status == 0)
        try #require(run(Binaries.path("combine_signing_keys"), ["-format", "synapse", "-output", merged, first, second]).status == 0)
        let document = try run(Binaries.path("sigil"), ["keys", "document", merged, "--server", "example.org"])
        try #require(document.status == 0, "\(document.stderr)")
        let verdict = try Python.run(
            """
            import sys, json
            from signedjson.key import read_signing_keys, get_verify_key
            from signedjson.sign import verify_signed_json
            with open(sys.argv[1]) as f:
                keys = read_signing_keys(f)
            document = json.loads(sys.argv[2])
            assert sorted(document["verify_keys"]) == sorted("ed25519:" + k.version for k in keys)
            for key in keys:
                verify_signed_json(document, "example.org", get_verify_key(key))
            print("verified", len(keys))
            """, arguments: [merged, document.stdout])
        #expect(verdict == "verified 2\n")
    }

    @Test("X-Matrix: PyNaCl signs the same canonical request object to the same signature")
    func xMatrix() throws {
        let dir = TemporaryDirectory()
        let keyPath = dir.write("spec.key", TestKeys.specSynapseFile)
        for (method, uri, content) in [
            ("GET", "/_matrix/federation/v1/media/download/abc123", nil),
            ("GET", "/_matrix/federation/v1/media/thumbnail/abc?width=32&height=32&method=crop", nil),
            ("PUT", "/_matrix/federation/v1/send/1", #"{"pdus":[],"edus":[{"edu_type":"m.typing","content":{"typing":true}}]}"#),
        ] as [(String, String, String?)] {
            var arguments = [
                "x-matrix", "--key", keyPath, "--origin", "domain", "--destination", "example.org:8448", "--method", method, "--uri", uri,
            ]
            if let content { arguments += ["--content", dir.write("body.json", content, mode: 0o644)] }
            let ours = try run(Binaries.path("sigil"), arguments)
            try #require(ours.status == 0, "\(ours.stderr)")
            let signature = try #require(ours.stdout.components(separatedBy: "sig=\"").last?.components(separatedBy: "\"").first)
            let theirs = try Python.run(
                """
                import sys, json
                from signedjson.key import read_signing_keys
                from signedjson.sign import sign_json
                with open(sys.argv[1]) as f:
                    key = read_signing_keys(f)[0]
                request = {"method": sys.argv[2], "uri": sys.argv[3], "origin": "domain", "destination": "example.org:8448"}
                if sys.argv[4]:
                    request["content"] = json.loads(sys.argv[4])
                print(sign_json(request, "domain", key)["signatures"]["domain"]["ed25519:1"], end="")
                """, arguments: [keyPath, method, uri, content ?? ""])
            #expect(signature == theirs, "\(method) \(uri)")
        }
    }

    @Test("canonical JSON agrees with python canonicaljson on random documents")
    func canonicalJSON() throws {
        var rng = SystemRandomNumberGenerator()
        var documents: [String] = []
        for _ in 0..<200 {
            documents.append(RandomDocument.render(RandomDocument.value(depth: 0, using: &rng)))
        }
        let joined = documents.joined(separator: "\n")
        let theirs = try Python.run(
            """
            import sys, json
            from canonicaljson import encode_canonical_json
            for line in sys.stdin.read().split("\\n"):
                sys.stdout.buffer.write(encode_canonical_json(json.loads(line)) + b"\\n")
            """, arguments: [], input: joined)
        let expected = theirs.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (index, document) in documents.enumerated() {
            #expect(try CanonicalJSON.canonicalize(document) == expected[index], "document \(index): \(document)")
        }
    }
}

/// /usr/bin/python3 with Debian's python3-signedjson (the library Synapse signs with).
enum Python {
    static let path = "/usr/bin/python3"

    static let available: Bool = {
        guard FileManager.default.isExecutableFile(atPath: path) else { return false }
        let result = try? SigilTestSupport.run(path, ["-c", "import signedjson.sign, canonicaljson, nacl.signing"])
        return result?.status == 0
    }()

    static func run(_ script: String, arguments: [String], input: String? = nil) throws -> String {
        let result = try SigilTestSupport.run(path, ["-c", script] + arguments, input: input)
        guard result.status == 0 else { throw FixtureError("python failed (\(result.status)): \(result.stderr)") }
        return result.stdout
    }
}

/// Random JSON within what both sides accept (integers only, any Unicode in strings).
enum RandomDocument {
    static let pieces: [String] = [
        "a", "Z", "é", "e\u{301}", "日本", "😀", "\u{2028}", "\u{7F}", "\"", "\\", "/", "\n", "\u{1}", "\t", " ", "ﬁ",
    ]

    static func string(using rng: inout SystemRandomNumberGenerator) -> String {
        (0..<Int.random(in: 0...4, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
    }

    static func value(depth: Int, using rng: inout SystemRandomNumberGenerator) -> JSONValue {
        switch depth > 3 ? Int.random(in: 0..<4, using: &rng) : Int.random(in: 0..<6, using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return .integer(Int64.random(in: -canonicalJSONMaxInteger...canonicalJSONMaxInteger, using: &rng))
        case 3: return .string(string(using: &rng))
        case 4: return .array((0..<Int.random(in: 0...3, using: &rng)).map { _ in value(depth: depth + 1, using: &rng) })
        default:
            var object = JSONObject()
            for _ in 0..<Int.random(in: 0...4, using: &rng) { object[string(using: &rng)] = value(depth: depth + 1, using: &rng) }
            return .object(object)
        }
    }

    /// Non-canonical text: members shuffled, every non-ASCII character escaped as \\uXXXX.
    static func render(_ value: JSONValue) -> String {
        switch value {
        case .null, .bool, .integer: return value.canonicalString
        case .string(let s): return quote(s)
        case .array(let items): return "[ " + items.map(render).joined(separator: " , ") + " ]"
        case .object(let object):
            return "{ " + object.members.reversed().map { quote($0.key) + " : " + render($0.value) }.joined(separator: ", ") + " }"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(unit)!)
            default:
                let hex = String(unit, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
        }
        return out + "\""
    }
}
