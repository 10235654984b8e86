import CSodium
import Testing

@testable import SigilCore

@Suite("Guarded memory and the key arena")
struct GuardedMemoryTests {
    @Test("a guarded buffer starts zeroed, holds what is written, and wipes")
    func buffer() throws {
        let buffer = try GuardedBuffer(count: 100, lockPolicy: .warn)
        #expect(buffer.count == 100)
        #expect(buffer.testBytes == [UInt8](repeating: 0, count: 100))
        buffer.withUnsafeMutableBytes { $0.copyBytes(from: (0..<100).map { UInt8($0) }) }
        #expect(buffer.testBytes == (0..<100).map { UInt8($0) })
        buffer.wipe()
        #expect(buffer.testBytes == [UInt8](repeating: 0, count: 100))
        // Read-only pages still read; read-write again allows writes.
        buffer.makeReadOnly()
        #expect(buffer.testBytes.count == 100)
        buffer.makeReadWrite()
        buffer.withUnsafeMutableBytes { $0[0] = 42 }
        #expect(buffer.testBytes.first == 42)
    }

    @Test("an empty buffer is allowed (empty key files)")
    func emptyBuffer() throws {
        let buffer = try GuardedBuffer(count: 0, lockPolicy: .warn)
        #expect(buffer.count == 0)
        #expect(buffer.testBytes.isEmpty)
    }

    @Test("memory errors explain themselves without key bytes")
    func errors() {
        #expect(GuardedMemoryError.allocationFailed(bytes: 64).description.contains("64 bytes"))
        let lock = GuardedMemoryError.lockFailed(bytes: 128, memlockLimit: 65536).description
        #expect(lock.contains("128 bytes") && lock.contains("65536 bytes") && lock.contains("memory_lock: warn"))
        #expect(GuardedMemoryError.lockFailed(bytes: 1, memlockLimit: .max).description.contains("unlimited"))
        #expect(GuardedMemoryError.lockFailed(bytes: 1, memlockLimit: nil).description.contains("unknown"))
        #expect(MemoryLockPolicy(rawValue: "require") == .require)
        #expect(MemoryLockPolicy(rawValue: "warn") == .warn)
        #expect(MemoryLockPolicy.allCases.count == 2)
    }

    @Test("the require policy either locks or refuses with lockFailed")
    func requirePolicy() {
        do {
            let buffer = try GuardedBuffer(count: 64, lockPolicy: .require)
            #expect(buffer.isLocked)
        } catch {
            guard case .lockFailed(let bytes, _) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(bytes == 64)
        }
    }

    @Test("the arena expands seeds in slot order, matching libsodium's key pairs")
    func arena() throws {
        #expect(sodium_init() >= 0)
        let seeds = (0..<3).map { n in (0..<32).map { UInt8(($0 * 7 + n * 13) & 0xFF) } }
        var builder = try KeyArena.Builder(capacity: 3, lockPolicy: .warn)
        var results: [(slot: Int, publicKey: PublicKey)] = []
        for seed in seeds { results.append(builder.add { $0.copyBytes(from: seed) }) }
        let arena = builder.finish()
        #expect(arena.count == 3)
        #expect(results.map(\.slot) == [0, 1, 2])
        for (index, seed) in seeds.enumerated() {
            var pk = [UInt8](repeating: 0, count: 32)
            var sk = [UInt8](repeating: 0, count: 64)
            #expect(crypto_sign_seed_keypair(&pk, &sk, seed) == 0)
            #expect(results[index].publicKey.bytes == pk)
            #expect(arena.withSeed(slot: index) { Array($0) } == seed)
        }
    }

    @Test("a throwing seed writer leaves the arena unchanged and passes its error through")
    func throwingSeedWriter() throws {
        struct Refused: Error, Equatable {}
        var builder = try KeyArena.Builder(capacity: 2, lockPolicy: .warn)
        #expect(throws: Refused()) {
            _ = try builder.add { (_: UnsafeMutableRawBufferPointer) throws(Refused) in throw Refused() }
        }
        let (slot, _) = builder.add { $0.copyBytes(from: [UInt8](repeating: 9, count: 32)) }
        #expect(slot == 0)
        #expect(builder.finish().count == 1)
    }

    @Test("copying a slot from another arena keeps the key; random keys differ")
    func copyAndRandom() throws {
        var first = try KeyArena.Builder(capacity: 2, lockPolicy: .warn)
        let a = first.addRandom()
        let b = first.addRandom()
        #expect(a.publicKey != b.publicKey)
        let source = first.finish()

        var second = try KeyArena.Builder(capacity: 1, lockPolicy: .warn)
        let copy = second.add(copyOf: b.slot, in: source)
        let target = second.finish()
        #expect(copy.slot == 0)
        #expect(copy.publicKey == b.publicKey)
        #expect(target.withSeed(slot: 0) { Array($0) } == source.withSeed(slot: 1) { Array($0) })

        let original = SigningKey(id: KeyID(version: "b")!, publicKey: b.publicKey, arena: source, slot: b.slot)
        let copied = SigningKey(id: KeyID(version: "b")!, publicKey: copy.publicKey, arena: target, slot: copy.slot)
        let message = Array("same key, same signature".utf8)
        #expect(original.sign(message) == copied.sign(message))
    }

    @Test("a signing key prints its ID and public key, never its seed")
    func signingKeyDescription() throws {
        let seed = [UInt8](hex: TestKeys.specSeedHex)
        let key = try TestKeys.key(seed: seed, version: "1")
        #expect(key.description == "ed25519:1 (public \(TestKeys.specPublicKey))")
        #expect(!key.description.contains(Base64.encode(seed)))
        #expect(!String(reflecting: key.publicKey).contains(Base64.encode(seed)))
        #expect(key.withSeed { Array($0) } == seed)
    }

    @Test("non-contiguous messages sign like arrays")
    func signCollections() throws {
        let key = try TestKeys.random()
        let message = Array("collection".utf8)
        let expected = key.sign(message)
        #expect(key.sign(message.lazy.map { $0 }) == expected)
        #expect(key.sign(message[...]) == expected)
        #expect(message.withUnsafeBytes { key.sign($0) } == expected)
    }
}
