import Foundation
import SigilClient
import SigilCore
import SigilTestSupport
import Testing

extension DaemonEndToEnd {
    /// `sigil stats --format prometheus|openmetrics` against the real daemon, checked by
    /// Prometheus' own promtool, and what an unreachable or unwilling daemon turns into.
    @Suite("metrics export")
    struct MetricsExport {
        static let promtool: String? = FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") ? "/usr/bin/promtool" : nil
        static let inCI = ProcessInfo.processInfo.environment["CI"].map { !$0.isEmpty && $0 != "false" && $0 != "0" } ?? false
        static let canCheck = promtool != nil || inCI

        /// The samples of a classic-format exposition: series text (name and labels) to value.
        static func samples(_ text: String) -> [String: Double] {
            var out: [String: Double] = [:]
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
                out[String(line[..<space])] = value
            }
            return out
        }

        /// The sum of a family's samples whose labels include all of `labels` (so the same check
        /// holds whether or not sigild breaks the figure down by listener).
        static func total(_ samples: [String: Double], _ name: String, _ labels: [String] = []) -> Double? {
            let matching = samples.filter { series, _ in
                (series == name || series.hasPrefix(name + "{")) && labels.allSatisfy { series.contains($0) }
            }
            return matching.isEmpty ? nil : matching.values.reduce(0, +)
        }

        static func checkWithPromtool(_ text: String) throws -> ProcessResult {
            let promtool = try #require(promtool, "promtool is missing and CI is set: .ci/run installs Debian's prometheus package")
            return try run(promtool, ["check", "metrics"], input: text)
        }

        @Test(
            "live figures pass promtool check metrics and count what was done",
            .enabled(if: canCheck, "promtool is not installed (apt-get install prometheus); CI runs this test"))
        func liveExposition() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let client = daemon.client()
            for _ in 0..<3 { _ = try client.ping() }
            _ = try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            #expect(throws: SigilClientError.self) { try client.signJSON(server: "domain", json: Array("{}".utf8)) }

            let result = try run(Binaries.path("sigil"), ["stats", "--socket", daemon.socketPath, "--format", "prometheus"])
            #expect(result.status == 0, "\(result.output)")
            #expect(result.stderr.isEmpty, "\(result.stderr)")
            let check = try Self.checkWithPromtool(result.stdout)
            #expect(check.status == 0 && check.output.isEmpty, "\(check.output)\n\(result.stdout)")

            let samples = Self.samples(result.stdout)
            #expect(samples["sigil_up"] == 1)
            #expect(samples.keys.contains { $0.hasPrefix(#"sigil_build_info{version=""#) }, "\(result.stdout)")
            #expect(Self.total(samples, "sigil_requests_total", [#"operation="ping""#]).map { $0 >= 3 } == true, "\(result.stdout)")
            #expect(Self.total(samples, "sigil_requests_total", [#"operation="sign_request""#]) == 1, "\(result.stdout)")
            #expect(Self.total(samples, "sigil_request_errors_total", [#"operation="sign_json""#]) == 1, "\(result.stdout)")
            #expect(Self.total(samples, "sigil_requests_denied_total").map { $0 >= 1 } == true, "\(result.stdout)")
            #expect(Self.total(samples, "sigil_connections_open").map { $0 >= 1 } == true, "\(result.stdout)")
            #expect(samples[#"sigil_key_info{server="domain",key_id="ed25519:1",state="signing"}"#] == 1, "\(result.stdout)")
            #expect(samples["sigil_stats_truncated"] == 0)
            #expect(!result.stdout.contains(TestKeys.specPublicKey), "key bytes in the metrics")

