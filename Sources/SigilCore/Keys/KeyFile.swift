/// The three key-file formats MMR's tools read and write.
public enum KeyFileFormat: String, Sendable, CaseIterable, CustomStringConvertible {
    /// PEM `MMR PRIVATE KEY` with `Key-ID` and `Version: 1` headers, padded base64 seed.
    case mmr
    /// Lines `ed25519 <version> <unpadded base64 seed>`.
    case synapse
    /// PEM `MATRIX PRIVATE KEY` with a `Key-ID` header.
    case dendrite

    public var description: String { rawValue }

    var pemType: String? {
        switch self {
        case .mmr: return "MMR PRIVATE KEY"
        case .dendrite: return "MATRIX PRIVATE KEY"
        case .synapse: return nil
        }
    }
}

/// A parsed key file: its format and keys in file order. The seeds stay in the guarded copy of
/// the file until `load` expands them into a key arena.
public struct KeyFile: Sendable {
    public struct Entry: Sendable {
        public let id: KeyID
        /// 1-based line where the key starts.
        public let line: Int
        /// The base64 seed text within the file contents.
        let seedText: Range<Int>
    }

    /// The largest key file read: far more than any real one, small enough to hold in locked memory.
    public static let maxSize = 1 << 20

    /// The longest key version (the part after `ed25519:`) read from a key file, in bytes, in
    /// every format: real versions are a few characters (`a_RVfN`), and the bound is checked on
    /// the file's bytes before a version is ever turned into a `String`.
    public static let maxVersionLength = 64

    public let path: String
    public let format: KeyFileFormat
    public let entries: [Entry]
    /// The file's bytes, in guarded memory.
    let contents: GuardedBuffer

    public var keyIDs: [KeyID] { entries.map(\.id) }

    /// Parses a file whose bytes are already in guarded memory, detecting the format in MMR's
    /// order (Synapse, Dendrite, MMR).
    public init(contents: GuardedBuffer, path: String) throws(KeyFileError) {
        try self.init(contents: contents, length: contents.count, path: path)
    }

    /// Parses the first `length` bytes of `contents` (a reused scratch buffer larger than the
    /// file): valid until the buffer is reused, so load the keys before reading the next file.
    public init(contents: GuardedBuffer, length: Int, path: String) throws(KeyFileError) {
        precondition(length <= contents.count, "key file length beyond its buffer")
        let parsed = try contents.withUnsafeBytes { (bytes) throws(KeyFileError) in
            try KeyFileParser(bytes: UnsafeRawBufferPointer(rebasing: bytes[..<length]), path: path).parse()
        }
        self.path = path
        self.contents = contents
        self.format = parsed.format
        self.entries = parsed.entries
    }

    /// Parses key-file text that is already in ordinary memory: test fixtures and published
    /// test keys only. Real key files are read straight into guarded memory by `SigilPosix`.
    public init(fixture text: String, path: String = "<fixture>", lockPolicy: MemoryLockPolicy = .warn) throws {
        let utf8 = Array(text.utf8)
        let buffer = try GuardedBuffer(count: utf8.count, lockPolicy: lockPolicy)
        buffer.withUnsafeMutableBytes { $0.copyBytes(from: utf8) }
        try self.init(contents: buffer, path: path)
    }

    /// Expands every seed into `arena`, in file order.
    public func load(into arena: inout KeyArena.Builder) -> [(id: KeyID, slot: Int, publicKey: PublicKey)] {
        entries.map { entry in
            let (slot, publicKey) = arena.add { (seed: UnsafeMutableRawBufferPointer) in
                contents.withUnsafeBytes { bytes in
                    // Validated by the parser: decodes to exactly 32 bytes.
                    do {
                        try Base64.decode(UnsafeRawBufferPointer(rebasing: bytes[entry.seedText]), skippingWhitespace: true, into: seed)
                    } catch {
                        preconditionFailure("seed validated at parse time no longer decodes")
                    }
                }
            }
            return (entry.id, slot, publicKey)
        }
    }

    /// Loads the keys into a fresh arena of their own (tools that handle one file).
    public func loadKeys(lockPolicy: MemoryLockPolicy) throws(GuardedMemoryError) -> [SigningKey] {
        var builder = try KeyArena.Builder(capacity: entries.count, lockPolicy: lockPolicy)
        let loaded = load(into: &builder)
        let arena = builder.finish()
        return loaded.map { SigningKey(id: $0.id, publicKey: $0.publicKey, arena: arena, slot: $0.slot) }
    }
}
