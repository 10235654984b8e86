import FuzzConfigChecks
import FuzzSupport

@_cdecl("FuzzConfigStructured_main")
public func fuzzConfigStructuredMain(argc: Int32, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzMain(ConfigStructuredTarget.self, argc: argc, argv: argv)
}

/// Configuration documents built from fuzz choices around the loader's real fields, so that
/// inputs get past YAML and reach the number, size, duration and name checks, with the values
/// that break such checks: boundaries, Int64's extremes, overflowing sizes and durations,
/// underscores, signs, YAML's own spellings of null and booleans.
enum ConfigStructuredTarget: FuzzTarget {
    static func run(_ input: UnsafeRawBufferPointer) {
        var reader = FuzzReader(input)
        ConfigChecks.check(ConfigBuilder.document(&reader))
    }

    static var seeds: [[UInt8]] {
        // Generator programs: every byte is a choice, so a spread of values covers the fields.
        (0..<32).map { program in (0..<160).map { UInt8(truncatingIfNeeded: $0 &* (program | 1) &+ program &* 7) } }
    }
}
