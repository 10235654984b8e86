/// Writes keys in MMR's three formats, byte for byte as MMR's tools do, into guarded memory.
///
/// - MMR: one PEM block per key, headers `Key-ID` then `Version: 1` (Go sorts them), a blank
///   line, the padded base64 seed, the END line and a newline.
/// - Dendrite: the same with `MATRIX PRIVATE KEY` and no `Version`.
/// - Synapse: `ed25519 <version> <unpadded seed>` lines joined by `\n`, no trailing newline.
public enum KeyFileWriter {
    public static func encode(_ keys: [SigningKey], format: KeyFileFormat, lockPolicy: MemoryLockPolicy) throws(GuardedMemoryError)
        -> GuardedBuffer
    {
        let pieces = keys.map { layout(for: $0, format: format) }
        var total = 0
        for (index, piece) in pieces.enumerated() {
            total += piece.prefix.count + piece.seedLength + piece.suffix.count
            if format == .synapse && index > 0 { total += 1 }
        }
        let buffer = try GuardedBuffer(count: total, lockPolicy: lockPolicy)
        buffer.withUnsafeMutableBytes { out in
            var offset = 0
            func put(_ bytes: [UInt8]) {
                UnsafeMutableRawBufferPointer(rebasing: out[offset..<(offset + bytes.count)]).copyBytes(from: bytes)
                offset += bytes.count
            }
            for (index, (key, piece)) in zip(keys, pieces).enumerated() {
                if format == .synapse && index > 0 { put([0x0A]) }
                put(piece.prefix)
                _ = key.withSeed { seed in
                    Base64.encode(
                        seed, padded: piece.padded, into: UnsafeMutableRawBufferPointer(rebasing: out[offset..<(offset + piece.seedLength)])
                    )
                }
                offset += piece.seedLength
                put(piece.suffix)
            }
            precondition(offset == total, "key file layout miscounted")
        }
        return buffer
    }

    private struct Layout {
        let prefix: [UInt8]
        let suffix: [UInt8]
        let padded: Bool
        var seedLength: Int { Base64.encodedCount(Ed25519.seedBytes, padded: padded) }
    }

    private static func layout(for key: SigningKey, format: KeyFileFormat) -> Layout {
        switch format {
        case .synapse:
            return Layout(prefix: Array("ed25519 \(key.id.version) ".utf8), suffix: [], padded: false)
        case .mmr, .dendrite:
            let type = format.pemType!
            let version = format == .mmr ? "Version: 1\n" : ""
            return Layout(
                prefix: Array("-----BEGIN \(type)-----\nKey-ID: \(key.id)\n\(version)\n".utf8),
                suffix: Array("\n-----END \(type)-----\n".utf8),
                padded: true)
        }
    }
}
