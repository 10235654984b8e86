import Foundation
import SigilCore
import SigilTestSupport
import Testing

/// The command-line tools under test.
enum Tool {
    static let generate = Binaries.path("generate_signing_key")
    static let combine = Binaries.path("combine_signing_keys")
    static let sigil = Binaries.path("sigil")
}

/// MMR's own key fixtures (research notes §1.2–1.4, §1.9), and the spec's test key.
enum MMRFixtures {
    struct Key {
        let version: String
        /// The seed exactly as the fixture file holds it.
        let seedText: String
        var id: String { "ed25519:" + version }
        /// Canonical padded base64 (MMR and Dendrite bodies).
        var paddedSeed: String { Base64.encode(seed, padded: true) }
        /// Canonical unpadded base64 (Synapse lines).
        var unpaddedSeed: String { Base64.encode(seed) }
        var seed: [UInt8] { Base64.decode(seedText)! }
        var publicKey: String { ToolSeeds.publicKey(seedText: seedText) }
    }

    static let mmrA = Key(version: "e5d0oC", seedText: "PJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcgc=")
    static let mmrB = Key(version: "CjtBYA", seedText: "Xj/gSXAtSOTPG54sAWjm9BMVNX/Pa8ujIzwYbvLk7mM=")
    static let dendriteA = Key(version: "1Pu3u3", seedText: "1Pu3u3solToI2pTdsHA4wj05bANnzPwJoxPepw2he2s=")
    static let dendriteB = Key(version: "wBZqM2", seedText: "YOA4wuCQ+Wh7Vr+zmYSZpScnrgsrSAVtP89hn0zPO+s=")
    static let synapseA = Key(version: "a_RVfN", seedText: "wdSWsTNSOmMuNA1Ej6JUyeNbiBEt5jexHmVs7mHKZVc")
    static let synapseB = Key(version: "IZJY6A", seedText: "dvA8xfimUqog15zY6n5uRfVHb/pQ0sw9jRORJslYsoI")
    static let spec = Key(version: "1", seedText: TestKeys.specSeed)

    static let all = [mmrA, mmrB, dendriteA, dendriteB, synapseA, synapseB, spec]

    /// Public keys verified against MMR's tests and PyNaCl (research notes §1.9, §3.7).
    static let verifiedPublicKeys = [
        mmrA.version: "TohekYXzLx7VzV8FtLQlI3XsSdPv1CjhVYY5rZmFCvU",
        dendriteA.version: "uBatSEbBO6u7SNwvNwVFCD4XGaS0ikPI1PMgP5nlh3c",
        synapseA.version: "N1wtx39rXnuCsbjt3Yhrb0jkPI/zI5kphIV9ai1enW0",
        spec.version: TestKeys.specPublicKey,
    ]

    /// One MMR block, byte for byte as MMR's encoder writes it (142 bytes).
    static func mmrBlock(_ key: Key) -> String {
        "-----BEGIN MMR PRIVATE KEY-----\nKey-ID: \(key.id)\nVersion: 1\n\n\(key.paddedSeed)\n-----END MMR PRIVATE KEY-----\n"
    }

    static func dendriteBlock(_ key: Key) -> String {
        "-----BEGIN MATRIX PRIVATE KEY-----\nKey-ID: \(key.id)\n\n\(key.paddedSeed)\n-----END MATRIX PRIVATE KEY-----\n"
    }

    static func synapseLine(_ key: Key) -> String { "ed25519 \(key.version) \(key.unpaddedSeed)" }

    /// A whole file as MMR's tools write it.
    static func file(_ keys: [Key], format: KeyFileFormat) -> String {
        switch format {
        case .mmr: return keys.map(mmrBlock).joined()
        case .dendrite: return keys.map(dendriteBlock).joined()
        case .synapse: return keys.map(synapseLine).joined(separator: "\n")
        }
    }

    /// The multi-key files of MMR's tests.
    static let mmrTwo = file([mmrA, mmrB], format: .mmr)
    static let dendriteTwo = file([dendriteA, dendriteB], format: .dendrite)
    /// As in MMR's test: no trailing newline.
    static let synapseTwo =
        "ed25519 a_RVfN wdSWsTNSOmMuNA1Ej6JUyeNbiBEt5jexHmVs7mHKZVc\ned25519 IZJY6A dvA8xfimUqog15zY6n5uRfVHb/pQ0sw9jRORJslYsoI"
}

