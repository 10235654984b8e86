import FuzzSupport
import SigilCore

@_cdecl("FuzzCanonicalJSON_main")
public func fuzzCanonicalJSONMain(argc: Int32, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzMain(CanonicalJSONTarget.self, argc: argc, argv: argv)
}

/// The input is a JSON text. The streaming canonicaliser and the tree parser must accept the
/// same texts and write the same bytes; the output must canonicalise to itself; an accepted
/// object must sign and verify.
enum CanonicalJSONTarget: FuzzTarget {
    static func run(_ input: UnsafeRawBufferPointer) {
        if let canonical = compare(input, limits: .default) {
            checkObject(input, canonical: canonical)
        }
        // Tight limits too, so that the depth and size refusals are compared on every input.
        _ = compare(input, limits: JSONLimits(maxDepth: input.count % 6, maxBytes: 16 + input.count % 97))
    }

    /// Both implementations on one input; the canonical bytes when they accept it.
    static func compare(_ input: UnsafeRawBufferPointer, limits: JSONLimits) -> [UInt8]? {
        let streamed = Result { () throws(JSONError) in try CanonicalJSON.canonicalize(input, limits: limits) }
        let parsed = Result { () throws(JSONError) in try JSONValue(parsing: input, limits: limits) }
        switch (streamed, parsed) {
        case (.success(let canonical), .success(let tree)):
            let fromTree = tree.canonicalBytes
            fuzzCheck(fromTree == canonical, "tree wrote \(printable(fromTree)), stream wrote \(printable(canonical))")
            // Canonical output can be longer than its input (1e10), never deeper.
            let again = JSONLimits(maxDepth: limits.maxDepth, maxBytes: Int.max)
            let twice = try? CanonicalJSON.canonicalize(canonical, limits: again)
            fuzzCheck(twice == canonical, "canonicalising \(printable(canonical)) gave \(twice.map { printable($0) } ?? "an error")")
            let reparsed = try? JSONValue(parsing: canonical, limits: again)
            fuzzCheck(reparsed == tree, "the canonical form parses to another tree")
            return canonical
        case (.failure(let a), .failure(let b)):
            // The same checks in the same order: the same error, inside the input (or at the
            // size limit, for a document over it).
            fuzzCheck(a == b, "stream refused with \(a), tree with \(b)")
            fuzzCheck((0...max(input.count, limits.maxBytes)).contains(a.offset), "error \(a) outside the input")
            return nil
        case (.success(let canonical), .failure(let error)):
            fuzzCheck(false, "stream accepted (\(printable(canonical))), tree refused: \(error)")
        case (.failure(let error), .success(let tree)):
            fuzzCheck(false, "tree accepted (\(printable(tree.canonicalBytes))), stream refused: \(error)")
        }
        return nil
    }

