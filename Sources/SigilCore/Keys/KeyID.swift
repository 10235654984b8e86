internal import CSodiumShims

/// A signing key identifier, `ed25519:<version>`. The version is opaque and kept byte-exact.
public struct KeyID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let algorithm = "ed25519"

    /// The part after `ed25519:`.
    public let version: String
    /// `ed25519:<version>`, built once: the daemon sends it with every signature.
    public let description: String

    /// From a version (`a_RVfN`), checked by `isValidVersion`.
    public init?(version: String) {
        guard KeyID.isValidVersion(version) else { return nil }
        self.version = version
        description = KeyID.algorithm + ":" + version
    }

    /// From a full ID (`ed25519:a_RVfN`).
    public init?(_ full: String) {
        let prefix = KeyID.algorithm + ":"
        guard full.hasPrefix(prefix) else { return nil }
        self.init(version: String(full.dropFirst(prefix.count)))
    }

    /// A fresh version as MMR's generator makes them: 6 distinct characters of `[a-zA-Z0-9]`,
    /// drawn from libsodium's CSPRNG.
    public static func random() -> KeyID {
        ensureSodium()
        var pool = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        var chosen: [Character] = []
        for _ in 0..<6 {
            let index = Int(CSodiumShims_uniform(UInt32(pool.count)))
            chosen.append(pool.remove(at: index))
        }
        return KeyID(version: String(chosen))!
    }

    /// A version must be 1 to 255 bytes of printable ASCII without spaces, quotes, backslashes or
    /// commas, so that it survives key files and X-Matrix headers unchanged. (Key files allow at
    /// most `KeyFile.maxVersionLength` bytes.)
    public static func isValidVersion(_ version: String) -> Bool {
        isValidVersion(utf8: version.utf8)
    }

    /// `isValidVersion` on raw bytes, so that a field of a key file can be checked before it is
    /// turned into a `String`; `maxLength` may only tighten the limit of 255 bytes.
    static func isValidVersion<Bytes: Collection<UInt8>>(utf8 version: Bytes, maxLength: Int = 255) -> Bool {
        !version.isEmpty && version.count <= min(maxLength, 255)
            && version.allSatisfy {
                $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") && $0 != UInt8(ascii: ",")
            }
    }

    /// The spec asks for `[a-zA-Z0-9_]`; other characters work with most servers but merit a warning.
    public var isSpecCompliant: Bool {
        version.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F
        }
    }

    // Versions are ASCII (see isValidVersion), so String equality is byte equality; order by bytes.
    public static func < (a: KeyID, b: KeyID) -> Bool { a.version.utf8.lexicographicallyPrecedes(b.version.utf8) }
}
