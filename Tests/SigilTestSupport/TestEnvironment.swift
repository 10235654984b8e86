import Foundation
import SigilPosix

/// The spec's test key, as fixtures for every integration test.
public enum TestKeys {
    /// The Matrix spec's published test seed (non-zero trailing bits included).
    public static let specSeed = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
    public static let specPublicKey = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
    public static let specSynapseFile = "ed25519 1 \(specSeed)\n"
    /// MMR's own test fixture (research notes §1.2), 142 bytes.
    public static let mmrFile = """
        -----BEGIN MMR PRIVATE KEY-----
        Key-ID: ed25519:e5d0oC
        Version: 1

        PJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcgc=
        -----END MMR PRIVATE KEY-----

        """
    public static let mmrPublicKey = "TohekYXzLx7VzV8FtLQlI3XsSdPv1CjhVYY5rZmFCvU"
}

/// Where `swift build` put the executables: next to the test bundle.
public enum Binaries {
    public static let directory: URL = {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // On Linux the test runner is `<bin>/<package>PackageTests.xctest`; on macOS the bundle is a directory.
        if url.pathExtension == "xctest" { url.deleteLastPathComponent() }
        return url
    }()

    public static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// The repository's root, for the units in systemd/, docs/ and scripts/.
public enum Repository {
    public static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    public static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }
}

/// A scratch directory, removed at the end.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init() {
        // Short paths: Unix socket paths are limited to 107 bytes.
        let template = "/tmp/sigil-test-XXXXXX"
        var bytes = Array(template.utf8CString)
        let made = bytes.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    /// Writes a file with the given mode (0600 by default, as key files must be).
    @discardableResult
    public func write(_ name: String, _ contents: String, mode: Int = 0o600) -> String {
        let target = file(name)
        _ = FileManager.default.createFile(atPath: target, contents: Data(contents.utf8), attributes: [.posixPermissions: mode])
        chmod(target, mode_t(mode))
        return target
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Finds a program on PATH (and in the usual system directories, which a test runner's PATH
/// may lack); nil when it is not installed, so a test can skip with a reason.
public func findProgram(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let directories = path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    for directory in directories {
        let candidate = directory + "/" + name
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
public func waitUntil(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// A test failure raised by the support code, with what it saw.
public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Random values for property tests, from a seed that is printed, so a failure can be replayed
/// with `SIGIL_TEST_SEED=<seed>`.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public let seed: UInt64
    private var state: UInt64

    /// `name` labels the printed line; the seed comes from SIGIL_TEST_SEED or is fresh.
    public init(_ name: String) {
        let seed = ProcessInfo.processInfo.environment["SIGIL_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        self.init(seed: seed)
        print("\(name): SIGIL_TEST_SEED=\(seed)")
    }

    public init(seed: UInt64) {
        self.seed = seed
        state = seed
    }

    /// SplitMix64.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The sanitizer the suite runs under (scripts/sanitize sets SIGIL_SANITIZER), for the few tests
/// that cannot work under one; each such test says why in its trait.
public enum Sanitizer: String, Sendable {
    case address
    case thread

    public static let current: Sanitizer? = ProcessInfo.processInfo.environment["SIGIL_SANITIZER"].flatMap(Sanitizer.init(rawValue:))

    /// No sanitizer: what tests that see locked memory, the seccomp filter or timings need.
    public static var none: Bool { current == nil }
    /// No sanitizer. The runtimes of ASan and TSan share an mlock interceptor that returns
    /// success and locks nothing ("ignores mlock"): under TSan, sigild with RLIMIT_MEMLOCK 0
    /// reported its keys locked.
    public static var locksMemory: Bool { current == nil }
}
