internal import CSodium
internal import CSodiumShims

/// The secret keys of one keyring, all in a single guarded allocation.
///
/// Guard pages cost 3–4 pages per `sodium_malloc`, and `sodium_free` costs microseconds, so keys
/// share one arena that is built once, made read-only, and freed (zeroed) as a whole when the
/// last keyring using it goes away. Each slot holds libsodium's 64-byte secret key, which is the
/// 32-byte seed followed by the public key.
public final class KeyArena: Sendable {
    let buffer: GuardedBuffer
    /// Number of keys held.
    public let count: Int
    /// Whether the keys are locked into RAM.
    public var isLocked: Bool { buffer.isLocked }

    fileprivate init(buffer: GuardedBuffer, count: Int) {
        self.buffer = buffer
        self.count = count
    }

    /// Where slot 0's secret key starts, for prefetch hints only (`Keyring.serverIndex`): valid
    /// while this arena lives, and never to be read through.
    var hintAddress: UnsafeRawPointer {
        buffer.withUnsafeBytes { $0.baseAddress! }
    }

    @inline(__always)
    func withSecretKey<R>(slot: Int, _ body: (UnsafeRawPointer) -> R) -> R {
        precondition(slot >= 0 && slot < count, "key slot out of range")
        return buffer.withUnsafeBytes { body($0.baseAddress! + slot * Ed25519.secretKeyBytes) }
    }

    /// The seed of a slot, for writing key files. Valid only inside `body`; never copy it out.
    public func withSeed<R>(slot: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        precondition(slot >= 0 && slot < count, "key slot out of range")
        return try buffer.withUnsafeBytes { whole in
            try body(
                UnsafeRawBufferPointer(
                    rebasing: whole[(slot * Ed25519.secretKeyBytes)..<(slot * Ed25519.secretKeyBytes + Ed25519.seedBytes)]))
        }
    }

    /// Fills an arena. Seeds are written into a scratch slot inside the arena, expanded there,
    /// and the scratch slot is wiped, so no seed ever passes through ordinary memory.
    public struct Builder: ~Copyable {
        private var buffer: GuardedBuffer
        private var capacity: Int
        private var used = 0
        private let lockPolicy: MemoryLockPolicy

        public init(capacity: Int, lockPolicy: MemoryLockPolicy) throws(GuardedMemoryError) {
            precondition(sodiumSizesAgree, "libsodium's Ed25519 sizes differ from what Sigil was built for")
            self.capacity = capacity
            self.lockPolicy = lockPolicy
            // One extra slot at the end is the seed scratch area.
            buffer = try GuardedBuffer(count: (capacity + 1) * Ed25519.secretKeyBytes, lockPolicy: lockPolicy)
        }

        /// Keys added so far.
        public var count: Int { used }

        /// The bytes of guarded memory an arena of `keys` keys takes (what it locks).
        public static func bytes(forKeys keys: Int) -> Int { (keys + 1) * Ed25519.secretKeyBytes }

        /// Makes room for at least `extra` more keys: a larger guarded buffer, the keys copied
        /// across inside guarded memory, the old buffer freed (and so zeroed).
        public mutating func reserve(_ extra: Int) throws(GuardedMemoryError) {
            guard used + extra > capacity else { return }
            let newCapacity = max(used + extra, capacity * 2)
            let larger = try GuardedBuffer(count: (newCapacity + 1) * Ed25519.secretKeyBytes, lockPolicy: lockPolicy)
            let count = used * Ed25519.secretKeyBytes
            buffer.withUnsafeBytes { old in
                larger.withUnsafeMutableBytes { new in
                    if count > 0 { new.baseAddress!.copyMemory(from: old.baseAddress!, byteCount: count) }
                }
            }
            buffer = larger
            capacity = newCapacity
        }

        /// Whether the memory is locked into RAM.
        public var isLocked: Bool { buffer.isLocked }

        /// Adds a key whose 32-byte seed `writeSeed` writes into the buffer it is given.
        /// Returns the slot and the public key.
        public mutating func add<E: Error>(
            seed writeSeed: (UnsafeMutableRawBufferPointer) throws(E) -> Void
        ) throws(E) -> (slot: Int, publicKey: PublicKey) {
            precondition(used < capacity, "key arena is full")
            let slot = used
            let capacity = self.capacity
            let publicKey: PublicKey = try buffer.withUnsafeMutableBytes { (whole) throws(E) -> PublicKey in
                let scratch = UnsafeMutableRawBufferPointer(
                    rebasing: whole[(capacity * Ed25519.secretKeyBytes)..<(capacity * Ed25519.secretKeyBytes + Ed25519.seedBytes)])
                defer { sodium_memzero(scratch.baseAddress, scratch.count) }
                try writeSeed(scratch)
                var pk = PublicKey.zero
                pk.withUnsafeMutableBytes { pkBytes in
                    let rc = CSodiumShims_seed_keypair(
                        pkBytes.baseAddress, whole.baseAddress! + slot * Ed25519.secretKeyBytes, scratch.baseAddress)
                    precondition(rc == 0, "crypto_sign_seed_keypair failed")
                }
                return pk
            }
            used += 1
            return (slot, publicKey)
        }

        /// Adds a freshly generated key.
        public mutating func addRandom() -> (slot: Int, publicKey: PublicKey) {
            add { seed in CSodiumShims_randombytes(seed.baseAddress, seed.count) }
        }

        /// Copies a slot of another arena (to re-use a loaded key in a new keyring).
        public mutating func add(copyOf slot: Int, in other: KeyArena) -> (slot: Int, publicKey: PublicKey) {
            add { seed in
                other.withSeed(slot: slot) { source in seed.copyMemory(from: source) }
            }
        }

        /// Seals the arena read-only and hands it over.
        public consuming func finish() -> KeyArena {
            buffer.makeReadOnly()
            return KeyArena(buffer: buffer, count: used)
        }
    }
}
