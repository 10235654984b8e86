// swift-tools-version: 6.1
import PackageDescription

// libFuzzer targets for Sigil's parsers: a package of its own, so that a plain `swift build` or
// `swift test` of Sigil never builds them (they only link with -sanitize=fuzzer).
// Build and run them with scripts/fuzz; docs/FUZZING.md says how, and how to add a target.
let package = Package(
    name: "SigilFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "sigil", path: "..")
    ],
    targets: [
        // libFuzzer's entry point, declared for Swift (the runtime comes with -sanitize=fuzzer).
        .target(name: "CFuzzDriver"),
        // The driver every target calls from its `<Target>_main`, input readers and checks.
        .target(name: "FuzzSupport", dependencies: ["CFuzzDriver"]),
        // What both configuration targets check.
        .target(
            name: "FuzzConfigChecks",
            dependencies: ["FuzzSupport", .product(name: "SigilCore", package: "sigil"), .product(name: "SigilServer", package: "sigil")]),
    ]
)

/// One executable per fuzz target. Each has `@_cdecl("<Name>_main")`, which SwiftPM makes the
/// program's entry point (scripts/fuzz finds the targets by it), and a corpus in Corpus/<Name>.
let targets: [(name: String, dependencies: [Target.Dependency])] = [
    ("FuzzCanonicalJSON", [.product(name: "SigilCore", package: "sigil")]),
    ("FuzzKeyFile", [.product(name: "SigilCore", package: "sigil")]),
    ("FuzzXMatrix", [.product(name: "SigilCore", package: "sigil")]),
    ("FuzzEncodings", [.product(name: "SigilCore", package: "sigil")]),
    ("FuzzWire", [.product(name: "SigilCore", package: "sigil")]),
    ("FuzzConfig", ["FuzzConfigChecks"]),
    ("FuzzConfigStructured", ["FuzzConfigChecks"]),
    // SigilServer's connection engine, driven in process (@testable: the engine is internal).
    ("FuzzConnectionEngine", [.product(name: "SigilCore", package: "sigil"), .product(name: "SigilServer", package: "sigil")]),
]

for target in targets {
    package.targets.append(.executableTarget(name: target.name, dependencies: ["FuzzSupport"] + target.dependencies))
}
