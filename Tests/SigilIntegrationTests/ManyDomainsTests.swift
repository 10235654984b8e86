import Foundation
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// One sigild for ten thousand domains (issue 11): a key directory whose file names give the
/// server names, per-domain loading and reloading, rules with patterns, and replies that stay
/// within max_frame whatever the number of servers.
extension DaemonEndToEnd {
    @Suite("many domains")
    struct ManyDomains {
        static let count = 10_000

        /// Fresh keys for `count` servers: their files in `directory/keys`, and their public keys.
        static func makeKeys(_ directory: TemporaryDirectory, count: Int, from first: Int = 0) throws -> [String: PublicKey] {
            let keys = directory.file("keys")
            mkdir(keys, 0o700)
            var builder = try KeyArena.Builder(capacity: count, lockPolicy: .warn)
            let made = (first..<(first + count)).map { index in ("d\(index).example", builder.addRandom()) }
            let arena = builder.finish()
            var publicKeys: [String: PublicKey] = [:]
            for (name, (slot, publicKey)) in made {
                let key = SigningKey(id: KeyID(version: "k")!, publicKey: publicKey, arena: arena, slot: slot)
                try KeyFileIO.write(
                    try KeyFileWriter.encode([key], format: .synapse, lockPolicy: .warn), to: "\(keys)/\(name).key", durable: false)
                publicKeys[name] = publicKey
            }
            return publicKeys
        }

        static let config = """
            listen:
              - name: main
                path: {dir}/s.sock
                access:
                  - uid: \(getuid())
                    operations: [hello, ping, list_keys, sign_request, stats]
                    servers: ["*.example"]
            key_directories:
              - path: {dir}/keys
                pattern: "*.key"
            log_level: info
            """

        static func sign(_ client: SigilClient, _ names: [String]) throws -> [String: SignedRequest] {
            var signed: [String: SignedRequest] = [:]
            let connection = try client.connected()
            for chunk in stride(from: 0, to: names.count, by: 250) {
                let slice = Array(names[chunk..<min(chunk + 250, names.count)])
                let results = try connection.sendBatch(
                    slice.map { .signRequest(SignRequestParams(origin: $0, destination: "matrix.org", uri: SpecVectors.mediaURI)) },
                    timeout: 60)
                for (name, result) in zip(slice, results) {
                    if case .success(.signedRequest(let request)) = result { signed[name] = request }
                }
            }
            return signed
        }

