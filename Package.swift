// swift-tools-version: 6.1
import PackageDescription

// Layers, lowest first. Each target imports only targets above it in this list:
//   C shims -> SigilCore (pure logic) -> SigilPosix (syscalls) -> SigilServer / SigilClient -> executables.
let package = Package(
    name: "sigil",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "SigilCore", targets: ["SigilCore"]),
        .library(name: "SigilClient", targets: ["SigilClient"]),
        .library(name: "SigilServer", targets: ["SigilServer"]),
        .library(name: "SigilPosix", targets: ["SigilPosix"]),
        .executable(name: "sigild", targets: ["sigild"]),
        .executable(name: "sigil", targets: ["sigil"]),
        .executable(name: "generate_signing_key", targets: ["generate_signing_key"]),
        .executable(name: "combine_signing_keys", targets: ["combine_signing_keys"]),
        .executable(name: "sigil-bench", targets: ["sigil-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // Layer 1: C.
        .systemLibrary(
            name: "CSodium", pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"]), .brew(["libsodium"])]),
        .systemLibrary(
            name: "CLibUV", pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"]), .brew(["libuv"])]),
        .target(name: "CSodiumShims", dependencies: ["CSodium"]),
        .target(name: "CSigilLinux", cSettings: [.define("_GNU_SOURCE")]),

        // Layer 2: pure logic, no I/O.
        .target(name: "SigilCore", dependencies: ["CSodium", "CSodiumShims"]),

        // Layer 3: every syscall, behind one wrapper file, plus file and socket helpers built on it.
        .target(name: "SigilPosix", dependencies: ["SigilCore", "CSigilLinux"]),

        // Layer 4: the daemon and the client library (no libuv in the client).
        .target(
            name: "SigilServer",
            dependencies: [
                "SigilCore", "SigilPosix", "CLibUV", "CSigilLinux", "CSodium",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]),
        .target(name: "SigilClient", dependencies: ["SigilCore", "SigilPosix"]),

        // Shared by the command-line tools: argument types and the key-file workflows.
        .target(
            name: "SigilTooling",
            dependencies: ["SigilCore", "SigilPosix", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        // Layer 5: thin executables.
        .executableTarget(
            name: "sigild",
            dependencies: [
                "SigilServer", "SigilCore", "SigilPosix",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "sigil",
            dependencies: [
                "SigilCore", "SigilPosix", "SigilClient", "SigilTooling",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "generate_signing_key",
            dependencies: ["SigilTooling", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(
            name: "combine_signing_keys",
            dependencies: ["SigilTooling", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .executableTarget(
            name: "sigil-bench",
            dependencies: [
                "SigilCore", "SigilPosix", "SigilClient", "CSodium", "CSodiumShims",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]),

        // Tests. SigilTestSupport holds what the test targets share (scratch directories, child
        // processes, the daemon fixture); it is not a product.
        .target(
            name: "SigilTestSupport",
            dependencies: ["SigilCore", "SigilPosix", "SigilClient"],
            path: "Tests/SigilTestSupport"),
        .testTarget(
            name: "SigilCoreTests",
            dependencies: ["SigilCore", "CSodium"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "SigilToolingTests", dependencies: ["SigilTooling", "SigilCore"]),
        .testTarget(
            name: "SigilServerTests",
            dependencies: ["SigilServer", "SigilCore", "SigilPosix", "SigilTestSupport"]),
        .testTarget(
            name: "SigilIntegrationTests",
            dependencies: [
                "SigilCore", "SigilPosix", "SigilClient", "SigilTestSupport",
                "sigild", "sigil", "sigil-bench", "generate_signing_key", "combine_signing_keys",
            ]),
    ]
)

for target in package.targets where target.type != .system {
    guard target.name.hasPrefix("Sigil") || target.type == .executable || target.type == .test else { continue }
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
        // Our own code builds without warnings; a new one fails the build (dependencies are not
        // affected: SwiftPM applies these settings to this package's targets only).
        .unsafeFlags(["-warnings-as-errors"]),
    ]
}
