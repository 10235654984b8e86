import Foundation
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// What docs/PROTOCOL.md promises, point by point, against the real daemon (issue 14: a client
/// written from the document alone found where they disagreed and where the document was
/// silent).
extension DaemonEndToEnd {
    @Suite("protocol promises")
    struct ProtocolPromises {
        static func daemon(limits: String = "", extra: String = "") throws -> DaemonFixture {
            try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                        retired:
                          - { id: "ed25519:old", key: "\(TestKeys.mmrPublicKey)", expired_ts: 1600000000000 }
                    access:
                      - uid: \(getuid())
                        operations: [hello, ping, list_keys, sign_request, sign_json, sign_raw, verify, verify_json, verify_request, key_document, stats]
                    \(extra)
                    limits:
                      frame_timeout: 5s
                    \(limits)
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
        }

        static func largeBatch(_ id: UInt32, items: Int = 16) -> [UInt8] {
            var writer = WireWriter()
            let item = Request.signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI))
            Request.encodeBatch(Array(repeating: item, count: items), requestID: id, into: &writer)
            return writer.bytes
        }

        @Test(
            "with the default limits the advertised max_in_flight is the one enforced: the 17th large batch gets BUSY, PINGs and single signatures never do"
        )
        func advertisedInFlightIsEffective() throws {
            let daemon = try Self.daemon(extra: "workers: 1")
            defer { daemon.stop() }
            let hello = try daemon.client().hello()
            #expect(hello.maxInFlight == 16)
            let socket = try RawSocket(path: daemon.socketPath)
            // 40 large batches, then PINGs and single requests, in one write.
            var bytes: [UInt8] = []
            for id in 1...40 { bytes += Self.largeBatch(UInt32(id)) }
            for id in 41...60 {
                bytes += frameBytes(
                    id % 2 == 0
                        ? .ping(payload: [1])
                        : .signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)),
                    id: UInt32(id))
            }
            try socket.send(bytes)
            var busy: Set<UInt32> = []
            var answered: Set<UInt32> = []
            for _ in 0..<60 {
                let frame = try #require(try socket.readFrame())
                if frame.header.status == WireStatus.busy.rawValue {
                    busy.insert(frame.header.requestID)
                } else {
                    answered.insert(frame.header.requestID)
                }
            }
            #expect(!busy.isEmpty, "no BUSY with 40 large batches and max_in_flight 16")
            #expect(busy.allSatisfy { $0 <= 40 }, "small requests got BUSY: \(busy.filter { $0 > 40 }.sorted())")
            #expect(answered.count >= 16 + 20)
        }

        @Test("HELLO tells the truth for its connection: a reload raising max_frame applies to new connections, and HELLO says so on each")
        func helloAfterReload() throws {
            let daemon = try Self.daemon(limits: "  max_frame: 64KiB")
            defer { daemon.stop() }
            let old = daemon.client()
            #expect(try old.hello().maxFrameLength == 65536)
            let configPath = daemon.directory.file("sigild.yaml")
            let text = try String(contentsOfFile: configPath, encoding: .utf8).replacingOccurrences(
                of: "max_frame: 64KiB", with: "max_frame: 1MiB")
            daemon.directory.write("sigild.yaml", text, mode: 0o644)
            daemon.signal(SIGHUP)
            #expect(daemon.waitForReady(count: 2))
            #expect(try old.hello().maxFrameLength == 65536, "the old connection still lives under 64 KiB")
            let fresh = daemon.client()
            #expect(try fresh.hello().maxFrameLength == 1 << 20)
            let payload = [UInt8](repeating: 7, count: 100_000)
            #expect(try fresh.ping(payload) == payload)
            do {
                _ = try old.ping(payload)
                Issue.record("the old connection took a frame over the limit HELLO gave it")
            } catch {
                #expect(error.status == .frameTooLarge, "\(error)")
            }
        }

        @Test("KEY_DOCUMENT caps valid_until_ts at key_document_validity from now; 0 asks for the cap; a past time is signed as given")
        func keyDocumentValidity() throws {
            let daemon = try Self.daemon()
            defer { daemon.stop() }
            let client = daemon.client()
            func until(_ asked: UInt64) throws -> Int64 {
                let document = try client.keyDocument(server: "domain", validUntilTS: asked)
                return try JSONValue(parsing: document).objectValue?["valid_until_ts"]?.integerValue ?? -1
            }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let day: Int64 = 86_400_000
            #expect(abs(try until(0) - (now + day)) < 60_000)
            #expect(abs(try until(UInt64(now + 30 * day)) - (now + day)) < 60_000, "not capped")
            #expect(try until(UInt64(now + 3_600_000)) == now + 3_600_000)
            #expect(try until(1) == 1, "a past time is signed as given")
        }

        @Test("HELLO's body is a string: a zero-length name is two zero bytes; an empty body is BAD_REQUEST")
        func helloBody() throws {
            let daemon = try Self.daemon()
            defer { daemon.stop() }
            let socket = try RawSocket(path: daemon.socketPath)
            try socket.send(rawFrame(opcode: 0x01, id: 1, body: []))
            #expect(try socket.readFrame()?.header.status == WireStatus.badRequest.rawValue)
            try socket.send(rawFrame(opcode: 0x01, id: 2, body: [0, 0]))
            #expect(try socket.readFrame()?.header.status == 0)
        }

        @Test("SIGN_REQUEST's fields are checked against their grammar, in order, and the first wrong one is named")
        func signRequestGrammar() throws {
            let daemon = try Self.daemon()
            defer { daemon.stop() }
            let client = daemon.client()
            let cases: [(SignRequestParams, String)] = [
                (SignRequestParams(origin: "do main", destination: "x y", uri: "/x"), "origin is not a valid Matrix server name"),
                (
                    SignRequestParams(origin: "domain", destination: "exa mple.org", uri: "/x"),
                    "destination is not a valid Matrix server name"
                ),
                (
                    SignRequestParams(origin: "domain", destination: "example.org", method: "GE T", uri: "/x"),
                    "method must be an HTTP token"
                ),
                (SignRequestParams(origin: "domain", destination: "example.org", uri: "x"), "uri must be the request target"),
                (SignRequestParams(origin: "domain", destination: "example.org", uri: "/a b"), "uri must be the request target"),
                (SignRequestParams(origin: "domain", destination: "example.org", uri: "/a#b"), "uri must be the request target"),
                (SignRequestParams(origin: "domain", destination: "example.org", uri: "/é"), "uri must be the request target"),
                (
                    SignRequestParams(
                        origin: "domain", destination: "example.org", method: "PUT", uri: "/x", content: Array("{\"a\":1.5}".utf8)),
                    "content is not valid JSON"
                ),
            ]
            for (params, message) in cases {
                do {
                    _ = try client.signRequest(
                        origin: params.origin, destination: params.destination, method: params.method, uri: params.uri,
                        content: params.content)
                    Issue.record("signed: \(params)")
                } catch {
                    guard case .rejected(let failure) = error else {
                        Issue.record("\(error)")
                        continue
                    }
                    #expect(failure.message.contains(message), "\(failure.message)")
                    #expect(failure.status == (message.hasPrefix("content") ? .invalidJSON : .badRequest))
                }
            }
        }

        @Test("SIGN_RAW signs with active keys only: a retired key's ID is UNKNOWN_KEY")
        func signRawActiveOnly() throws {
            let daemon = try Self.daemon()
            defer { daemon.stop() }
            let client = daemon.client()
            #expect(try client.signRaw(server: "domain", keyID: "ed25519:1", message: [1]).keyID.description == "ed25519:1")
            do {
                _ = try client.signRaw(server: "domain", keyID: "ed25519:old", message: [1])
                Issue.record("a retired key signed")
            } catch {
                #expect(error.status == .unknownKey)
            }
        }

        @Test("max_json_depth: SIGN_JSON takes objects 300 levels deep by default, and refuses one level over a configured limit")
        func jsonDepth() throws {
            func nested(_ depth: Int) -> [UInt8] {
                Array((String(repeating: "{\"a\":", count: depth - 1) + "{}" + String(repeating: "}", count: depth - 1)).utf8)
            }
            let daemon = try Self.daemon()
            defer { daemon.stop() }
            let signed = try daemon.client().signJSON(server: "domain", json: nested(300))
            #expect(signed.count > 300 * 5)
            let shallow = try Self.daemon(limits: "  max_json_depth: 10")
            defer { shallow.stop() }
            #expect((try? shallow.client().signJSON(server: "domain", json: nested(9))) != nil)
            do {
                _ = try shallow.client().signJSON(server: "domain", json: nested(12))
                Issue.record("12 levels signed with max_json_depth 10")
            } catch {
                #expect(error.status == .invalidJSON, "\(error)")
            }
        }

        @Test("STATS: per-operation counts count batch items; key_count is active keys; in_flight and the listener section are there")
        func statsMeanings() throws {
            let daemon = try Self.daemon()
            defer { daemon.stop() }
            let client = daemon.client()
            let connection = try SigilConnection(path: daemon.socketPath)
            defer { connection.close() }
            let request = Request.signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI))
            _ = try connection.sendBatch(Array(repeating: request, count: 5))
            let stats = try statsObject(client)
            #expect(stats.int("requests", "sign_request", "count") == 5)
            #expect(stats.int("key_count") == 1 && stats.int("retired_key_count") == 1 && stats.int("server_count") == 1)
            #expect(stats.int("in_flight") == 0)
            #expect(stats.int("listeners", "main", "requests", "sign_request", "count") == 5)
            let latency = try #require(stats["latency_us"] as? [String: Any])
            #expect((latency["bounds"] as? [Int])?.first == 5)
            #expect(
                ((latency["ops"] as? [String: Any])?["sign_request"] as? [String: Any])?["count"] as? Int == 1, "a batch frame counts once")
        }

        @Test(
            "quick start under socket activation: sigild --key without --socket serves the inherited socket",
            .enabled(if: ActivatedDaemon.socketActivate != nil, "systemd-socket-activate is not installed"))
        func quickStartSocketActivated() throws {
            let directory = TemporaryDirectory()
            let key = directory.write("spec.key", TestKeys.specSynapseFile)
            let socket = directory.file("s.sock")
            let daemon = try ActivatedDaemon(
                config: "", sockets: [(socket, "sigild")], arguments: ["--key", "domain=\(key)", "--memory-lock", "warn"],
                directory: directory)
            defer { daemon.stop() }
            let signed = try SigilClient(socketPath: socket, timeout: 10).signRequest(
                origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            #expect(signed.header == SpecVectors.mediaHeader)
            #expect(daemon.log.contains("sigild=systemd fd 3"), "\(daemon.log)")
        }
    }
}
