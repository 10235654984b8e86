import Foundation
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// Regressions for what a security review of the daemon found: each attack here once crashed
/// sigild, held unbounded memory, starved other clients, forged log lines, widened a socket's
/// rules on reload, or got a long-lived key document signed.
extension DaemonEndToEnd {
    @Suite("review regressions")
    struct ReviewRegressions {
        static func batch(_ request: Request, count: Int, id: UInt32) -> [UInt8] {
            var writer = WireWriter()
            Request.encodeBatch(Array(repeating: request, count: count), requestID: id, into: &writer)
            return writer.bytes
        }

        @Test("refused items in many offloaded batches are counted, not compounded: the daemon survives and the log sums them")
        func refusalCountsDoNotCompound() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    access:
                      - uid: \(getuid())
                        operations: [sign_request, stats]
                        uri_prefixes: [/_matrix/federation/v1/media/]
                    limits:
                      offload_batch_items: 16
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let outside = Request.signRequest(
                SignRequestParams(origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/send/1"))
            let socket = try RawSocket(path: daemon.socketPath)
            let batches = 100
            for id in 1...batches {
                try socket.send(Self.batch(outside, count: 16, id: UInt32(id)))
                let frame = try #require(try socket.readFrame(), "no answer to batch \(id)")
                #expect(frame.header.status == 0)
            }
            let client = daemon.client()
            #expect(try statsObject(client).int("denied") == batches * 16)
            // The window's summary accounts for everything not logged one by one.
            _ = consume socket
            #expect(daemon.waitForLog("refused \(batches * 16 - 5) more time(s) for uid \(getuid())", timeout: 15), "\(daemon.log)")
        }

        @Test("one client flooding large batches neither starves another client's batch nor holds unbounded memory")
        func batchFloodIsBounded() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    workers: 1
                    limits:
                      max_in_flight: 1024
                      max_pending_output: 256KiB
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let message = SpecVectors.requestJSON(uri: SpecVectors.mediaURI)
            let signature = Base64.decode(SpecVectors.mediaSignature)!
            let verify = Request.verify(VerifyParams(key: .publicKey(SpecVectors.publicKey), message: message, signature: signature))
            let before = try statsObject(daemon.client()).int("rss_bytes") ?? 0
            // The flooder: 300 batches of 256 verifications (about 3.5 s of crypto), never read.
            let flooder = try RawSocket(path: daemon.socketPath)
            let flood = Self.batch(verify, count: 256, id: 1)
            let fd = flooder.fd
            let sender = Thread {
                for _ in 0..<300 {
                    if (try? flood.withUnsafeBytes({ try Posix.sendAll(fd, $0) })) == nil { break }
                }
            }
            sender.start()
            usleep(200_000)
            // Another client's batch still goes through promptly.
            let other = try SigilConnection(path: daemon.socketPath)
            defer { other.close() }
            let start = Date()
            let answers = try other.sendBatch(Array(repeating: verify, count: 16), timeout: 10)
            let waited = Date().timeIntervalSince(start)
            #expect(answers.count == 16)
            #expect(answers.allSatisfy { (try? $0.get()) == .verified(true) })
            #expect(waited < 1.5, "another client's batch waited \(waited) s behind the flood")
            let during = try statsObject(daemon.client()).int("rss_bytes") ?? 0
            #expect(during - before < 64 << 20, "RSS grew by \(during - before) bytes under the flood")
            withExtendedLifetime(flooder) {}
        }

        @Test("a client that reads none of its replies is closed after write_timeout")
        func stalledReaderIsClosed() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    limits:
                      max_pending_output: 64KiB
                      write_timeout: 1s
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let staller = try RawSocket(path: daemon.socketPath)
            let ping = frameBytes(.ping(payload: [UInt8](repeating: 7, count: 4000)), id: 1)
            // Enough pings to fill the socket buffers both ways and the daemon's queue.
            for _ in 0..<2000 { if (try? staller.send(ping)) == nil { break } }
            #expect(daemon.waitForLog("it has read none of its replies for 1000 ms", timeout: 10), "\(daemon.log)")
            #expect(try daemon.client().ping([1]) == [1])
        }

        @Test("CR and LF in client data cannot forge log lines")
        func logForging() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let client = daemon.client()
            // The origin is refused (not a configured server name); it is quoted in the refusal.
            let forged = "x\r\n<0>FORGED entry\nFORGED too"
            _ = try? client.signJSON(server: forged, json: Array("{}".utf8))
            #expect(daemon.waitForLog("refused sign_json"))
            for line in daemon.log.split(separator: "\n", omittingEmptySubsequences: false) {
                #expect(!line.hasPrefix("<0>") && !line.hasPrefix("FORGED"), "forged log line: \(line)")
            }
        }

        @Test("KEY_DOCUMENT never signs beyond the configured validity")
        func keyDocumentValidityIsClamped() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let document = try daemon.client().keyDocument(server: "domain", validUntilTS: UInt64(canonicalJSONMaxInteger))
            let until = try #require(try JSONValue(parsing: document).objectValue?["valid_until_ts"]?.integerValue)
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            #expect(until <= now + 86_400_000 + 60_000, "valid_until_ts \(until) is beyond a day from now")
            #expect(until > now)
        }

        @Test("a huge duplicated JSON key in VERIFY_REQUEST content is answered, with a short detail")
        func hugeDetailIsTruncated() throws {
            let daemon = try DaemonFixture.quickStart(limits: "  max_frame: 1MiB")
            defer { daemon.stop() }
            let key = String(repeating: "k", count: 100_000)
            let content = Array("{\"\(key)\":1,\"\(key)\":2}".utf8)
            let result = try daemon.client().verifyRequest(
                VerifyRequestParams(
                    authorizations: [SpecVectors.mediaHeader], method: "PUT", uri: "/_matrix/federation/v1/send/1",
                    destination: "example.org",
                    content: content, keys: []))
            #expect(result.verdict == .invalidContent)
            #expect(result.detail.utf8.count <= 1024)
            #expect(try daemon.client().ping([1]) == [1])
        }

        @Test("a reload that drops a listener serving a socket is refused; its rules stay")
        func reloadCannotDropAListener() throws {
            let directory = TemporaryDirectory()
            let config = """
                listen:
                  - name: main
                    path: {dir}/s.sock
                    access:
                      - uid: \(getuid())
                        operations: [ping, stats]
                servers:
                  domain:
                    keys: [{dir}/spec.key]
                access:
                  - uid: \(getuid())
                    operations: [ping, stats, sign_raw]
                """
            let daemon = try DaemonFixture(config: config, files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            let client = daemon.client()
            #expect(throws: SigilClientError.self) { _ = try client.signRaw(server: "domain", message: [1]) }
            // Rename the listener: its socket would fall back to the top-level rules (sign_raw).
            directory.write(
                "sigild.yaml",
                config.replacingOccurrences(of: "name: main", with: "name: renamed").replacingOccurrences(
                    of: "{dir}", with: directory.path), mode: 0o644)
            daemon.signal(SIGHUP)
            #expect(daemon.waitForLog("removing or renaming a listener needs a restart"), "\(daemon.log)")
            let denied = Result { try client.signRaw(server: "domain", message: [1]) }
            guard case .failure(let error) = denied, let clientError = error as? SigilClientError else {
                Issue.record("sign_raw was granted after the reload")
                return
            }
            #expect(clientError.status == .denied)
        }
    }
}
