import Foundation
import SigilCore
import Testing

@testable import SigilTooling

@Suite("sigil stats --format prometheus|openmetrics")
struct SigilMetricsTests {
    static func render(_ json: String, keys: KeyListing? = nil, version: String? = nil, format: ExpositionFormat = .prometheus) throws
        -> SigilMetrics.Rendered
    {
        try SigilMetrics.render(SigilMetrics.Scrape(stats: Array(json.utf8), keys: keys, daemonVersion: version), format: format)
    }

    static func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    /// Every family's HELP and TYPE appear once, before its samples, and its samples are together.
    static func expectWellGrouped(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        var seen: Set<String> = []
        var current = ""
        for line in lines(text) where !line.hasPrefix("# HELP") {
            if line.hasPrefix("# TYPE ") {
                current = String(line.split(separator: " ")[2])
                #expect(seen.insert(current).inserted, "TYPE \(current) twice", sourceLocation: sourceLocation)
            } else if !line.hasPrefix("#") {
                #expect(line.hasPrefix(current), "\(line) is outside its family \(current)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("every section of the STATS schema, per listener, in the classic format")
    func fullSchema() throws {
        let rendered = try Self.render(StatsSamples.full, version: "0.1.0")
        #expect(rendered.problems.isEmpty, "\(rendered.problems)")
        let lines = Set(Self.lines(rendered.text))
        for expected in [
            "sigil_up 1",
            #"sigil_build_info{version="0.1.0"} 1"#,
            "sigil_uptime_seconds 93784.005",
            "sigil_requests_in_flight 2",
            "sigil_event_loops 2",
            #"sigil_requests_total{operation="sign_request",listener="mmr"} 1000"#,
            #"sigil_requests_total{operation="sign_request",listener="admin"} 0"#,
            #"sigil_requests_total{operation="stats",listener="admin"} 12"#,
            #"sigil_request_errors_total{operation="sign_request",listener="mmr"} 7"#,
            #"sigil_requests_denied_total{listener="mmr"} 5"#,
            #"sigil_requests_busy_total{listener="mmr"} 2"#,
            #"sigil_requests_rate_limited_total{listener="mmr"} 1"#,
            #"sigil_refusals_total{listener="mmr",uid="998"} 4"#,
            #"sigil_refusals_total{listener="mmr",uid="other"} 1"#,
            #"sigil_refusals_total{listener="admin",uid="1000"} 2"#,
            #"sigil_connections_open{listener="mmr"} 2"#,
            #"sigil_connections_accepted_total{listener="admin"} 20"#,
            #"sigil_connections_refused_total{listener="mmr"} 3"#,
            "sigil_received_bytes_total 123456",
            "sigil_sent_bytes_total 654321",
            #"sigil_reloads_total{result="ok"} 2"#,
            #"sigil_reloads_total{result="failed"} 1"#,
            "sigil_last_reload_timestamp_seconds 1767225600.123",
            "sigil_last_reload_success 0",
            "sigil_config_generation 3",
            "sigil_servers 1",
            "sigil_active_keys 2",
            "sigil_retired_keys 1",
            #"sigil_key_info{server="example.org",key_id="ed25519:a_new1",state="active"} 1"#,
            #"sigil_key_info{server="example.org",key_id="ed25519:a_old1",state="retired"} 1"#,
            "sigil_memory_locked 1",
            "sigil_locked_memory_bytes 16384",
            "sigil_resident_memory_bytes 7864320",
            "sigil_audit_enabled 1",
            "sigil_audit_records_total 1017",
            "sigil_audit_dropped_records_total 0",
            "sigil_audit_denied_unrecorded_total 42",
            "sigil_stats_truncated 0",
            "# TYPE sigil_requests_total counter",
            "# TYPE sigil_key_info gauge",
            "# TYPE sigil_request_duration_seconds histogram",
        ] {
            #expect(lines.contains(expected), "missing: \(expected)\n\(rendered.text)")
        }
        // Per-listener figures replace the process-wide ones; never both (sums would double).
        #expect(!rendered.text.contains(#"sigil_requests_total{operation="sign_request"} "#))
        #expect(!rendered.text.contains("sigil_requests_denied_total 6"))
        #expect(!rendered.text.contains("sigil_connections_open 3"))
        // The last reload error (a path and line) is no label: it would make a new series per error.
        #expect(!rendered.text.contains("unexpected key"))
        Self.expectWellGrouped(rendered.text)
    }

    @Test("latency: cumulative buckets, le bounds converted exactly from microseconds, sum in seconds")
    func latencyHistogram() throws {
        let text = try Self.render(StatsSamples.full).text
        let lines = Self.lines(text)
        func bucket(_ op: String, _ le: String) -> String? {
            let prefix = "sigil_request_duration_seconds_bucket{operation=\"\(op)\",le=\"\(le)\"} "
            return lines.first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
        }
        #expect(bucket("sign_request", "0.000005") == "0")
        #expect(bucket("sign_request", "0.000025") == "10")
        #expect(bucket("sign_request", "0.00005") == "510")
        #expect(bucket("sign_request", "0.0001") == "910")
        #expect(bucket("sign_request", "0.01") == "1000")
        #expect(bucket("sign_request", "1") == "1000")
        #expect(bucket("sign_request", "+Inf") == "1000")
        #expect(lines.contains(#"sigil_request_duration_seconds_sum{operation="sign_request"} 0.061234"#))
        #expect(lines.contains(#"sigil_request_duration_seconds_count{operation="sign_request"} 1000"#))
        #expect(bucket("stats", "1") == "0")
        #expect(bucket("stats", "+Inf") == "12")
        #expect(lines.contains(#"sigil_request_duration_seconds_sum{operation="stats"} 14"#))

        // Every bound, in order, and each le is the µs bound exactly (no 5e-06, no 0.0000049999).
        let microseconds: [Int64] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000]
        let les = lines.filter { $0.hasPrefix(#"sigil_request_duration_seconds_bucket{operation="sign_request""#) }
            .map { $0.split(separator: "\"")[3] }
        #expect(les.count == microseconds.count + 1)
        for (le, bound) in zip(les, microseconds) {
            let parts = le.split(separator: ".")
            let fraction = parts.count == 2 ? String(parts[1]) : ""
            #expect(fraction.count <= 6 && !le.contains("e"), "\(le)")
            let scaled =
                Int64(parts[0])! * 1_000_000 + (fraction.isEmpty ? 0 : Int64(fraction + String(repeating: "0", count: 6 - fraction.count))!)
            #expect(scaled == bound, "le \(le) is not \(bound) µs")
        }
        #expect(les.last == "+Inf")
    }

    @Test("the classic format passes promtool check metrics", .enabled(if: Promtool.shouldRun, Promtool.skipReason))
    func promtoolAcceptsClassic() throws {
        for (name, sample) in [("full", StatsSamples.full), ("current", StatsSamples.current), ("truncated", StatsSamples.truncated)] {
            let text = try Self.render(sample, keys: SigilMetricsTests.listing, version: "0.1.0").text
            let check = try Promtool.checkMetrics(text)
            #expect(check.status == 0 && check.output.isEmpty, "\(name): \(check.output)\n\(text)")
        }
        let down = try Promtool.checkMetrics(SigilMetrics.renderDown(format: .prometheus))
        #expect(down.status == 0 && down.output.isEmpty, "\(down.output)")
    }

    @Test(
        "OpenMetrics: family names in TYPE, info and UNIT, # EOF, and Prometheus' parser reads it",
        .enabled(if: Promtool.shouldRun, Promtool.skipReason))
    func openMetrics() throws {
        let rendered = try Self.render(StatsSamples.full, keys: Self.listing, version: "0.1.0", format: .openMetrics)
        let lines = Self.lines(rendered.text)
        #expect(rendered.text.hasSuffix("\n# EOF\n"))
        #expect(lines.filter { $0 == "# EOF" }.count == 1)
        for expected in [
            "# TYPE sigil_requests counter",
            "# TYPE sigil_key info",
            "# TYPE sigil_build info",
            "# TYPE sigil_request_duration_seconds histogram",
            "# UNIT sigil_request_duration_seconds seconds",
            "# UNIT sigil_received_bytes bytes",
            "# UNIT sigil_uptime_seconds seconds",
            #"sigil_requests_total{operation="sign_request",listener="mmr"} 1000"#,
            #"sigil_key_info{server="example.org",key_id="ed25519:a_new1",state="signing"} 1"#,
            #"sigil_request_duration_seconds_bucket{operation="sign_request",le="+Inf"} 1000"#,
        ] {
            #expect(lines.contains(expected), "missing: \(expected)\n\(rendered.text)")
        }
        #expect(!lines.contains("# TYPE sigil_requests_total counter"))
        let parsed = try Promtool.parseOpenMetrics(rendered.text)
        #expect(parsed.status == 0, "\(parsed.output)\n\(rendered.text)")
        let down = SigilMetrics.renderDown(format: .openMetrics)
        #expect(down == "# TYPE sigil_up gauge\n# HELP sigil_up \(SigilMetrics.upFamily.help)\nsigil_up 0\n# EOF\n")
        let parsedDown = try Promtool.parseOpenMetrics(down)
        #expect(parsedDown.status == 0, "\(parsedDown.output)")
    }

    @Test("today's STATS (no listeners, latency or audit): process-wide series without a listener label")
    func currentDaemon() throws {
        let rendered = try Self.render(StatsSamples.current)
        #expect(rendered.problems.isEmpty, "\(rendered.problems)")
        let lines = Set(Self.lines(rendered.text))
        for expected in [
            #"sigil_requests_total{operation="ping"} 3"#,
            #"sigil_request_errors_total{operation="sign_json"} 1"#,
            "sigil_requests_denied_total 1",
            "sigil_requests_busy_total 0",
            "sigil_connections_open 1",
            "sigil_connections_accepted_total 4",
            "sigil_connections_refused_total 0",
            #"sigil_reloads_total{result="ok"} 0"#,
            #"sigil_key_info{server="domain",key_id="ed25519:1",state="active"} 1"#,
            "sigil_active_keys 1",
            "sigil_memory_locked 0",
            "sigil_stats_truncated 0",
        ] {
            #expect(lines.contains(expected), "missing: \(expected)\n\(rendered.text)")
        }
        // Absent sections give absent families: no empty HELP/TYPE blocks.
        for absent in [
            "sigil_request_duration_seconds", "sigil_audit", "sigil_refusals", "sigil_requests_rate_limited",
            "sigil_locked_memory_bytes", "sigil_last_reload", "sigil_servers", "sigil_build_info",
        ] {
            #expect(!rendered.text.contains(absent), "\(absent) should be absent:\n\(rendered.text)")
        }
        Self.expectWellGrouped(rendered.text)
    }

    @Test("truncated STATS without keys: sigil_stats_truncated 1, the totals stay, no key series")
    func truncated() throws {
        let rendered = try Self.render(StatsSamples.truncated)
        #expect(rendered.problems.isEmpty, "\(rendered.problems)")
        let lines = Set(Self.lines(rendered.text))
        #expect(lines.contains("sigil_stats_truncated 1"))
        #expect(lines.contains("sigil_servers 250"))
        #expect(lines.contains("sigil_active_keys 250"))
        #expect(lines.contains("sigil_last_reload_timestamp_seconds 0"))
        #expect(lines.contains("sigil_last_reload_success 1"))
        #expect(!rendered.text.contains("sigil_key_info"))
    }

    static let listing = KeyListing(servers: [
        KeyListing.Server(
            name: "example.org",
            keys: [
                KeyListing.Key(
                    id: "ed25519:a_new1", publicKey: PublicKey(base64: "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI")!, state: .signing,
                    expiredTS: 0),
                KeyListing.Key(
                    id: "ed25519:mmr2", publicKey: PublicKey(base64: "TohekYXzLx7VzV8FtLQlI3XsSdPv1CjhVYY5rZmFCvU")!, state: .active,
                    expiredTS: 0),
                KeyListing.Key(
                    id: "ed25519:a_old1", publicKey: PublicKey(base64: "TohekYXzLx7VzV8FtLQlI3XsSdPv1CjhVYY5rZmFCvU")!, state: .retired,
                    expiredTS: 1_700_000_000_123),
            ])
    ])

    @Test("with LIST_KEYS: the signing key is marked, retired keys' expiry is given, no key bytes appear")
    func keysFromListing() throws {
        let text = try Self.render(StatsSamples.full, keys: Self.listing).text
        let lines = Set(Self.lines(text))
        #expect(lines.contains(#"sigil_key_info{server="example.org",key_id="ed25519:a_new1",state="signing"} 1"#))
        #expect(lines.contains(#"sigil_key_info{server="example.org",key_id="ed25519:mmr2",state="active"} 1"#))
        #expect(lines.contains(#"sigil_key_info{server="example.org",key_id="ed25519:a_old1",state="retired"} 1"#))
        #expect(lines.contains(#"sigil_key_expired_timestamp_seconds{server="example.org",key_id="ed25519:a_old1"} 1700000000.123"#))
        #expect(!text.contains(#"key_id="ed25519:a_new1",state="active""#))
        for key in Self.listing.servers[0].keys {
            #expect(!text.contains(key.publicKey.base64), "public key bytes in the output")
        }
    }
}