        static func message(_ origin: String) -> [UInt8] {
            Array(#"{"destination":"matrix.org","method":"GET","origin":"\#(origin)","uri":"\#(SpecVectors.mediaURI)"}"#.utf8)
        }

        @Test(
            "10,000 servers from a key directory: each signs with its own key; replies stay within max_frame; a reload adding and removing one domain changes only those"
        )
        func tenThousand() throws {
            let directory = TemporaryDirectory()
            var keys = try Self.makeKeys(directory, count: Self.count)
            let daemon = try DaemonFixture(config: Self.config, directory: directory, readyTimeout: 120)
            defer { daemon.stop() }
            let client = daemon.client(timeout: 60)
            defer { client.close() }

            // Every server signs with its own key.
            let names = keys.keys.sorted()
            let signed = try Self.sign(client, names)
            #expect(signed.count == Self.count)
            let wrong = names.filter { name in
                guard let request = signed[name] else { return true }
                return !keys[name]!.verify(signature: request.signature.bytes, message: Self.message(name))
            }
            #expect(wrong.isEmpty, "\(wrong.count) servers did not sign with their own key: \(wrong.prefix(3))")

            // Replies within max_frame (64 KiB here), whatever the count.
            let raw = try RawSocket(path: daemon.socketPath)
            for (id, request) in [Request.hello(clientName: ""), .hello(clientName: "", page: HelloPage()), .listKeys(cursor: ""), .stats]
                .enumerated()
            {
                try raw.send(frameBytes(request, id: UInt32(id)))
                let frame = try #require(try raw.readFrame())
                #expect(frame.header.status == 0, "\(request.opcode)")
                #expect(frame.body.count + 8 <= 65536, "\(request.opcode): \(frame.body.count + 8) bytes")
            }
            // The unpaged LIST_KEYS cannot fit: refused, saying how to page.
            try raw.send(frameBytes(.listKeys(), id: 9))
            let refused = try #require(try raw.readFrame())
            #expect(refused.header.status == WireStatus.badRequest.rawValue)
            #expect(refused.body.withUnsafeBytes { WireFailure.decode(status: .badRequest, body: $0).message }.contains("cursor"))
            // HELLO pages through every server; LIST_KEYS too (SigilClient pages).
            var helloNames: [String] = []
            var cursor = ""
            var total: UInt32 = 0
            repeat {
                let page = try client.hello(cursor: cursor)
                helloNames += page.servers
                total = page.page?.serverTotal ?? 0
                cursor = page.page?.nextCursor ?? ""
            } while !cursor.isEmpty
            #expect(helloNames == names, "HELLO's pages: \(helloNames.count) names")
            #expect(total == UInt32(Self.count))
            let listing = try client.listKeys()
            #expect(listing.servers.count == Self.count)
            #expect(listing.servers.allSatisfy { $0.keys.first?.publicKey == keys[$0.name] })
            let stats = try statsObject(client)
            #expect(stats.int("server_count") == Self.count && stats["keys"] == nil)

            // Add one domain and remove another, then SIGHUP.
            let added = try Self.makeKeys(directory, count: 1, from: Self.count)
            let removed = "d7.example"
            unlink(directory.file("keys/\(removed).key"))
            daemon.signal(SIGHUP)
            #expect(daemon.waitForReady(count: 2, timeout: 120), "\(daemon.log)")
            keys.merge(added) { $1 }
            keys[removed] = nil
            let after = try client.listKeys()
            #expect(after.servers.count == Self.count)
            #expect(after.servers.contains { $0.name == "d10000.example" } && !after.servers.contains { $0.name == removed })
            #expect(after.servers.allSatisfy { $0.keys.first?.publicKey == keys[$0.name] }, "a reload changed other domains' keys")
            let newSignature = try client.signRequest(origin: "d10000.example", destination: "matrix.org", uri: SpecVectors.mediaURI)
            #expect(keys["d10000.example"]!.verify(signature: newSignature.signature.bytes, message: Self.message("d10000.example")))
            do {
                _ = try client.signRequest(origin: removed, destination: "matrix.org", uri: SpecVectors.mediaURI)
                Issue.record("the removed domain still signs")
            } catch {
                #expect(error.status == .unknownServer, "\(error)")
            }
        }

        @Test("a bad key file for one domain is reported by name; the others load, and on a reload it keeps the keys it had")
        func oneBadFile() throws {
            let directory = TemporaryDirectory()
            let keys = try Self.makeKeys(directory, count: 50)
            // One unreadable at start: reported, left out.
            directory.write("keys/broken.example.key", "ed25519 k tooShort\n")
            let daemon = try DaemonFixture(config: Self.config, directory: directory)
            defer { daemon.stop() }
            #expect(daemon.log.contains("server broken.example:") && daemon.log.contains("broken.example.key"), "\(daemon.log)")
            #expect(daemon.log.contains("it is not served"), "\(daemon.log)")
            let client = daemon.client()
            #expect(try client.listKeys().servers.count == 50)
            // A good domain's file goes bad: the reload reports it, and the domain keeps its key.
            directory.write("keys/d3.example.key", "not a key file\n")
            daemon.signal(SIGHUP)
            #expect(daemon.waitForReady(count: 2), "\(daemon.log)")
            #expect(
                daemon.log.contains("d3.example.key") && daemon.log.contains("it keeps the keys it had before this reload"), "\(daemon.log)"
            )
            let kept = try client.signRequest(origin: "d3.example", destination: "matrix.org", uri: SpecVectors.mediaURI)
            #expect(keys["d3.example"]!.verify(signature: kept.signature.bytes, message: Self.message("d3.example")))
            // --check-config says what it found.
            let check = try run(Binaries.path("sigild"), ["--check-config", daemon.directory.file("sigild.yaml")])
            #expect(check.status == 0, "\(check.output)")
            #expect(
                check.stdout.contains("key directory \(directory.file("keys")) (*.key): 49 server(s) loaded, 2 skipped"), "\(check.output)")
            #expect(check.stdout.contains("49 server(s)"), "\(check.output)")
        }