    static let serverName = "fuzz.example"
    static let key: SigningKey = {
        let file = try! KeyFile(fixture: "ed25519 fuzz YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
        return try! file.loadKeys(lockPolicy: .warn)[0]
    }()
    static let otherKey: PublicKey = PublicKey(base64: "N1wtx39rXnuCsbjt3Yhrb0jkPI/zI5kphIV9ai1enW0")!

    /// `canonicalObject` agrees with `canonicalize`, and signing round-trips.
    static func checkObject(_ input: UnsafeRawBufferPointer, canonical: [UInt8]) {
        guard canonical.first == UInt8(ascii: "{") else {
            let refused: Bool
            do {
                _ = try CanonicalJSON.canonicalObject(input)
                refused = false
            } catch {
                refused = error.kind == .wrongType(expected: "a JSON object")
            }
            fuzzCheck(refused, "canonicalObject accepted a non-object")
            return
        }
        let object: CanonicalObject
        do {
            object = try CanonicalJSON.canonicalObject(input)
        } catch {
            fuzzCheck(false, "canonicalObject refused what canonicalize accepted: \(error)")
            return
        }
        fuzzCheck(object.bytes == canonical, "canonicalObject wrote other bytes")
        var rebuilt: [UInt8] = [UInt8(ascii: "{")]
        for (index, member) in object.members.enumerated() {
            if index > 0 {
                rebuilt.append(UInt8(ascii: ","))
                fuzzCheck(object.members[index - 1].key.utf8.lexicographicallyPrecedes(member.key.utf8), "members out of order")
            }
            var key: [UInt8] = []
            let quoted = JSONValue.string(member.key).canonicalBytes
            key.append(contentsOf: quoted)
            key.append(UInt8(ascii: ":"))
            fuzzCheck(Array(object.bytes[member.range].prefix(key.count)) == key, "member range does not start with its key")
            fuzzCheck(
                member.valueRange.upperBound == member.range.upperBound
                    && member.valueRange.lowerBound == member.range.lowerBound + key.count, "value range misplaced")
            rebuilt.append(contentsOf: object.bytes[member.range])
        }
        rebuilt.append(UInt8(ascii: "}"))
        fuzzCheck(rebuilt == canonical, "members do not cover the object")
        fuzzCheck(object.bytes(excluding: []) == canonical, "bytes(excluding: []) differs")
        checkSigning(input, object: object)
    }

    static func checkSigning(_ input: UnsafeRawBufferPointer, object: CanonicalObject) {
        let signed: [UInt8]
        do {
            signed = try JSONSigning.sign(input, serverName: serverName, keys: [key])
        } catch {
            // Only a `signatures` member that is not an object of objects stops signing.
            guard case .malformedSignatures = error else {
                fuzzCheck(false, "an accepted object could not be signed: \(error)")
                return
            }
            let tree = try? JSONValue(parsing: input)
            let signatures = tree?.objectValue?["signatures"]
            let wellFormed = signatures?.objectValue.map { $0.allSatisfy { $0.value.objectValue != nil } } ?? false
            fuzzCheck(!wellFormed, "well-formed signatures refused as malformed")
            return
        }
        let big = JSONLimits(maxDepth: JSONLimits.default.maxDepth, maxBytes: Int.max)
        fuzzCheck((try? CanonicalJSON.canonicalize(signed, limits: big)) == signed, "signed output is not canonical")
        guard let signedObject = try? CanonicalJSON.canonicalObject(signed.withUnsafeBytes { $0 }, limits: big) else {
            fuzzCheck(false, "signed output is not an object")
            return
        }
        let stripped: Set<String> = ["signatures", "unsigned"]
        fuzzCheck(signedObject.bytes(excluding: stripped) == object.bytes(excluding: stripped), "signing changed the signed content")
        fuzzCheck(
            signedObject.member("unsigned").map { signedObject.bytes[$0.range] }
                == object.member("unsigned").map { object.bytes[$0.range] }, "signing changed unsigned")

        let verdict = try? JSONSigning.verify(signed, serverName: serverName, publicKeys: [key.id: key.publicKey], limits: big)
        fuzzCheck(verdict?.valid == [key.id] && verdict?.invalid == [], "own signature does not verify: \(String(describing: verdict))")
        let wrong = try? JSONSigning.verify(signed, serverName: serverName, publicKeys: [key.id: otherKey], limits: big)
        fuzzCheck(wrong?.isValid == false && wrong?.invalid == [key.id], "another key's check passed: \(String(describing: wrong))")

        // Signatures by other servers and other keys are kept as they were.
        let before = (try? JSONValue(parsing: input))?.objectValue?["signatures"]?.objectValue ?? JSONObject()
        let after = (try? JSONValue(parsing: signed, limits: big))?.objectValue?["signatures"]?.objectValue ?? JSONObject()
        for (server, entry) in before {
            var expected = entry.objectValue!
            if server == serverName { expected[key.id.description] = after[server]?.objectValue?[key.id.description] }
            fuzzCheck(after[server]?.objectValue == expected, "signatures of \(server) changed")
        }
        fuzzCheck(after.count == before.count + (before[serverName] == nil ? 1 : 0), "signatures gained or lost a server")
    }

    static var seeds: [[UInt8]] {
        var texts: [String] = [
            "{}", "[]", "null", "true", "false", "0", "-0", "1e10", "\"\"", " [ 1 , 2 ] ",
            #"{"one": 1, "two": "Two"}"#, #"{"two": "Two", "one": 1}"#, #"{"b": "2", "a": "1"}"#,
            #"{"auth":{"success":true,"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"medium":"email","address":"john.doe@example.org"},{"medium":"msisdn","address":"123456789"}]}}}"#,
            #"{"a": "日本語"}"#, #"{"本": 2, "日": 1}"#, #"{"a": "\u65E5"}"#, #"{"a": null}"#, #"{"a": -0, "b": 1e10}"#,
            #""a/b\/\u0000\u0001\u001f\u001F\b\t\n\f\r\"\\\u007f\u2028\u2029\ud83d\ude00\u00e9""#,
            "[0,-0,0e99,-0E-5,1e10,1E+2,5e0,150e-1,1000e-3,9007199254740991,-9007199254740991,90071992547409910e-1]",
            "[1.5]", "[1e-1]", "[9007199254740992]", "[01]", "[1.]", "{\"a\":1,\"a\":2}", "{\"b\":1,\"a\":2,\"b\":3}",
            "{\"\u{FB01}\":1,\"é\":2,\"z\":3,\"e\u{301}\":4,\"Z\":5}",
            #"{"uri": "/_matrix/federation/v1/media/download/abcdefghijklmnopqrstuvwx", "origin": "domain", "method": "GET", "destination": "example.org"}"#,
            #"{"auth_events":["$a:domain","$b:domain"],"content":{"body":"Here is the message content","msgtype":"m.text"},"depth":12,"hashes":{"sha256":"onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},"origin":"domain","origin_server_ts":1000000,"prev_events":["$c:domain"],"room_id":"!r:domain","sender":"@u:domain","type":"m.room.message","unsigned":{"age_ts":1000000}}"#,
            #"{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}},"unsigned":{"age_ts":1},"content":{}}"#,
            #"{"signatures":{"fuzz.example":{"ed25519:other":"x"},"other.example":{}},"a":1}"#,
            #"{"signatures":[],"a":1}"#, #"{"signatures":{"x":1}}"#,
            #"{"old_verify_keys":{},"server_name":"localhost","valid_until_ts":1700979986627,"verify_keys":{"ed25519:e5d0oC":{"key":"TohekYXzLx7VzV8FtLQlI3XsSdPv1CjhVYY5rZmFCvU"}}}"#,
        ]
        texts.append(String(repeating: "[", count: 300) + String(repeating: "]", count: 300))
        texts.append(String(repeating: "{\"b\":0,\"a\":", count: 100) + "1" + String(repeating: "}", count: 100))
        return texts.map { Array($0.utf8) } + [[0xEF, 0xBB, 0xBF, 0x7B, 0x7D], [0x22, 0xC3, 0x28, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22]]
    }
}
