internal import CSodiumShims

/// The keyring's server names, looked up by their bytes as they arrive in a request.
///
/// Open addressing over a power-of-two table at most half full, keyed by a seeded 64-bit hash of
/// the name's bytes. Not a `[String: Int]`: that lookup first had to build a `String` from the
/// request's bytes (a heap allocation for names over 15 bytes) and hash it with SipHash, which
/// with 100,000 servers cost more than the rest of the request's parsing. Callers only look up;
/// the names come from the operator's configuration, so a caller cannot lengthen a probe chain.
struct ServerNameTable: Sendable {
    /// Server index + 1 per slot; 0 is empty.
    private let slots: [Int32]
    /// The hash's high bits per slot, compared before the names are.
    private let tags: [UInt32]
    private let mask: Int
    private let seed: UInt64

    init(_ names: [String]) {
        var capacity = 8
        while capacity < names.count * 2 { capacity <<= 1 }
        var slots = [Int32](repeating: 0, count: capacity)
        var tags = [UInt32](repeating: 0, count: capacity)
        var seed: UInt64 = 0
        withUnsafeMutableBytes(of: &seed) { CSodiumShims_randombytes($0.baseAddress, $0.count) }
        let mask = capacity - 1
        for (index, name) in names.enumerated() {
            var name = name
            let hash = name.withUTF8 { ServerNameTable.hash(UnsafeRawBufferPointer($0), seed: seed) }
            var slot = Int(truncatingIfNeeded: hash) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(index + 1)
            tags[slot] = UInt32(truncatingIfNeeded: hash >> 32)
        }
        self.slots = slots
        self.tags = tags
        self.mask = mask
        self.seed = seed
    }

    /// The index of the name whose bytes are `bytes`; `nameAt` gives the names by index.
    @inline(__always)
    func index(of bytes: UnsafeRawBufferPointer, nameAt: (Int) -> String) -> Int? {
        let hash = ServerNameTable.hash(bytes, seed: seed)
        let tag = UInt32(truncatingIfNeeded: hash >> 32)
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = slots[slot]
            if entry == 0 { return nil }
            if tags[slot] == tag {
                let index = Int(entry) - 1
                let name = nameAt(index).utf8
                let same =
                    name.withContiguousStorageIfAvailable { stored in
                        stored.count == bytes.count && zip(stored, bytes).allSatisfy { $0 == $1 }
                    } ?? name.elementsEqual(bytes)
                if same { return index }
            }
            slot = (slot + 1) & mask
        }
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