/// Everything derived from a seed that must never appear in what a tool prints.
struct SeedMaterial: Sendable {
    let label: String
    /// Every 16-character window of every encoding of the seed and of the 64-byte expanded secret
    /// key. Any longer leak (the whole seed, padded or not, in hex…) contains one of these.
    let windows: Set<String>

    static let windowLength = 16

    init(label: String, seedText: String) {
        self.label = label
        let seed = Base64.decode(seedText)!
        precondition(seed.count == 32, "\(label): not a 32-byte seed")
        let publicKey = Base64.decode(ToolSeeds.publicKey(seedText: seedText))!
        let expanded = seed + publicKey
        let unpadded = Base64.encode(seed)
        let padded = Base64.encode(seed, padded: true)
        let urlSafe = unpadded.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        let hex = seed.map { String(format: "%02x", $0) }.joined()
        var windows = Set<String>()
        for text in [seedText, unpadded, padded, urlSafe, hex, hex.uppercased()] {
            windows.formUnion(Self.windows(of: text))
        }
        // The expanded key's base64 starts with the seed's; its windows that reach into the public
        // half still carry seed bits. Windows lying wholly in the public half are public.
        let expandedText = Base64.encode(expanded, padded: true)
        let seedChars = Base64.encodedCount(32, padded: false)  // 43: the last one mixes seed and public bits
        for start in 0..<seedChars {
            let window = Self.substring(expandedText, start, Self.windowLength)
            windows.insert(window)
        }
        self.windows = windows
    }

    static func substring(_ text: String, _ start: Int, _ length: Int) -> String {
        let utf8 = Array(text.utf8)
        return String(decoding: utf8[start..<min(utf8.count, start + length)], as: UTF8.self)
    }

    static func windows(of text: String) -> Set<String> {
        let utf8 = Array(text.utf8)
        guard utf8.count >= windowLength else { return [text] }
        return Set((0...(utf8.count - windowLength)).map { String(decoding: utf8[$0..<($0 + windowLength)], as: UTF8.self) })
    }

    /// The windows of `text` that are windows of this seed.
    func leaks(in text: String) -> [String] {
        let utf8 = Array(text.utf8)
        guard utf8.count >= Self.windowLength else { return [] }
        var found: [String] = []
        for start in 0...(utf8.count - Self.windowLength) {
            let window = String(decoding: utf8[start..<(start + Self.windowLength)], as: UTF8.self)
            if windows.contains(window) { found.append(window) }
        }
        return found
    }
}

enum ToolSeeds {
    /// The public key of a seed, derived in-process (independently of the executables under test).
    static func publicKey(seedText: String) -> String {
        let file = try! KeyFile(fixture: "ed25519 x \(seedText)")
        return try! file.loadKeys(lockPolicy: .warn)[0].publicKey.base64
    }

    /// Seed texts in a key file of any of the three formats (test files only).
    static func seedTexts(inKeyFile text: String) -> [String] {
        var seeds: [String] = []
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("ed25519 ") {
                let fields = line.split(separator: " ")
                if fields.count >= 3 { seeds.append(String(fields[2])) }
            } else if !line.isEmpty, !line.hasPrefix("-----"), !line.contains(":"), line.count >= 43 {
                seeds.append(line)
            }
        }
        return seeds.filter { Base64.decode($0)?.count == 32 }
    }

    static let fixtureMaterial: [SeedMaterial] = MMRFixtures.all.map { SeedMaterial(label: $0.id, seedText: $0.seedText) }

    /// Expects that `text` holds no material of any of `seeds`.
    static func expectClean(
        _ text: String, _ what: String, seeds: [SeedMaterial] = fixtureMaterial, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for seed in seeds {
            let leaks = seed.leaks(in: text)
            #expect(
                leaks.isEmpty, "\(what) leaks material of seed \(seed.label): \(leaks.prefix(3))\n\(text)", sourceLocation: sourceLocation)
        }
    }
}

