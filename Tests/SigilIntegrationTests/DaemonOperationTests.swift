import Foundation
import SigilClient
import SigilCore
import SigilTestSupport
import Testing

/// Every operation through SigilClient, against a real sigild holding the spec key (server
/// `domain`) and a second server with two active keys and a retired one.
extension DaemonEndToEnd {
    @Suite("every operation through SigilClient")
    struct Operations {
        static let retiredExpiry: UInt64 = 1_600_000_000_000

        /// Every operation granted to us; `domain` holds only the spec key, so the spec vectors
        /// apply to it unchanged.
        static func start() throws -> DaemonFixture {
            try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        mode: "0600"
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                      keys.example:
                        keys: [{dir}/mmr.key, {dir}/second.key]
                        retired:
                          - { id: "ed25519:old", key: "\(TestKeys.specPublicKey)", expired_ts: \(retiredExpiry) }
                    access:
                      - uid: \(getuid())
                        operations: [hello, ping, list_keys, sign_request, sign_json, sign_raw, verify, verify_json, verify_request, key_document, stats]
                    limits:
                      max_frame: 128KiB
                      max_batch: 100
                      max_in_flight: 50
                      frame_timeout: 2s
                    log_level: debug
                    """,
                files: ["spec.key": TestKeys.specSynapseFile, "mmr.key": TestKeys.mmrFile, "second.key": randomKeyFile(version: "2")])
        }

        @Test("HELLO reports the configured limits, the granted operations and servers")
        func hello() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let info = try daemon.client().hello(clientName: "operations-test")
            #expect(info.protocolVersion == 1)
            #expect(info.maxFrameLength == 128 * 1024)
            #expect(info.maxBatchItems == 100)
            #expect(info.maxInFlight == 50)
            #expect(Set(info.operations) == Set(Opcode.allCases))
            #expect(Set(info.servers) == ["domain", "keys.example"])
            #expect(!info.daemonVersion.isEmpty)
        }

        @Test("PING echoes any payload that fits in max_frame; a larger frame is FRAME_TOO_LARGE")
        func ping() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let client = daemon.client()
            #expect(try client.ping() == [])
            #expect(try client.ping(Array("hi".utf8)) == Array("hi".utf8))
            // max_frame is 128 KiB here: the largest payload is that less the 8 header bytes
            // the length counts and the payload's own 4-byte length.
            let largest = (0..<(128 * 1024 - 12)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            #expect(try client.ping(largest) == largest)
            let socket = try RawSocket(path: daemon.socketPath)
            try socket.send(frameBytes(.ping(payload: largest + [0]), id: 7))
            let refused = try #require(try socket.readFrame())
            #expect(refused.header.status == WireStatus.frameTooLarge.rawValue)
            #expect(refused.header.opcode == Opcode.ping.rawValue && refused.header.requestID == 7, "the refusal names the request")
            #expect(try socket.readEOF(), "the connection closes after FRAME_TOO_LARGE")
            // Another connection is unaffected.
            #expect(try client.ping([1, 2, 3]) == [1, 2, 3])
        }

        @Test("LIST_KEYS gives signing, active and retired keys with their public keys")
        func listKeys() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let listing = try daemon.client().listKeys()
            #expect(listing.servers.map(\.name).sorted() == ["domain", "keys.example"])
            let domain = try #require(listing.servers.first { $0.name == "domain" })
            #expect(domain.keys == [KeyListing.Key(id: "ed25519:1", publicKey: SpecVectors.publicKey, state: .signing, expiredTS: 0)])
            let other = try #require(listing.servers.first { $0.name == "keys.example" })
            #expect(other.keys.map(\.id) == ["ed25519:e5d0oC", "ed25519:2", "ed25519:old"])
            #expect(other.keys.map(\.state) == [.signing, .active, .retired])
            #expect(other.keys.map(\.expiredTS) == [0, 0, Self.retiredExpiry])
            #expect(other.keys[0].publicKey.base64 == TestKeys.mmrPublicKey)
            #expect(other.keys[2].publicKey == SpecVectors.publicKey)
        }

        @Test("SIGN_REQUEST gives the spec's X-Matrix header")
        func signRequest() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let client = daemon.client()
            let signed = try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            #expect(signed.keyID.description == "ed25519:1")
            #expect(signed.signature.base64 == SpecVectors.mediaSignature)
            #expect(signed.header == SpecVectors.mediaHeader)
            // The second server signs with its first key file's key.
            let other = try client.signRequest(origin: "keys.example", destination: "example.org", uri: SpecVectors.mediaURI)
            #expect(other.keyID.description == "ed25519:e5d0oC")
            let mmrKey = try #require(PublicKey(base64: TestKeys.mmrPublicKey))
            #expect(
                mmrKey.verify(
                    signature: other.signature.bytes, message: SpecVectors.requestJSON(origin: "keys.example", uri: SpecVectors.mediaURI)))
            do {
                _ = try client.signRequest(origin: "nowhere.example", destination: "example.org", uri: "/x")
                Issue.record("an unknown origin was signed for")
            } catch {
                #expect(error.status == .unknownServer)
            }
        }

        @Test("SIGN_REQUEST through the async API")
        func signRequestAsync() async throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let signed = try await daemon.client().signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            #expect(signed.header == SpecVectors.mediaHeader)
        }

        @Test("SIGN_REQUEST batch: each item succeeds or fails on its own")
        func signRequests() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let content = Array(#"{"b": 2, "a": 1}"#.utf8)
            let results = try daemon.client().signRequests([
                SignRequestParams(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI),
                SignRequestParams(origin: "nowhere.example", destination: "example.org", uri: SpecVectors.mediaURI),
                SignRequestParams(
                    origin: "domain", destination: "example.org", method: "PUT", uri: "/_matrix/federation/v1/send/1", content: content),
                SignRequestParams(
                    origin: "domain", destination: "example.org", method: "PUT", uri: "/_matrix/federation/v1/send/2",
                    content: Array("{".utf8)),
            ])
            #expect(results.count == 4)
            #expect((try? results[0].get())?.header == SpecVectors.mediaHeader)
            if case .failure(let failure) = results[1] {
                #expect(failure.status == .unknownServer)
                #expect(failure.message.contains("nowhere.example"))
            } else {
                Issue.record("an unknown origin was signed for in a batch")
            }
            let withContent = try results[2].get()
            let message = Array(
                #"{"content":{"a":1,"b":2},"destination":"example.org","method":"PUT","origin":"domain","uri":"/_matrix/federation/v1/send/1"}"#
                    .utf8)
            #expect(SpecVectors.publicKey.verify(signature: withContent.signature.bytes, message: message))
            if case .failure(let failure) = results[3] {
                #expect(failure.status == .invalidJSON)
            } else {
                Issue.record("invalid content JSON was signed")
            }
        }

        @Test("SIGN_JSON signs the spec's JSON object (when granted)")
        func signJSON() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let signed = try daemon.client().signJSON(server: "domain", json: Array(SpecVectors.jsonObject.utf8))
            let expected = #"{"one":1,"signatures":{"domain":{"ed25519:1":"\#(SpecVectors.jsonSignature)"}},"two":"Two"}"#
            #expect(String(decoding: signed, as: UTF8.self) == expected)
            do {
                _ = try daemon.client().signJSON(server: "domain", json: Array(#"{"a": 1.5}"#.utf8))
                Issue.record("a float was signed")
            } catch {
                #expect(error.status == .invalidJSON)
            }
        }

        @Test("SIGN_RAW signs bytes with the signing key or a named active key (when granted)")
        func signRaw() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let client = daemon.client()
            let message = Array("arbitrary bytes \u{0}\u{1}".utf8)
            let signed = try client.signRaw(server: "domain", message: message)
            #expect(signed.keyID.description == "ed25519:1")
            #expect(SpecVectors.publicKey.verify(signature: signed.signature.bytes, message: message))
            let named = try client.signRaw(server: "keys.example", keyID: "ed25519:2", message: message)
            #expect(named.keyID.description == "ed25519:2")
            let listing = try client.listKeys()
            let second = try #require(listing.servers.first { $0.name == "keys.example" }?.keys.first { $0.id == "ed25519:2" })
            #expect(second.publicKey.verify(signature: named.signature.bytes, message: message))
            for missing in ["ed25519:old", "ed25519:nope"] {
                do {
                    _ = try client.signRaw(server: "keys.example", keyID: missing, message: message)
                    Issue.record("signed with \(missing), which is not an active key")
                } catch {
                    #expect(error.status == .unknownKey)
                }
            }
        }

        @Test("VERIFY by public key and by key ID (active and retired)")
        func verify() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let client = daemon.client()
            let message = SpecVectors.requestJSON(uri: SpecVectors.mediaURI)
            let signature = try #require(Base64.decode(SpecVectors.mediaSignature))
            #expect(try client.verify(VerifyParams(key: .publicKey(SpecVectors.publicKey), message: message, signature: signature)))
            #expect(
                try !client.verify(VerifyParams(key: .publicKey(SpecVectors.publicKey), message: message + [0x20], signature: signature)))
            #expect(
                try !client.verify(
                    VerifyParams(key: .publicKey(SpecVectors.publicKey), message: message, signature: Array(signature.prefix(63)))))
            #expect(try client.verify(VerifyParams(key: .keyID(server: "domain", id: "ed25519:1"), message: message, signature: signature)))
            // The retired key of keys.example is the spec key's public half.
            #expect(
                try client.verify(
                    VerifyParams(key: .keyID(server: "keys.example", id: "ed25519:old"), message: message, signature: signature)))
            #expect(
                try !client.verify(
                    VerifyParams(key: .keyID(server: "keys.example", id: "ed25519:e5d0oC"), message: message, signature: signature)))
            do {
                _ = try client.verify(VerifyParams(key: .keyID(server: "domain", id: "ed25519:2"), message: message, signature: signature))
                Issue.record("verified with a key the server does not have")
            } catch {
                #expect(error.status == .unknownKey)
            }
            do {
                _ = try client.verify(
                    VerifyParams(key: .keyID(server: "nowhere.example", id: "ed25519:1"), message: message, signature: signature))
                Issue.record("verified with an unknown server's key")
            } catch {
                #expect(error.status == .unknownServer)
            }
        }

        @Test("VERIFY_JSON with the daemon's keys and with given keys")
        func verifyJSON() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let client = daemon.client()
            let signed = Array(#"{"one":1,"signatures":{"domain":{"ed25519:1":"\#(SpecVectors.jsonSignature)"}},"two":"Two"}"#.utf8)
            let own = try client.verifyJSON(VerifyJSONParams(server: "domain", keys: [], json: signed))
            #expect(own.isValid)
            #expect(own.outcomes.map(\.id) == ["ed25519:1"])
            #expect(own.outcomes.map(\.outcome) == [.valid])
            let given = try client.verifyJSON(
                VerifyJSONParams(
                    server: "domain", keys: [("ed25519:1", SpecVectors.publicKey), ("ed25519:zz", SpecVectors.publicKey)], json: signed))
            #expect(given.isValid)
            #expect(
                Dictionary(uniqueKeysWithValues: given.outcomes.map { ($0.id, $0.outcome) }) == [
                    "ed25519:1": .valid, "ed25519:zz": .missing,
                ])
            let tampered = Array(#"{"one":2,"signatures":{"domain":{"ed25519:1":"\#(SpecVectors.jsonSignature)"}},"two":"Two"}"#.utf8)
            let bad = try client.verifyJSON(VerifyJSONParams(server: "domain", keys: [], json: tampered))
            #expect(!bad.isValid)
            #expect(bad.outcomes.map(\.outcome) == [.invalid])
            do {
                _ = try client.verifyJSON(VerifyJSONParams(server: "domain", keys: [], json: Array("[1]".utf8)))
                Issue.record("a JSON array was accepted as a signed object")
            } catch {
                #expect(error.status == .invalidJSON)
            }
        }

        @Test("VERIFY_REQUEST: valid, tampered, and for another destination")
        func verifyRequest() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let client = daemon.client()
            func check(uri: String = SpecVectors.mediaURI, destination: String = "example.org", keys: [GivenKey] = []) throws
                -> RequestVerification
            {
                try client.verifyRequest(
                    VerifyRequestParams(
                        authorizations: [SpecVectors.mediaHeader], method: "GET", uri: uri, destination: destination, keys: keys))
            }
            let valid = try check()
            #expect(valid.verdict == .valid)
            #expect(valid.origin == "domain")
            #expect(valid.keyID == "ed25519:1")
            let withGivenKey = try check(keys: [GivenKey(server: "domain", id: "ed25519:1", publicKey: SpecVectors.publicKey)])
            #expect(withGivenKey.verdict == .valid)
            let tampered = try check(uri: SpecVectors.mediaURI + "4")
            #expect(tampered.verdict == .badSignature)
            #expect(tampered.keyID == "ed25519:1")
            let elsewhere = try check(destination: "other.org")
            #expect(elsewhere.verdict == .destinationMismatch)
            let unknown = try check(keys: [GivenKey(server: "domain", id: "ed25519:9", publicKey: SpecVectors.publicKey)])
            #expect(unknown.verdict == .unknownKey)
            let none = try client.verifyRequest(
                VerifyRequestParams(authorizations: [], method: "GET", uri: SpecVectors.mediaURI, destination: "example.org", keys: []))
            #expect(none.verdict == .missingAuthorization)
        }

        @Test("KEY_DOCUMENT gives the spec's signed key-server body; retired keys go in old_verify_keys")
        func keyDocument() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let client = daemon.client()
            let document = try client.keyDocument(server: "domain", validUntilTS: 1_700_000_000_000)
            let expected =
                #"{"old_verify_keys":{},"server_name":"domain","signatures":{"domain":{"ed25519:1":"\#(SpecVectors.keyDocumentSignature)"}},"valid_until_ts":1700000000000,"verify_keys":{"ed25519:1":{"key":"\#(TestKeys.specPublicKey)"}}}"#
            #expect(String(decoding: document, as: UTF8.self) == expected)

            let other = try client.keyDocument(server: "keys.example")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(other)) as? [String: Any])
            #expect((object["verify_keys"] as? [String: Any]).map { Set($0.keys) } == ["ed25519:e5d0oC", "ed25519:2"])
            let old = try #require((object["old_verify_keys"] as? [String: Any])?["ed25519:old"] as? [String: Any])
            #expect((old["expired_ts"] as? NSNumber)?.uint64Value == Self.retiredExpiry)
            #expect(old["key"] as? String == TestKeys.specPublicKey)
            let validUntil = try #require((object["valid_until_ts"] as? NSNumber)?.int64Value)
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            #expect(abs(validUntil - (now + 86_400_000)) < 60_000, "the default validity is a day")
            // Signed by both active keys: the daemon's own VERIFY_JSON agrees.
            let verdict = try client.verifyJSON(VerifyJSONParams(server: "keys.example", keys: [], json: other))
            #expect(verdict.isValid)
            #expect(verdict.outcomes.filter { $0.outcome == .valid }.map(\.id).sorted() == ["ed25519:2", "ed25519:e5d0oC"])
        }

        @Test("STATS counters move with traffic")
        func stats() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let client = daemon.client()
            let before = try statsObject(client)
            for _ in 0..<3 { _ = try client.ping([1]) }
            _ = try? client.signRequest(origin: "nowhere.example", destination: "x", uri: "/")
            _ = try client.signRequests([
                SignRequestParams(origin: "domain", destination: "example.org", uri: "/a"),
                SignRequestParams(origin: "domain", destination: "example.org", uri: "/b"),
            ])
            let after = try statsObject(client)
            #expect(after.int("requests", "ping", "count")! - before.int("requests", "ping", "count")! == 3)
            #expect(after.int("requests", "sign_request", "count")! - before.int("requests", "sign_request", "count")! == 3)
            #expect(after.int("requests", "sign_request", "errors")! - before.int("requests", "sign_request", "errors")! == 1)
            #expect(after.int("requests_total")! >= before.int("requests_total")! + 7)
            #expect(after.int("bytes_in")! > before.int("bytes_in")!)
            #expect(after.int("bytes_out")! > before.int("bytes_out")!)
            #expect(after.int("connections", "open")! >= 1)
            #expect(after.int("connections", "total")! >= 1)
            #expect(after.int("config_generation") == 1)
            #expect(after.int("rss_bytes")! > 0)
            #expect(after.int("uptime_ms")! >= before.int("uptime_ms")!)
            #expect((after["keys"] as? [String: Any]).map { Set($0.keys) } == ["domain", "keys.example"])
        }
    }
}
