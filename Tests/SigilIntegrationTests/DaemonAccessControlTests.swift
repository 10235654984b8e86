import SigilTestSupport
import Foundation
import SigilClient
import SigilCore
import Testing

/// Access rules against real peer credentials: the default (only the daemon's own uid), the
/// operations that need a grant by name, and sign_request's servers, methods and uri prefixes.
/// Refusals are logged with the caller's uid and pid, a few per uid per window; the rest in one
/// summary line per uid when the window (10 s) ends.
extension DaemonEndToEnd {
    @Suite("access control")
    struct AccessControl {
        static var canSwitchUsers: Bool { Privileges.isRoot && Privileges.hasSetpriv }

        /// Expects `body` to be refused with DENIED.
        static func expectDenied(_ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
            do {
                try body()
                Issue.record("\(what) was allowed", sourceLocation: sourceLocation)
            } catch {
                #expect((error as? SigilClientError)?.status == .denied, "\(what): \(error)", sourceLocation: sourceLocation)
            }
        }

        static func refusalLines(_ log: String, uid: UInt32, pid: Int32? = nil) -> [Substring] {
            // "refused OPERATION for uid U gid G pid P on listener L: why"
            let pattern = "refused [a-z_]+ for uid \(uid) gid [0-9]+ pid \(pid.map(String.init) ?? "[0-9]+") "
            return log.split(separator: "\n").filter { $0.range(of: pattern, options: .regularExpression) != nil }
        }

        /// "refused N more time(s) for uid U in the last 10 s, not logged one by one: op ×n, …"
        static func summaryLines(_ log: String, uid: UInt32) -> [Substring] {
            log.split(separator: "\n").filter { $0.contains("more time(s) for uid \(uid) in the last") }
        }

        /// How many refusals a summary line accounts for.
        static func summarised(_ line: Substring) -> Int {
            let words = line.split(separator: " ")
            guard let index = words.firstIndex(of: "refused"), index + 1 < words.count else { return 0 }
            return Int(words[index + 1]) ?? 0
        }

        @Test("with no rules only the daemon's uid may call, and SIGN_RAW and SIGN_JSON are off")
        func defaultRules() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        mode: "0600"
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let client = daemon.client()
            let info = try client.hello()
            #expect(Set(info.operations) == Set(Opcode.allCases).subtracting([.signRaw, .signJSON]))
            #expect(info.servers == ["domain"])
            #expect(try client.ping([7]) == [7])
            #expect(try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI).header == SpecVectors.mediaHeader)
            Self.expectDenied("sign_json without a grant") { _ = try client.signJSON(server: "domain", json: Array("{}".utf8)) }
            Self.expectDenied("sign_raw without a grant") { _ = try client.signRaw(server: "domain", message: [1]) }
            #expect(daemon.waitForLog("refused sign_raw"))
            let lines = Self.refusalLines(daemon.log, uid: getuid(), pid: getpid())
            #expect(lines.count == 2, "\(daemon.log)")
            #expect(lines.contains { $0.contains("refused sign_json") })
            #expect(try statsObject(client).int("denied") == 2)
        }

