import Testing

@testable import SigilCore

// Helpers shared by the SigilCore tests: hex, test keys, and error plumbing.

extension Array where Element == UInt8 {
    /// From lower- or upper-case hex with no separators (test data only: traps on bad input).
    init(hex: String) {
        let digits = Array(hex.utf8)
        precondition(digits.count % 2 == 0, "odd-length hex")
        func nibble(_ c: UInt8) -> UInt8 {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: preconditionFailure("not hex")
            }
        }
        self = stride(from: 0, to: digits.count, by: 2).map { nibble(digits[$0]) << 4 | nibble(digits[$0 + 1]) }
    }

    var hex: String {
        let table = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(count * 2)
        for byte in self {
            out.append(table[Int(byte >> 4)])
            out.append(table[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}

extension GuardedBuffer {
    /// A copy of the contents, for comparing with expected file bytes in tests.
    var testBytes: [UInt8] { withUnsafeBytes { Array($0) } }
}

enum TestKeys {
    /// The Matrix spec's test seed (appendices, Cryptographic Test Vectors). Its last character
    /// carries non-zero trailing bits.
    static let specSeedBase64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
    static let specSeedHex = "6090c103d5e7af6b15a970fd563ed75549e6159719ae5c3c31dee4316fb75c0d"
    static let specPublicKey = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"

    /// A signing key made from raw seed bytes through `KeyArena.Builder.add(seed:)`.
    static func key(seed: [UInt8], version: String = "test") throws -> SigningKey {
        let id = try #require(KeyID(version: version))
        var builder = try KeyArena.Builder(capacity: 1, lockPolicy: .warn)
        let (slot, publicKey) = builder.add { $0.copyBytes(from: seed) }
        let arena = builder.finish()
        return SigningKey(id: id, publicKey: publicKey, arena: arena, slot: slot)
    }

    /// Several keys from seeds, in one arena.
    static func keys(_ seeds: [(version: String, seed: [UInt8])]) throws -> [SigningKey] {
        var builder = try KeyArena.Builder(capacity: seeds.count, lockPolicy: .warn)
        var loaded: [(KeyID, Int, PublicKey)] = []
        for (version, seed) in seeds {
            let id = try #require(KeyID(version: version))
            let (slot, publicKey) = builder.add { $0.copyBytes(from: seed) }
            loaded.append((id, slot, publicKey))
        }
        let arena = builder.finish()
        return loaded.map { SigningKey(id: $0.0, publicKey: $0.2, arena: arena, slot: $0.1) }
    }

    /// The spec key (`ed25519:1`), loaded from a Synapse-format line as an operator would write it.
    static func spec() throws -> SigningKey {
        let file = try KeyFile(fixture: "ed25519 1 \(specSeedBase64)")
        return try #require(try file.loadKeys(lockPolicy: .warn).first)
    }

    /// A fresh random key.
    static func random(version: String = "rnd") throws -> SigningKey {
        let id = try #require(KeyID(version: version))
        var builder = try KeyArena.Builder(capacity: 1, lockPolicy: .warn)
        let (slot, publicKey) = builder.addRandom()
        return SigningKey(id: id, publicKey: publicKey, arena: builder.finish(), slot: slot)
    }

    /// The server keys of one server, built through a keyring from key-file texts.
    static func server(_ name: String, files: [String], retired: [RetiredKey] = []) throws -> ServerKeys {
        let keyring = try Keyring(
            sources: [Keyring.Source(serverName: name, files: files.map { try KeyFile(fixture: $0) }, retired: retired)],
            lockPolicy: .warn)
        return try #require(keyring.server(name))
    }
}
