import Testing

@testable import SigilTooling

@Suite("exposition text")
struct ExpositionTests {
    @Test(
        "exact decimal seconds from milliseconds and microseconds",
        arguments: [
            (Int64(5), 6, "0.000005"), (10, 6, "0.00001"), (2500, 6, "0.0025"), (1_000_000, 6, "1"), (1_500_000, 6, "1.5"),
            (0, 6, "0"), (1500, 3, "1.5"), (93_784_005, 3, "93784.005"), (1_767_225_600_000, 3, "1767225600"), (-1500, 3, "-1.5"),
            (Int64.max, 6, "9223372036854.775807"), (7, 0, "7"),
        ])
    func decimal(value: Int64, scale: Int, expected: String) {
        #expect(ExpositionWriter.decimal(value, scale: scale) == expected)
    }

    @Test("label values: backslash, quote and line feed escaped; tabs, braces, commas and Unicode as they are")
    func labelValues() {
        #expect(ExpositionWriter.escapeLabelValue(#"a\b"c"# + "\nd") == #"a\\b\"c\nd"#)
        #expect(ExpositionWriter.escapeLabelValue("x}{,=\t é\u{1F511}") == "x}{,=\t é\u{1F511}")
        #expect(ExpositionWriter.escapeLabelValue("") == "")
    }

    @Test("HELP: the classic format leaves quotes alone, OpenMetrics escapes them")
    func help() {
        #expect(ExpositionWriter.escapeHelp(#"say "hi" \ now"# + "\n", format: .prometheus) == #"say "hi" \\ now\n"#)
        #expect(ExpositionWriter.escapeHelp(#"say "hi" \ now"# + "\n", format: .openMetrics) == #"say \"hi\" \\ now\n"#)
    }

    @Test("families: TYPE names per format, empty families left out, samples in order")
    func families() {
        var counter = MetricFamily("demo_requests", .counter, help: "Requests.")
        counter.add([("op", "a")], 1)
        counter.add([("op", "b")], 2)
        let empty = MetricFamily("demo_empty", .gauge, help: "Never written.")
        var info = MetricFamily("demo_build", .info, help: "Build.")
        info.add([("version", "1")], "1")
        var histogram = MetricFamily("demo_seconds", .histogram, unit: "seconds", help: "Time.")
        histogram.addHistogram([("op", "a")], buckets: [("0.5", 1), ("+Inf", 3)], sum: "2.5")
        let families = [counter, empty, info, histogram]
        #expect(
            ExpositionWriter.render(families, format: .prometheus) == """
                # HELP demo_requests_total Requests.
                # TYPE demo_requests_total counter
                demo_requests_total{op="a"} 1
                demo_requests_total{op="b"} 2
                # HELP demo_build_info Build.
                # TYPE demo_build_info gauge
                demo_build_info{version="1"} 1
                # HELP demo_seconds Time.
                # TYPE demo_seconds histogram
                demo_seconds_bucket{op="a",le="0.5"} 1
                demo_seconds_bucket{op="a",le="+Inf"} 3
                demo_seconds_sum{op="a"} 2.5
                demo_seconds_count{op="a"} 3

                """)
        #expect(
            ExpositionWriter.render(families, format: .openMetrics) == """
                # TYPE demo_requests counter
                # HELP demo_requests Requests.
                demo_requests_total{op="a"} 1
                demo_requests_total{op="b"} 2
                # TYPE demo_build info
                # HELP demo_build Build.
                demo_build_info{version="1"} 1
                # TYPE demo_seconds histogram
                # UNIT demo_seconds seconds
                # HELP demo_seconds Time.
                demo_seconds_bucket{op="a",le="0.5"} 1
                demo_seconds_bucket{op="a",le="+Inf"} 3
                demo_seconds_sum{op="a"} 2.5
                demo_seconds_count{op="a"} 3
                # EOF

                """)
    }
}
