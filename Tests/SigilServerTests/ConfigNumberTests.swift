import Testing

@testable import SigilServer

/// Every number in the configuration is parsed without trapping: sizes with units that would
/// overflow, negative sizes, huge integers and durations are errors that name the field.
@Suite("Configuration numbers")
struct ConfigNumberTests {
    static func parse(_ limits: String) throws(ConfigError) -> Configuration {
        try ConfigLoader.parse("servers:\n  domain:\n    keys: [/k]\nlimits:\n  \(limits)\n", path: "t.yaml")
    }

    @Test(
        "sizes and numbers that overflow or are negative are errors, not traps",
        arguments: [
            "max_frame: 8796093022208M", "max_frame: 9007199254740993KiB", "max_frame: -5", "max_frame: -5KiB", "max_frame: 1e9",
            "max_frame: 99999999999999999999", "max_frame: 64KiBKiB", "max_frame: KiB", "max_pending_output: 9223372036854775807G",
            "max_buffered: 18446744073709551616", "max_batch: -1", "max_batch: 99999999999999999999999", "max_connections: 0x10",
            "idle_timeout: 99999999999999w", "frame_timeout: -1s", "max_json_depth: 1000000000000", "workers: 1e3",
        ])
    func refused(_ line: String) {
        do {
            _ = try Self.parse(line)
            Issue.record("accepted: \(line)")
        } catch {
            #expect(error.field.hasPrefix("limits."), "\(error)")
            #expect(error.line != nil, "\(error)")
        }
    }

    @Test("sizes in every unit")
    func sizes() throws {
        #expect(try Self.parse("max_frame: 65536").limits.maxFrameLength == 65536)
        #expect(try Self.parse("max_frame: 64KiB").limits.maxFrameLength == 65536)
        #expect(try Self.parse("max_frame: 64k").limits.maxFrameLength == 65536)
        #expect(try Self.parse("max_frame: 1MiB").limits.maxFrameLength == 1 << 20)
        #expect(try Self.parse("max_frame: 1_048_576").limits.maxFrameLength == 1 << 20)
        #expect(try Self.parse("max_buffered: 1GiB").limits.maxBuffered == 1 << 30)
        #expect(try Self.parse("max_pending_output: 2M").limits.maxPendingOutput == 2 << 20)
    }
}