        @Test("a uid that floods refusals, on one connection or many: 5 are logged one by one, the rest in one summary line; STATS counts all")
        func refusalLoggingIsSummarised() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let client = daemon.client()
            for _ in 0..<12 {
                Self.expectDenied("sign_raw without a grant") { _ = try client.signRaw(server: "domain", message: [1]) }
            }
            // A new connection of the same uid draws on the same budget: reconnecting does not
            // buy more lines.
            for _ in 0..<3 {
                let again = daemon.client()
                Self.expectDenied("sign_json without a grant") { _ = try again.signJSON(server: "domain", json: Array("{}".utf8)) }
                again.close()
            }
            #expect(try statsObject(client).int("denied") == 15)
            #expect(daemon.waitForLog("more time(s) for uid \(getuid()) in the last 10 s", timeout: 15), "\(daemon.log)")
            #expect(Self.refusalLines(daemon.log, uid: getuid()).count == 5, "\(daemon.log)")
            let summary = try #require(Self.summaryLines(daemon.log, uid: getuid()).first)
            #expect(Self.summarised(summary) == 10, "\(summary)")
            #expect(summary.contains("sign_raw ×7") && summary.contains("sign_json ×3"), "\(summary)")
        }

        @Test(
            "with no rules another uid's connection is refused at once, and logged",
            .enabled(if: AccessControl.canSwitchUsers, "needs root and setpriv to connect as another user"))
        func defaultRulesRefuseOtherUsers() throws {
            let directory = TemporaryDirectory()
            Privileges.openDirectory(directory)
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        mode: "0666"
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    """,
                files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            let (ping, pid) = try runReportingPID(Privileges.setpriv, Array(Privileges.asNobody.dropFirst()) + [Binaries.path("sigil"), "ping", "--socket", daemon.socketPath])
            #expect(ping.status != 0)
            // The caller is told why, not just disconnected.
            #expect(ping.stderr.contains("DENIED: no access rule of listener main matches uid 65534 gid 65534"), "\(ping.output)")
            #expect(daemon.waitForLog("refused a connection on listener main from uid 65534 gid 65534 pid \(pid): no access rule of the listener matches it"), "\(daemon.log)")
            #expect(try statsObject(daemon.client()).int("connections", "refused") == 1)
            // We (the daemon's uid) are still served.
            #expect(try daemon.client().ping([1]) == [1])
        }

        @Test(
            "a gid rule matches supplementary groups (SO_PEERGROUPS), not only the primary group",
            .enabled(if: AccessControl.canSwitchUsers, "needs root and setpriv to connect as another user"))
        func supplementaryGroups() throws {
            let directory = TemporaryDirectory()
            Privileges.openDirectory(directory)
            let group: UInt32 = 4242
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        mode: "0666"
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    access:
                      - uid: \(getuid())
                      - gid: \(group)
                        operations: [ping]
                    """,
                files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            let sigil = [Binaries.path("sigil"), "ping", "--socket", daemon.socketPath]
            // Primary group nobody, supplementary group 4242: allowed.
            let member = try run(Privileges.setpriv, ["--reuid=65534", "--regid=65534", "--groups=\(group)"] + sigil)
            #expect(member.status == 0, "\(member.output)")
            // The same user without the group: no rule can match it, so its connection is refused.
            let outsider = try run(Privileges.setpriv, Array(Privileges.asNobody.dropFirst()) + sigil)
            #expect(outsider.status != 0)
            #expect(daemon.waitForLog("refused a connection on listener main from uid 65534 gid 65534 pid \(outsider.pid)"), "\(daemon.log)")
        }

        @Test("sign_request limited by servers, methods and uri prefixes; dot segments never match a prefix")
        func signRequestLimits() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        mode: "0600"
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                      other.example:
                        keys: [{dir}/mmr.key]
                    access:
                      - uid: \(getuid())
                        operations: [ping, sign_request, stats]
                        servers: [domain]
                        methods: [GET]
                        uri_prefixes: [/_matrix/federation/v1/media/]
                    """,
                files: ["spec.key": TestKeys.specSynapseFile, "mmr.key": TestKeys.mmrFile])
            defer { daemon.stop() }
            let info = try daemon.client().hello()
            #expect(Set(info.operations) == [.hello, .ping, .signRequest, .stats])
            #expect(info.servers == ["domain"])

            let prefix = "/_matrix/federation/v1/media/"
            let allowed = [
                SpecVectors.mediaURI, prefix + "thumbnail/abc?width=32&height=32", prefix + "download/a..b", prefix + "download/...",
                prefix + "download/abc?next=/../../send",
            ]
            for uri in allowed {
                // A fresh connection each time, so the log's per-connection refusal cap never applies.
                let signed = try daemon.client().signRequest(origin: "domain", destination: "example.org", uri: uri)
                #expect(SpecVectors.isSpecSignature(signed, uri: uri), "\(uri)")
            }
            var refusals = 0
            func refuse(_ what: String, origin: String = "domain", method: String = "GET", uri: String, sourceLocation: SourceLocation = #_sourceLocation) {
                let client = daemon.client()
                defer { client.close() }
                Self.expectDenied(what, sourceLocation: sourceLocation) {
                    _ = try client.signRequest(origin: origin, destination: "example.org", method: method, uri: uri)
                }
                refusals += 1
            }
            refuse("a server not granted", origin: "other.example", uri: SpecVectors.mediaURI)
            refuse("POST", method: "POST", uri: SpecVectors.mediaURI)
            refuse("lower-case get", method: "get", uri: SpecVectors.mediaURI)
            refuse("a uri outside the prefix", uri: "/_matrix/federation/v1/send/1")
            refuse("the prefix without its slash", uri: "/_matrix/federation/v1/media")
            refuse("a /../ segment", uri: prefix + "../send/1")
            refuse("a %2e%2e segment", uri: prefix + "%2e%2e/send/1")
            refuse("a %2E%2E segment", uri: prefix + "%2E%2E/%2E%2E/v2/send")
            refuse("a .%2e segment", uri: prefix + "download/.%2e/../../key/v2/server")
            refuse("a /./ segment", uri: prefix + "./download/abc")
            refuse("a trailing .. segment", uri: prefix + "download/..")
            refuse("a .. segment before the query", uri: prefix + "download/..?x=1")
            // An unknown origin outside the rule is refused, not reported as unknown.
            refuse("an unknown origin", origin: "nowhere.example", uri: SpecVectors.mediaURI)
            // Operations the rule does not name.
            let client = daemon.client()
            Self.expectDenied("list_keys") { _ = try client.listKeys() }
            Self.expectDenied("key_document") { _ = try client.keyDocument(server: "domain") }
            Self.expectDenied("sign_json") { _ = try client.signJSON(server: "domain", json: Array("{}".utf8)) }
            refusals += 3

            // The first five refusals one by one, with why; the rest counted in one summary line.
            #expect(try statsObject(client).int("denied") == refusals)
            #expect(daemon.waitForLog("more time(s) for uid \(getuid()) in the last 10 s", timeout: 15), "\(daemon.log)")
            let lines = Self.refusalLines(daemon.log, uid: getuid(), pid: getpid())
            #expect(lines.count == 5, "\(daemon.log)")
            #expect(lines.contains { $0.contains("server other.example is not granted") })
            #expect(lines.contains { $0.contains("method or uri outside the granted prefixes") })
            let summary = try #require(Self.summaryLines(daemon.log, uid: getuid()).first)
            #expect(Self.summarised(summary) == refusals - 5, "\(summary)")
            #expect(summary.contains("list_keys ×1") && summary.contains("key_document ×1") && summary.contains("sign_json ×1"), "\(summary)")
            #expect(try statsObject(client).int("denied") == refusals)
        }

        @Test("every encoding of a dot segment the review found is refused by a media-only rule, and counted")
        func encodedDotSegments() throws {
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
                        methods: [GET]
                        uri_prefixes: [/_matrix/federation/v1/media/]
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let media = "/_matrix/federation/v1/media/"
            let attacks = [
                media + "..%2f..%2fsend/txn1", media + "%2e%2e%2fsend/txn1", media + "..;/send/txn1", media + "..\\send\\txn1",
                media + "..%5csend%5ctxn1", media + "%252e%252e/send/txn1", media + "%u002e%u002e/send/txn1", media + "download/..%2F..%2F..%2Fkey/v2/server",
            ]
            let client = daemon.client()
            for uri in attacks {
                Self.expectDenied(uri) { _ = try client.signRequest(origin: "domain", destination: "example.org", uri: uri) }
            }
            // The ordinary media request still signs.
            #expect(SpecVectors.isSpecSignature(try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI), uri: SpecVectors.mediaURI))
            #expect(try statsObject(client).int("denied") == attacks.count)
        }

        @Test(
            "another uid through the sigil CLI: sign_request within its prefix only, nothing else",
            .enabled(if: AccessControl.canSwitchUsers, "needs root and setpriv to run the CLI as another user"))
        func anotherUserThroughTheCLI() throws {
            let directory = TemporaryDirectory()
            Privileges.openDirectory(directory)
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        mode: "0666"
                        access:
                          - uid: \(Privileges.nobody)
                            operations: [sign_request]
                            uri_prefixes: [/_matrix/federation/v1/media/]
                          - uid: \(getuid())
                            operations: [hello, ping, sign_json, stats]
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    """,
                files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            let sigil = Binaries.path("sigil")
            func asNobody(_ arguments: [String], input: String? = nil) throws -> (result: ProcessResult, pid: Int32) {
                try runReportingPID(Privileges.setpriv, Array(Privileges.asNobody.dropFirst()) + [sigil] + arguments + ["--socket", daemon.socketPath], input: input)
            }

            let (inside, _) = try asNobody(["sign-request", "--origin", "domain", "--destination", "example.org", "--uri", SpecVectors.mediaURI])
            #expect(inside.status == 0, "\(inside.output)")
            #expect(inside.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == SpecVectors.mediaHeader)

            let (outside, outsidePID) = try asNobody(["sign-request", "--origin", "domain", "--destination", "example.org", "--uri", "/_matrix/federation/v1/send/1"])
            #expect(outside.status != 0)
            #expect(outside.stderr.contains("DENIED"), "\(outside.output)")
            #expect(outside.stdout.isEmpty)

            let (dotted, dottedPID) = try asNobody(["sign-request", "--origin", "domain", "--destination", "example.org", "--uri", "/_matrix/federation/v1/media/%2e%2e/send/1"])
            #expect(dotted.status != 0)
            #expect(dotted.stderr.contains("DENIED"), "\(dotted.output)")

            let (json, jsonPID) = try asNobody(["sign-json", "--server", "domain"], input: SpecVectors.jsonObject)
            #expect(json.status != 0)
            #expect(json.stderr.contains("DENIED"), "\(json.output)")
            #expect(json.stdout.isEmpty)

            let (ping, pingPID) = try asNobody(["ping"])
            #expect(ping.status != 0, "ping is not granted to uid 65534")
            #expect(ping.stderr.contains("DENIED"), "\(ping.output)")

            // The same commands as the daemon's uid, which the second rule grants.
            let rootJSON = try run(sigil, ["sign-json", "--server", "domain", "--socket", daemon.socketPath], input: SpecVectors.jsonObject)
            #expect(rootJSON.status == 0, "\(rootJSON.output)")
            #expect(rootJSON.stdout.contains(SpecVectors.jsonSignature))
            let rootPing = try run(sigil, ["ping", "--socket", daemon.socketPath, "--count", "1"])
            #expect(rootPing.status == 0, "\(rootPing.output)")
            #expect(rootPing.stdout.contains("allowed operations: hello, ping, sign_json, stats"), "\(rootPing.output)")
            let rootSign = try run(sigil, ["sign-request", "--socket", daemon.socketPath, "--origin", "domain", "--destination", "example.org", "--uri", SpecVectors.mediaURI])
            #expect(rootSign.status != 0, "sign_request is not granted to the daemon's uid here")

            // Each of uid 65534's refusals is in the log with its pid.
            for pid in [outsidePID, dottedPID, jsonPID, pingPID] {
                #expect(eventually { Self.refusalLines(daemon.log, uid: Privileges.nobody, pid: pid).count == 1 }, "pid \(pid):\n\(daemon.log)")
            }
            #expect(Self.refusalLines(daemon.log, uid: Privileges.nobody).count == 4)
            #expect(Self.refusalLines(daemon.log, uid: getuid()).count == 1)
        }
    }
}