            // Per listener and uid, latency histograms, locked memory, reloads, servers.
            #expect(
                Self.total(samples, "sigil_requests_total", [#"operation="ping""#, #"listener="main""#]).map { $0 >= 3 } == true,
                "\(result.stdout)")
            #expect(
                Self.total(samples, "sigil_refusals_total", [#"listener="main""#, #"uid="\#(getuid())""#]).map { $0 >= 1 } == true,
                "\(result.stdout)")
            #expect(
                Self.total(samples, "sigil_request_duration_seconds_count", [#"operation="ping""#]).map { $0 >= 3 } == true,
                "\(result.stdout)")
            #expect(samples[#"sigil_request_duration_seconds_bucket{operation="sign_request",le="+Inf"}"#] == 1, "\(result.stdout)")
            #expect(Self.total(samples, "sigil_locked_memory_bytes").map { $0 > 0 } == true, "\(result.stdout)")
            #expect(Self.total(samples, "sigil_requests_rate_limited_total", [#"listener="main""#]) == 0, "\(result.stdout)")
            #expect(samples["sigil_last_reload_timestamp_seconds"] == 0, "\(result.stdout)")
            #expect(samples["sigil_last_reload_success"] == 1, "\(result.stdout)")
            #expect(samples["sigil_servers"] == 1, "\(result.stdout)")
            #expect(samples["sigil_audit_records_total"] == 0 && samples["sigil_audit_dropped_records_total"] == 0, "\(result.stdout)")
            daemon.signal(SIGHUP)
            #expect(daemon.waitForReady(count: 2))
            let reloaded = Self.samples(
                try run(Binaries.path("sigil"), ["stats", "--socket", daemon.socketPath, "--format", "prometheus"]).stdout)
            #expect((reloaded["sigil_last_reload_timestamp_seconds"] ?? 0) > 1_700_000_000, "\(reloaded)")

            let open = try run(Binaries.path("sigil"), ["stats", "--socket", daemon.socketPath, "--format", "openmetrics"])
            #expect(open.status == 0, "\(open.output)")
            #expect(open.stdout.hasSuffix("\n# EOF\n"))
            #expect(open.stdout.contains("# TYPE sigil_requests counter\n"))
        }

        @Test("--output replaces the file atomically with mode 0644 and prints nothing")
        func outputFile() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let target = daemon.directory.file("sigil.prom")
            for _ in 0..<2 {
                let result = try run(
                    "/bin/sh",
                    [
                        "-c", "umask 077; exec \"$0\" \"$@\"", Binaries.path("sigil"), "stats", "--socket", daemon.socketPath,
                        "--format", "prometheus", "--output", target,
                    ])
                #expect(result.status == 0, "\(result.output)")
                #expect(result.stdout.isEmpty)
            }
            let attributes = try FileManager.default.attributesOfItem(atPath: target)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o644)
            #expect(try String(contentsOfFile: target, encoding: .utf8).contains("\nsigil_up 1\n"))
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: daemon.directory.path).filter { $0.contains(".tmp-") }
            #expect(leftovers.isEmpty, "\(leftovers)")

            // JSON goes through the same writer: the daemon's object and a newline.
            let json = try run(Binaries.path("sigil"), ["stats", "--socket", daemon.socketPath, "--output", target])
            #expect(json.status == 0, "\(json.output)")
            let written = try String(contentsOfFile: target, encoding: .utf8)
            #expect(written.hasPrefix("{") && written.hasSuffix("}\n"), "\(written)")
        }

        @Test("no daemon: sigil_up 0 and nothing else, exit status 3; the JSON format prints nothing")
        func daemonDown() throws {
            let directory = TemporaryDirectory()
            let target = directory.file("sigil.prom")
            directory.write("sigil.prom", "sigil_up 1\nsigil_requests_total 5\n", mode: 0o644)
            let result = try run(
                Binaries.path("sigil"), ["stats", "--socket", directory.file("absent.sock"), "--format", "prometheus", "--output", target])
            #expect(result.status == 3, "\(result.output)")
            #expect(result.stderr.contains("cannot connect to sigild at \(directory.file("absent.sock"))"), "\(result.stderr)")
            #expect(result.stderr.contains("wrote sigil_up 0"), "\(result.stderr)")
            let written = try String(contentsOfFile: target, encoding: .utf8)
            #expect(Self.samples(written) == ["sigil_up": 0], "\(written)")
            if Self.canCheck {
                let check = try Self.checkWithPromtool(written)
                #expect(check.status == 0 && check.output.isEmpty, "\(check.output)")
            }
            let open = try run(Binaries.path("sigil"), ["stats", "--socket", directory.file("absent.sock"), "--format", "openmetrics"])
            #expect(open.status == 3)
            #expect(open.stdout.hasSuffix("sigil_up 0\n# EOF\n"), "\(open.stdout)")
            let json = try run(Binaries.path("sigil"), ["stats", "--socket", directory.file("absent.sock")])
            #expect(json.status == 3)
            #expect(json.stdout.isEmpty)
        }

        @Test(
            "a caller the daemon refuses STATS: sigil_up 0, with the refusal on stderr",
            .enabled(if: Privileges.isRoot && Privileges.hasSetpriv, "needs root and setpriv to call as nobody"))
        func statsDenied() throws {
            // uid 65534 may PING, not read STATS (a caller no rule matches is not even accepted).
            let daemon = try DaemonFixture.quickStart(
                extraConfig: """
                    access:
                      - uid: 0
                      - uid: 65534
                        operations: [ping]
                    """)
            defer { daemon.stop() }
            Privileges.openDirectory(daemon.directory)
            let result = try run(
                Privileges.setpriv,
                Array(Privileges.asNobody.dropFirst()) + [
                    Binaries.path("sigil"), "stats", "--socket", daemon.socketPath, "--format", "prometheus",
                ])
            #expect(result.status == 3, "\(result.output)")
            #expect(result.stderr.contains("DENIED"), "\(result.stderr)")
            #expect(Self.samples(result.stdout) == ["sigil_up": 0], "\(result.stdout)")
        }

        @Test("bad arguments are refused before anything is written")
        func badArguments() throws {
            let bad = try run(Binaries.path("sigil"), ["stats", "--format", "xml"])
            #expect(bad.status != 0 && bad.status != 3)
            #expect(bad.stderr.contains("json") && bad.stderr.contains("openmetrics"), "\(bad.stderr)")
            let timeout = try run(Binaries.path("sigil"), ["stats", "--timeout", "0"])
            #expect(timeout.status != 0 && timeout.stderr.contains("--timeout must be a positive number"), "\(timeout.stderr)")
        }
    }
}
