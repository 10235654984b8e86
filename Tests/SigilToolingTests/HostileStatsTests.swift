import Foundation
import SigilCore
import Testing

@testable import SigilTooling

/// Names in STATS come from the operator's YAML (listeners) or from wherever a daemon got them;
/// none may break a line, close a label early or forge a series.
@Suite("sigil stats: hostile names and malformed STATS")
struct HostileStatsTests {
    /// A listener name that tries every way out of a label value, and one with non-ASCII text.
    static let evilListener = "mmr\"} sigil_up 0\n# TYPE x counter\\"
    static let unicodeListener = "admin-é-\u{1F511}"

    static var hostile: String {
        func jsonString(_ text: String) -> String { JSONValue.string(text).canonicalString }
        return """
            {"uptime_ms": 1,
             "listeners": {
               \(jsonString(evilListener)): {"connections": {"open": 1, "total": 2, "refused": 0},
                 "requests": {"ping": {"count": 1, "errors": 0}}, "denied": 0, "busy": 0, "rate_limited": 0,
                 "refusals_by_uid": {"0": 1, "1\\"} 2": 5}},
               \(jsonString(unicodeListener)): {"connections": {"open": 0, "total": 0, "refused": 0},
                 "requests": {"ping": {"count": 0, "errors": 0}}, "denied": 0, "busy": 0, "rate_limited": 0}
             },
             "keys": {\(jsonString("evil\\\"server\n")): {"active": [\(jsonString("ed25519:\"x\\"))], "retired": []}}
            }
            """
    }

    @Test("label values are escaped: backslash, double quote, line feed; nothing else changes")
    func escaping() throws {
        let rendered = try SigilMetrics.render(SigilMetrics.Scrape(stats: Array(Self.hostile.utf8)), format: .prometheus)
        let lines = rendered.text.split(separator: "\n").map(String.init)
        #expect(
            lines.contains(#"sigil_requests_total{operation="ping",listener="mmr\"} sigil_up 0\n# TYPE x counter\\"} 1"#),
            "\(rendered.text)")
        #expect(lines.contains("sigil_requests_total{operation=\"ping\",listener=\"admin-é-\u{1F511}\"} 0"), "\(rendered.text)")
        #expect(lines.contains(#"sigil_key_info{server="evil\\\"server\n",key_id="ed25519:\"x\\",state="active"} 1"#), "\(rendered.text)")
        // No forged series and no forged TYPE line.
        #expect(lines.filter { $0.hasPrefix("sigil_up ") } == ["sigil_up 1"])
        #expect(!lines.contains { $0.hasPrefix("# TYPE x") })
        // A refusal keyed by something that is not a uid is dropped, and said so.
        #expect(lines.contains(#"sigil_refusals_total{listener="mmr\"} sigil_up 0\n# TYPE x counter\\",uid="0"} 1"#))
        #expect(!rendered.text.contains("uid=\"1"))
        #expect(rendered.problems.count == 1 && rendered.problems[0].contains("expected a uid"), "\(rendered.problems)")
        // The problem line quotes the names too: it goes to the journal, one line per problem.
        #expect(!rendered.problems[0].contains("\n"))
    }

    @Test("hostile names still pass promtool, in both formats", .enabled(if: Promtool.shouldRun, Promtool.skipReason))
    func promtoolAcceptsHostileNames() throws {
        let scrape = SigilMetrics.Scrape(stats: Array(Self.hostile.utf8))
        let classic = try SigilMetrics.render(scrape, format: .prometheus).text
        let check = try Promtool.checkMetrics(classic)
        #expect(check.status == 0 && check.output.isEmpty, "\(check.output)\n\(classic)")
        let open = try SigilMetrics.render(scrape, format: .openMetrics).text
        let parsed = try Promtool.parseOpenMetrics(open)
        #expect(parsed.status == 0, "\(parsed.output)\n\(open)")
    }

    @Test("a field of the wrong type costs its own series, is reported with its path, and nothing else is lost")
    func malformedFields() throws {
        let json = """
            {"uptime_ms": "soon", "in_flight": -1, "memory_locked": 1,
             "requests": {"ping": {"count": "many", "errors": 0}, "stats": {"count": 4, "errors": 0}, "verify": 7},
             "reloads": [], "connections": {"open": 1, "total": 9, "refused": 0},
             "latency_us": {"bounds": [5, 10],
                            "ops": {"ping": {"counts": [1, 2], "sum": 10, "count": 3},
                                    "stats": {"counts": [1, 2, 3], "sum": 60, "count": 7}}},
             "audit": {"enabled": "yes", "records": 3, "dropped": 0}}
            """
        let rendered = try SigilMetrics.render(SigilMetrics.Scrape(stats: Array(json.utf8)), format: .prometheus)
        let lines = Set(rendered.text.split(separator: "\n").map(String.init))
        #expect(lines.contains(#"sigil_requests_total{operation="stats"} 4"#))
        #expect(lines.contains(#"sigil_request_errors_total{operation="ping"} 0"#))
        #expect(!rendered.text.contains(#"sigil_requests_total{operation="ping"}"#))
        #expect(lines.contains("sigil_connections_accepted_total 9"))
        #expect(lines.contains("sigil_audit_records_total 3"))
        #expect(lines.contains(#"sigil_request_duration_seconds_bucket{operation="stats",le="+Inf"} 6"#))
        #expect(!rendered.text.contains(#"sigil_request_duration_seconds_bucket{operation="ping""#))
        #expect(!rendered.text.contains("sigil_uptime_seconds"))
        #expect(!rendered.text.contains("sigil_requests_in_flight"))
        let problems = rendered.problems.joined(separator: "\n")
        for expected in [
            "STATS field uptime_ms: expected an integer, found a string",
            "STATS field in_flight: expected a count, found -1",
            "STATS field memory_locked: expected true or false, found an integer",
            #"STATS field requests["ping"].count: expected an integer, found a string"#,
            #"STATS field requests["verify"]: expected an object, found an integer"#,
            "STATS field reloads: expected an object, found an array",
            #"STATS field latency_us.ops["ping"].counts: expected 3 counts"#,
            #"STATS field latency_us.ops["stats"].count is 7 but its buckets hold 6; using 6"#,
            "STATS field audit.enabled: expected true or false, found a string",
        ] {
            #expect(problems.contains(expected), "missing problem: \(expected)\n\(problems)")
        }
    }

    @Test("latency bounds that are not increasing positive integers give no histogram at all")
    func badBounds() throws {
        for bounds in ["[10, 5]", "[0, 5]", "[5, \"10\"]"] {
            let json = #"{"latency_us": {"bounds": \#(bounds), "ops": {"ping": {"counts": [1, 2, 3], "sum": 1, "count": 6}}}}"#
            let rendered = try SigilMetrics.render(SigilMetrics.Scrape(stats: Array(json.utf8)), format: .prometheus)
            #expect(!rendered.text.contains("sigil_request_duration_seconds"), "\(bounds)")
            #expect(rendered.problems.contains { $0.contains("latency_us.bounds") }, "\(bounds): \(rendered.problems)")
        }
    }

    @Test("an answer that is not a JSON object is unreadable, with the reason")
    func unreadable() {
        for (bytes, reason) in [
            ("not json", "not valid JSON"), ("[1, 2]", "not a JSON object"), ("{\"a\": 1.5}", "not valid JSON"), ("", "not valid JSON"),
        ] {
            #expect {
                try SigilMetrics.render(SigilMetrics.Scrape(stats: Array(bytes.utf8)), format: .prometheus)
            } throws: { error in
                "\(error)".contains(reason)
            }
        }
    }
}