/// Runs the tools for one test, keeps everything they print, and checks at the end that none
/// of it holds key material: of MMR's fixtures, the spec key, or any key the test generated.
final class SecretWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var outputs: [(String, ProcessResult)] = []
    private var extraSeeds: [SeedMaterial] = []

    @discardableResult
    func run(
        _ executable: String, _ arguments: [String], input: String? = nil, environment: [String: String]? = nil,
        currentDirectory: String? = nil, timeout: Double = 60
    ) throws -> ProcessResult {
        let result = try SigilTestSupport.run(
            executable, arguments, input: input, environment: environment, currentDirectory: currentDirectory, timeout: timeout)
        record(([executable.split(separator: "/").last.map(String.init) ?? executable] + arguments).joined(separator: " "), result)
        return result
    }

    /// Runs `executable` under a given umask (through /bin/sh, so only the child's umask changes).
    @discardableResult
    func run(umask mask: String, _ executable: String, _ arguments: [String], currentDirectory: String? = nil) throws -> ProcessResult {
        let result = try SigilTestSupport.run(
            "/bin/sh", ["-c", "umask \(mask) && exec \"$0\" \"$@\"", executable] + arguments, currentDirectory: currentDirectory)
        record("umask \(mask); \(executable) \(arguments.joined(separator: " "))", result)
        return result
    }

    func record(_ command: String, _ result: ProcessResult) {
        lock.withLock { outputs.append((command, result)) }
    }

    /// Adds the seeds of a key file a tool wrote to those that must not be printed.
    func learnSeeds(fromKeyFile path: String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let seeds = ToolSeeds.seedTexts(inKeyFile: text).map { SeedMaterial(label: "\(path) seed", seedText: $0) }
        lock.withLock { extraSeeds += seeds }
    }

    var count: Int { lock.withLock { outputs.count } }

    /// Nothing any recorded invocation printed holds key material.
    func expectNoSecrets(sourceLocation: SourceLocation = #_sourceLocation) {
        let (outputs, seeds) = lock.withLock { (self.outputs, ToolSeeds.fixtureMaterial + extraSeeds) }
        for (command, result) in outputs {
            ToolSeeds.expectClean(result.stdout, "stdout of `\(command)`", seeds: seeds, sourceLocation: sourceLocation)
            ToolSeeds.expectClean(result.stderr, "stderr of `\(command)`", seeds: seeds, sourceLocation: sourceLocation)
        }
    }
}

/// Key-file layouts, matched exactly.
enum KeyLayout {
    static let version = "([A-Za-z0-9]{6})"
    static let paddedSeed = "([A-Za-z0-9+/]{43}=)"
    static let unpaddedSeed = "([A-Za-z0-9+/]{43})"

    static func pattern(_ format: KeyFileFormat) -> String {
        switch format {
        case .mmr:
            return
                "-----BEGIN MMR PRIVATE KEY-----\nKey-ID: ed25519:\(version)\nVersion: 1\n\n\(paddedSeed)\n-----END MMR PRIVATE KEY-----\n"
        case .dendrite:
            return "-----BEGIN MATRIX PRIVATE KEY-----\nKey-ID: ed25519:\(version)\n\n\(paddedSeed)\n-----END MATRIX PRIVATE KEY-----\n"
        case .synapse:
            return "ed25519 \(version) \(unpaddedSeed)"
        }
    }

    static func byteCount(_ format: KeyFileFormat) -> Int {
        switch format {
        case .mmr: return 142
        case .dendrite: return 137
        case .synapse: return 58
        }
    }

    /// The version and seed of a single generated key, when `text` is exactly that layout.
    static func match(_ text: String, format: KeyFileFormat) -> (version: String, seed: String)? {
        guard let regex = try? Regex(pattern(format)), let match = text.wholeMatch(of: regex),
            let version = match.output[1].substring, let seed = match.output[2].substring
        else { return nil }
        return (String(version), String(seed))
    }
}

extension TemporaryDirectory {
    func read(_ name: String) throws -> String {
        try String(contentsOfFile: file(name), encoding: .utf8)
    }

    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: file(name)) }

    /// Permission bits of a file.
    func mode(_ name: String) -> Int {
        var status = stat()
        guard stat(file(name), &status) == 0 else { return -1 }
        return Int(status.st_mode & 0o7777)
    }

    func inode(_ name: String) -> UInt64 {
        var status = stat()
        guard stat(file(name), &status) == 0 else { return 0 }
        return UInt64(status.st_ino)
    }

    var entries: [String] { (try? FileManager.default.contentsOfDirectory(atPath: path).sorted()) ?? [] }
}

extension ProcessResult {
    /// `sigil keys show`'s lines for keys: (ID, public key), in order.
    var shownKeys: [(id: String, publicKey: String)] {
        stdout.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, fields[0].hasPrefix("ed25519:") else { return nil }
            return (String(fields[0]), String(fields[1]))
        }
    }
}
