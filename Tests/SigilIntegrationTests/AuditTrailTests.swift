import Foundation
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// The audit trail (issue 12): off by default; one record per signature and per refused signing
/// request, as JSON lines or journal entries; every signature accounted for as written or
/// dropped; reopened on SIGHUP for logrotate.
extension DaemonEndToEnd {
    @Suite("audit trail")
    struct AuditTrail {
        static func config(_ audit: String, access: String = "") -> String {
            """
            listen:
              - name: main
                path: {dir}/s.sock
            servers:
              domain:
                keys: [{dir}/spec.key]
            \(access)
            \(audit)
            """
        }

        static func records(_ path: String) -> [[String: Any]] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
            return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }

        @Test("off unless configured: no records anywhere, STATS says disabled")
        func offByDefault() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            _ = try daemon.client().signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            let stats = try statsObject(daemon.client())
            #expect((stats["audit"] as? [String: Any])?["enabled"] as? Bool == false)
            #expect(try FileManager.default.contentsOfDirectory(atPath: daemon.directory.path).allSatisfy { !$0.contains("audit") })
        }

        @Test("a record per signature and per refused signing request, with who, what, where and the outcome")
        func recordFields() throws {
            let daemon = try DaemonFixture(
                config: Self.config(
                    "audit:\n  file: {dir}/audit.jsonl",
                    access: """
                        access:
                          - uid: \(getuid())
                            operations: [sign_request, sign_json, stats]
                            uri_prefixes: [/_matrix/federation/v1/media/]
                        """),
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let client = daemon.client()
            _ = try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            _ = try client.signJSON(server: "domain", json: Array(SpecVectors.jsonObject.utf8))
            #expect(throws: SigilClientError.self) {
                try client.signRequest(origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/send/1")
            }
            let path = daemon.directory.file("audit.jsonl")
            #expect(eventually(timeout: 5) { Self.records(path).count == 3 }, "\(Self.records(path))")
            let records = Self.records(path)
            let signed = try #require(records.first { $0["op"] as? String == "sign_request" && $0["outcome"] as? String == "ok" })
            #expect(
                signed["uid"] as? Int == Int(getuid()) && signed["gid"] as? Int == Int(getgid()) && signed["pid"] as? Int == Int(getpid()))
            #expect(signed["listener"] as? String == "main")
            #expect(signed["server"] as? String == "domain" && signed["key_id"] as? String == "ed25519:1")
            #expect(signed["method"] as? String == "GET" && signed["destination"] as? String == "example.org")
            #expect(signed["uri"] as? String == SpecVectors.mediaURI)
            let now = Int(Date().timeIntervalSince1970 * 1000)
            #expect(abs((signed["ts"] as? Int ?? 0) - now) < 60_000)
            #expect((signed["time"] as? String)?.hasSuffix("Z") == true)
            let json = try #require(records.first { $0["op"] as? String == "sign_json" })
            #expect(json["outcome"] as? String == "ok" && json["uri"] == nil)
            let denied = try #require(records.first { $0["outcome"] as? String == "denied" })
            #expect(denied["uri"] as? String == "/_matrix/federation/v1/send/1")
            // Nothing but public data: no key bytes.
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(!text.contains(TestKeys.specSeed) && !text.contains(String(TestKeys.specSeed.prefix(12))))
        }

        @Test("uri: digest records the uri's SHA-256, not the uri")
        func digest() throws {
            let daemon = try DaemonFixture(
                config: Self.config("audit:\n  file: {dir}/audit.jsonl\n  uri: digest"), files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            _ = try daemon.client().signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            let path = daemon.directory.file("audit.jsonl")
            #expect(eventually(timeout: 5) { Self.records(path).count == 1 })
            let record = try #require(Self.records(path).first)
            #expect(record["uri"] == nil)
            let expected = Array(SpecVectors.mediaURI.utf8).withUnsafeBytes { SHA256.hex($0) }
            #expect(record["uri_sha256"] as? String == expected)
        }

        @Test("100,000 signatures: each is a record, or counted as dropped; STATS reports both")
        func everySignatureAccountedFor() throws {
            let daemon = try DaemonFixture(
                config: Self.config("audit:\n  file: {dir}/audit.jsonl\n  queue: 4096"), files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let connection = try SigilConnection(path: daemon.socketPath)
            defer { connection.close() }
            let request = Request.signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI))
            let batch = Array(repeating: request, count: 250)
            var signed = 0
            for _ in 0..<400 {
                for result in try connection.sendBatch(batch, timeout: 60) where (try? result.get()) != nil { signed += 1 }
            }
            #expect(signed == 100_000)
            let path = daemon.directory.file("audit.jsonl")
            var figures: (records: Int, dropped: Int) = (0, 0)
            #expect(
                eventually(timeout: 20) {
                    guard let stats = try? statsObject(daemon.client()), let audit = stats["audit"] as? [String: Any] else { return false }
                    figures = (audit["records"] as? Int ?? 0, audit["dropped"] as? Int ?? 0)
                    return figures.records + figures.dropped == signed
                }, "records \(figures.records) + dropped \(figures.dropped) != \(signed)")
            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count
            #expect(lines == figures.records, "\(lines) lines, STATS says \(figures.records) written")
        }

        @Test("SIGHUP reopens the file: after logrotate moves it, records go to a new one")
        func reopen() throws {
            let daemon = try DaemonFixture(
                config: Self.config("audit:\n  file: {dir}/audit.jsonl"), files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let client = daemon.client()
            let path = daemon.directory.file("audit.jsonl")
            _ = try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            #expect(eventually(timeout: 5) { Self.records(path).count == 1 })
            #expect(rename(path, path + ".1") == 0)
            daemon.signal(SIGHUP)
            #expect(daemon.waitForLog("audit: reopened"), "\(daemon.log)")
            _ = try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI + "x")
            #expect(eventually(timeout: 5) { Self.records(path).count == 1 })
            #expect(Self.records(path + ".1").count == 1)
            #expect(Self.records(path).first?["uri"] as? String == SpecVectors.mediaURI + "x")
        }

        @Test("journal: true sends one entry per record, with the fields to search by")
        func journal() throws {
            let scratch = TemporaryDirectory()
            let journal = try NotifyReceiver(address: scratch.file("journal.sock"))
            defer { journal.close() }
            let daemon = try DaemonFixture(
                config: Self.config("audit:\n  journal: true\n  journal_socket: \(journal.address)"),
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            _ = try daemon.client().signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            #expect(journal.wait(timeout: 5) { $0.contains { $0.contains("SIGIL_AUDIT=1") } }, "\(journal.messages)")
            let entry = try #require(journal.messages.first { $0.contains("SIGIL_AUDIT=1") }).notifyFields
            #expect(entry["SYSLOG_IDENTIFIER"] == "sigild-audit")
            #expect(entry["SIGIL_UID"] == "\(getuid())" && entry["SIGIL_OP"] == "sign_request" && entry["SIGIL_OUTCOME"] == "ok")
            #expect(entry["SIGIL_URI"] == SpecVectors.mediaURI && entry["SIGIL_SERVER"] == "domain" && entry["SIGIL_KEY_ID"] == "ed25519:1")
            #expect(entry["MESSAGE"]?.hasPrefix("{") == true)
        }

        @Test("an audit file that cannot be opened stops the start, naming it")
        func unopenable() throws {
            let daemon = try DaemonFixture(
                config: Self.config("audit:\n  file: /nonexistent-directory/audit.jsonl"), files: ["spec.key": TestKeys.specSynapseFile],
                waitForReady: false)
            defer { daemon.stop() }
            #expect(daemon.waitForExit(timeout: 10) == 1)
            #expect(daemon.log.contains("audit: open(/nonexistent-directory): No such file or directory"), "\(daemon.log)")
        }
    }
}
