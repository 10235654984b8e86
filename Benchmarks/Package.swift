// swift-tools-version: 6.1
import PackageDescription

// A package of its own, so a plain `swift build` of Sigil never builds ordo-one/benchmark.
// Run from this directory: swift package --disable-sandbox benchmark
let package = Package(
    name: "SigilBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "sigil", path: ".."),
        // MallocInterposer only: the default RuntimeInterposer trait needs a package that is
        // not in this machine's offline copy.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // libsodium under its own module name, for the raw baselines measured side by side.
        .systemLibrary(name: "CSodiumBench", path: "Sources/CSodiumBench", pkgConfig: "libsodium"),
        .executableTarget(
            name: "SigilBenchmarks",
            dependencies: [
                "CSodiumBench",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SigilCore", package: "sigil"),
                .product(name: "SigilServer", package: "sigil"),
                .product(name: "SigilPosix", package: "sigil"),
            ],
            path: "Benchmarks/SigilBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
    ]
)
