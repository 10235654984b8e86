internal import CSodium
internal import CSodiumShims

/// libsodium must be initialised once before any other call; Swift runs a global's
/// initialiser exactly once, on first use, from whichever thread gets there first.
private let sodiumReady: Bool = sodium_init() >= 0

/// Makes sure libsodium is initialised. Cheap after the first call.
@inline(__always)
func ensureSodium() {
    precondition(sodiumReady, "sodium_init() failed: libsodium cannot be used in this process")
}

/// Sizes from libsodium's functions, never from its macros (which Swift cannot import reliably).
public enum Ed25519 {
    public static let publicKeyBytes = 32
    public static let secretKeyBytes = 64
    public static let seedBytes = 32
    public static let signatureBytes = 64
}

/// Checked once, on first use of the key store: our constants must agree with the linked libsodium.
let sodiumSizesAgree: Bool =
    crypto_sign_publickeybytes() == Ed25519.publicKeyBytes
    && crypto_sign_secretkeybytes() == Ed25519.secretKeyBytes
    && crypto_sign_seedbytes() == Ed25519.seedBytes
    && crypto_sign_bytes() == Ed25519.signatureBytes

/// SHA-256 (libsodium's), for digests that are not secrets (audit records of uris).
public enum SHA256 {
    /// The digest of `bytes` in lowercase hex.
    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        _ = digest.withUnsafeMutableBytes { out in CSodiumShims_sha256(out.baseAddress, bytes.baseAddress, bytes.count) }
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in digest {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Appends the 32-byte digest of `bytes` to `out` (the audit trail keeps it raw and spells
    /// it in hex only when it writes).
    public static func appendDigest(of bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: 32))
        _ = out.withUnsafeMutableBytes { buffer in CSodiumShims_sha256(buffer.baseAddress! + start, bytes.baseAddress, bytes.count) }
    }

    /// A raw digest in lowercase hex.
    public static func hex<D: Collection<UInt8>>(digest: D) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(digest.count * 2)
        for byte in digest {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