        @Test("--check-config: when every key file fails it names each reason; a uri prefix without a trailing '/' is warned about")
        func checkConfigExplains() throws {
            let directory = TemporaryDirectory()
            let keys = directory.file("keys")
            mkdir(keys, 0o700)
            directory.write("keys/a.example.key", "ed25519 k not-base64\n")
            directory.write("keys/b.example.key", "ed25519 k YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n", mode: 0o644)
            let config = directory.write(
                "sigild.yaml",
                """
                listen:
                  - name: main
                    path: \(directory.file("s.sock"))
                key_directories:
                  - path: \(keys)
                """)
            let failed = try run(Binaries.path("sigild"), ["--check-config", config])
            #expect(failed.status != 0)
            #expect(failed.output.contains("every key file failed to load: server a.example"), "\(failed.output)")
            #expect(failed.output.contains("server b.example"), "\(failed.output)")
            chmod(directory.file("keys/b.example.key"), 0o600)
            let open = directory.write(
                "open.yaml",
                """
                listen:
                  - name: main
                    path: \(directory.file("s.sock"))
                key_directories:
                  - path: \(keys)
                access:
                  - uid: 0
                    operations: [sign_request]
                    uri_prefixes: [/_matrix/federation/v1/media]
                """)
            let warned = try run(Binaries.path("sigild"), ["--check-config", open])
            #expect(warned.status == 0, "\(warned.output)")
            #expect(warned.output.contains("uri_prefixes entry /_matrix/federation/v1/media does not end in '/'"), "\(warned.output)")
        }

        @Test("HELLO and LIST_KEYS show a caller exactly the servers its rules name, out of 2,000, by name or by pattern")
        func visibility() throws {
            let directory = TemporaryDirectory()
            _ = try Self.makeKeys(directory, count: 2000)
            let config = """
                listen:
                  - name: one
                    path: {dir}/one.sock
                    access:
                      - uid: \(getuid())
                        operations: [sign_request, list_keys]
                        servers: [d5.example, not-loaded.example]
                  - name: some
                    path: {dir}/s.sock
                    access:
                      - uid: \(getuid())
                        operations: [sign_request]
                        servers: ["*.example"]
                      - uid: \(getuid())
                        operations: [list_keys]
                        servers: [d7.example, d1999.example]
                key_directories:
                  - path: {dir}/keys
                """
            let daemon = try DaemonFixture(config: config, directory: directory, readyTimeout: 120)
            defer { daemon.stop() }
            let one = SigilClient(socketPath: directory.file("one.sock"), timeout: 30)
            defer { one.close() }
            let hello = try one.hello(cursor: "")
            #expect(hello.servers == ["d5.example"] && hello.page?.serverTotal == 1 && hello.page?.nextCursor == "")
            #expect(try one.listKeys().servers.map(\.name) == ["d5.example"])
            let some = daemon.client(timeout: 30)
            defer { some.close() }
            var names: [String] = []
            var cursor = ""
            repeat {
                let page = try some.hello(cursor: cursor)
                #expect(page.page?.serverTotal == 2000)
                names += page.servers
                cursor = page.page?.nextCursor ?? ""
            } while !cursor.isEmpty
            #expect(names.count == 2000 && names == names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
            #expect(try some.listKeys().servers.map(\.name) == ["d1999.example", "d7.example"])
        }
    }
}
