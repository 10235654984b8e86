internal import CSodiumShims

/// The keyring's server names, looked up by their bytes as they arrive in a request.
///
/// Open addressing over a power-of-two table at most half full, keyed by a seeded 64-bit hash of
/// the name's bytes. Not a `[String: Int]`: that lookup first had to build a `String` from the
/// request's bytes (a heap allocation for names over 15 bytes) and hash it with SipHash, which
/// with 100,000 servers cost more than the rest of the request's parsing. Callers only look up;
/// the names come from the operator's configuration, so a caller cannot lengthen a probe chain.
///
/// Each slot is one 64-byte cache line holding the hash's high bits, the server's index, the
/// arena slot of its signing key and, for names up to 50 bytes, the name itself: with origins
/// spread over 100,000 servers a lookup then misses the cache once, where separate arrays of
/// indices, tags and `String`s missed it three times (measured with `perf`: about 0.8 µs of a
/// 24 µs SIGN_REQUEST). The key's slot lets the caller fetch the key without first reading the
/// server's entry (`Keyring.serverIndex(forName:)`). Longer names are compared with the
/// keyring's `String`. 100,000 servers take 16 MiB.
struct ServerNameTable: Sendable {
    /// Slot layout: tag (UInt32), server index + 1 (Int32, 0 is empty), key slot (Int32, -1 for
    /// none), length (UInt16), name.
    static let slotBytes = 64
    static let inlineNameBytes = slotBytes - 14
    private static let keySlotOffset = 8
    private static let lengthOffset = 12
    private static let nameOffset = 14

    /// What a lookup finds: the name's index, and the slot of its key in the keyring's arena
    /// (-1 when the table was not told one).
    struct Entry {
        let index: Int
        let keySlot: Int
    }

    /// Owns the slots; immutable once built, so sharing it between loops is safe.
    private final class Slots: @unchecked Sendable {
        let base: UnsafeMutableRawPointer
        let count: Int

        init(count: Int) {
            self.count = count
            base = UnsafeMutableRawPointer.allocate(byteCount: count * ServerNameTable.slotBytes, alignment: ServerNameTable.slotBytes)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: count * ServerNameTable.slotBytes)
        }

        deinit { base.deallocate() }
    }

    private let slots: Slots
    private let mask: Int
    private let seed: UInt64
    /// The longest name's length: a longer one cannot be here, and is not hashed. The hash's cost
    /// grows with the length, and a request's origin can be 65,535 bytes.
    private let longest: Int

    /// `keySlots[i]`: the arena slot of the key of `names[i]`, or -1.
    init(_ names: [String], keySlots: [Int]? = nil) {
        precondition(keySlots == nil || keySlots!.count == names.count, "one key slot a name")
        var capacity = 8
        while capacity < names.count * 2 { capacity <<= 1 }
        let slots = Slots(count: capacity)
        var seed: UInt64 = 0
        withUnsafeMutableBytes(of: &seed) { CSodiumShims_randombytes($0.baseAddress, $0.count) }
        let mask = capacity - 1
        for (index, name) in names.enumerated() {
            var name = name
            name.withUTF8 { utf8 in
                let bytes = UnsafeRawBufferPointer(utf8)
                let hash = ServerNameTable.hash(bytes, seed: seed)
                var slot = Int(truncatingIfNeeded: hash) & mask
                while slots.base.load(fromByteOffset: slot * Self.slotBytes + 4, as: Int32.self) != 0 { slot = (slot + 1) & mask }
                let at = slots.base + slot * Self.slotBytes
                at.storeBytes(of: UInt32(truncatingIfNeeded: hash >> 32), as: UInt32.self)
                at.storeBytes(of: Int32(index + 1), toByteOffset: 4, as: Int32.self)
                at.storeBytes(of: Int32(keySlots?[index] ?? -1), toByteOffset: Self.keySlotOffset, as: Int32.self)
                at.storeBytes(of: UInt16(bytes.count), toByteOffset: Self.lengthOffset, as: UInt16.self)
                if bytes.count <= Self.inlineNameBytes, let source = bytes.baseAddress {
                    (at + Self.nameOffset).copyMemory(from: source, byteCount: bytes.count)
                }
            }
        }
        self.slots = slots
        self.mask = mask
        self.seed = seed
        longest = names.lazy.map(\.utf8.count).max() ?? 0
    }

    /// The entry of the name whose bytes are `bytes`: its index and its key slot. `nameAt` gives
    /// the names by index (read only for names longer than a slot holds).
    @inline(__always)
    func entry(of bytes: UnsafeRawBufferPointer, nameAt: (Int) -> String) -> Entry? {
        guard bytes.count <= longest else { return nil }
        let hash = ServerNameTable.hash(bytes, seed: seed)
        let tag = UInt32(truncatingIfNeeded: hash >> 32)
        var slot = Int(truncatingIfNeeded: hash) & mask
        let base = slots.base
        while true {
            let at = base + slot * Self.slotBytes
            let entry = at.load(fromByteOffset: 4, as: Int32.self)
            if entry == 0 { return nil }
            if at.load(as: UInt32.self) == tag, Int(at.load(fromByteOffset: Self.lengthOffset, as: UInt16.self)) == bytes.count {
                let index = Int(entry) - 1
                let found = Entry(index: index, keySlot: Int(at.load(fromByteOffset: Self.keySlotOffset, as: Int32.self)))
                if bytes.count <= Self.inlineNameBytes {
                    if Self.equal(UnsafeRawPointer(at + Self.nameOffset), bytes) { return found }
                } else {
                    let name = nameAt(index).utf8
                    let same =
                        name.withContiguousStorageIfAvailable { stored in
                            stored.count == bytes.count && zip(stored, bytes).allSatisfy { $0 == $1 }
                        } ?? name.elementsEqual(bytes)
                    if same { return found }
                }
            }
            slot = (slot + 1) & mask
        }
    }

    /// Starts loading the slot where a lookup of `bytes` begins, and returns at once: for a name
    /// that will be looked up a little later (the next pipelined request's origin).
    @inline(__always)
    func prefetch(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count <= longest else { return }
        let slot = Int(truncatingIfNeeded: ServerNameTable.hash(bytes, seed: seed)) & mask
        CSodiumShims_prefetch(slots.base + slot * Self.slotBytes)
    }

    /// Whether the `bytes.count` bytes at `stored` are `bytes`, compared a word at a time.
    @inline(__always)
    private static func equal(_ stored: UnsafeRawPointer, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while bytes.count - offset >= 8 {
            if stored.loadUnaligned(fromByteOffset: offset, as: UInt64.self) != bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            {
                return false
            }
            offset += 8
        }
        while offset < bytes.count {
            if stored.load(fromByteOffset: offset, as: UInt8.self) != bytes[offset] { return false }
            offset += 1
        }
        return true
    }

    /// A multiply-and-mix hash over 8-byte words (server names are short, and not chosen by the
    /// caller who looks them up).
    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        var h = seed ^ (UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15)
        var offset = 0
        while bytes.count - offset >= 8 {
            h = mix(h ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            offset += 8
        }
        var last: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count {
            last |= UInt64(bytes[offset]) << shift
            shift += 8
            offset += 1
        }
        return mix(h ^ last)
    }

    @inline(__always)
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value &* 0xBF58_476D_1CE4_E5B9
        z ^= z >> 31
        z = z &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 29)
    }
}
