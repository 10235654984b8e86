internal import CSodiumShims

/// An Ed25519 public key. Public material: fine in ordinary memory.
public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
    // Four words instead of an Array: no heap allocation, cheap to copy and compare.
    private var storage: (UInt64, UInt64, UInt64, UInt64)

    public static let zero = PublicKey(storage: (0, 0, 0, 0))

    private init(storage: (UInt64, UInt64, UInt64, UInt64)) { self.storage = storage }

    /// From exactly 32 bytes.
    public init?<C: Collection<UInt8>>(bytes: C) {
        guard bytes.count == Ed25519.publicKeyBytes else { return nil }
        self = .zero
        withUnsafeMutableBytes { out in
            for (index, byte) in bytes.enumerated() { out[index] = byte }
        }
    }

    /// From unpadded (or padded) standard base64, as published in key documents.
    public init?(base64: some StringProtocol) {
        guard let bytes = Base64.decode(base64) else { return nil }
        self.init(bytes: bytes)
    }

    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
    public var base64: String { withUnsafeBytes { Base64.encode($0) } }
    public var description: String { base64 }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: storage, body)
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeMutableBytes(of: &storage, body)
    }

    public static func == (a: PublicKey, b: PublicKey) -> Bool {
        a.storage.0 == b.storage.0 && a.storage.1 == b.storage.1 && a.storage.2 == b.storage.2
            && a.storage.3 == b.storage.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(storage.0)
        hasher.combine(storage.1)
        hasher.combine(storage.2)
        hasher.combine(storage.3)
    }

    /// Checks a detached signature. Results are libsodium's, including its rejection of
    /// non-canonical S values and small-order points.
    public func verify(signature: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer) -> Bool {
        guard signature.count == Ed25519.signatureBytes else { return false }
        return withUnsafeBytes { pk in
            CSodiumShims_verify_detached(signature.baseAddress, message.baseAddress, message.count, pk.baseAddress) == 0
        }
    }

    public func verify<S: Collection<UInt8>, M: Collection<UInt8>>(signature: S, message: M) -> Bool {
        Array(signature).withUnsafeBytes { sig in
            Array(message).withUnsafeBytes { msg in verify(signature: sig, message: msg) }
        }
    }
}

/// An Ed25519 signature: 64 public bytes.
public struct Signature: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == Ed25519.signatureBytes else { return nil }
        self.bytes = bytes
    }

    public init?(base64: some StringProtocol) {
        guard let bytes = Base64.decode(base64) else { return nil }
        self.init(bytes: bytes)
    }

    public var base64: String { Base64.encode(bytes) }
    public var description: String { base64 }
}

/// A signing key: a key ID, its public key, and a slot in a guarded arena that only this
/// module can read. Copies share the arena; the secret never leaves it.
public struct SigningKey: Sendable, CustomStringConvertible {
    public let id: KeyID
    public let publicKey: PublicKey
    let arena: KeyArena
    let slot: Int

    public init(id: KeyID, publicKey: PublicKey, arena: KeyArena, slot: Int) {
        precondition(slot >= 0 && slot < arena.count, "key slot out of range")
        self.id = id
        self.publicKey = publicKey
        self.arena = arena
        self.slot = slot
    }

    /// Writes the 64-byte signature of `message` to `signature`. No allocation.
    @inline(__always)
    public func sign(_ message: UnsafeRawBufferPointer, into signature: UnsafeMutableRawPointer) {
        arena.withSecretKey(slot: slot) { sk in
            let rc = CSodiumShims_sign_detached(signature, message.baseAddress, message.count, sk)
            precondition(rc == 0, "crypto_sign_detached failed")
        }
    }

    public func sign(_ message: UnsafeRawBufferPointer) -> Signature {
        var out = [UInt8](repeating: 0, count: Ed25519.signatureBytes)
        out.withUnsafeMutableBytes { sign(message, into: $0.baseAddress!) }
        return Signature(bytes: out)!
    }

    public func sign<C: Collection<UInt8>>(_ message: C) -> Signature {
        if let done = message.withContiguousStorageIfAvailable({ sign(UnsafeRawBufferPointer($0)) }) {
            return done
        }
        return Array(message).withUnsafeBytes { sign($0) }
    }

    /// Runs `body` with the seed (for key-file writers only). Never copy it out of `body`.
    public func withSeed<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try arena.withSeed(slot: slot, body)
    }

    /// Never prints key material.
    public var description: String { "\(id) (public \(publicKey.base64))" }
}
