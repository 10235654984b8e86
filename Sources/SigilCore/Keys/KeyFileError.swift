/// Why a key file was refused. Names the file, the line and the problem; never carries key
/// bytes, and echoes a field of the file only when it cannot be a seed (short, identifier-like).
public struct KeyFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Problem: Equatable, Sendable {
        case empty
        case tooLarge(limit: Int)
        /// Neither Synapse lines nor an MMR or Dendrite PEM block.
        case unrecognizedFormat
        case fieldCount(Int)
        /// The single field of a legacy Synapse file (a seed with no algorithm or version).
        case legacyUnversionedKey
        case unsupportedAlgorithm(String?)
        case invalidKeyVersion(String?)
        case invalidSeedEncoding(String)
        case seedLength(Int)
        case missingKeyID
        case keyIDNotEd25519(String?)
        case missingVersionHeader
        case unsupportedVersionHeader(String?)
        case duplicateHeader(String)
        case malformedHeader
        case unterminatedBlock(type: String)
        case mismatchedEnd(begin: String, end: String?)
        case unexpectedBlockType(String?)
        case mixedBlockTypes
        case textOutsideBlock
        case duplicateKeyID(KeyID, firstLine: Int)
        /// Reading or permission problems, described by the layer that does I/O.
        case unreadable(String)
        case unsafePermissions(mode: UInt32)
        /// Owned by someone other than root or the daemon's user, who could replace the key.
        case untrustedOwner(uid: UInt32, expected: UInt32)
    }

    /// The file as the user named it.
    public let path: String
    /// 1-based line, when the problem has one.
    public let line: Int?
    public let problem: Problem

    public init(path: String, line: Int? = nil, _ problem: Problem) {
        self.path = path
        self.line = line
        self.problem = problem
    }

    public var description: String {
        let location = line.map { "\(path):\($0)" } ?? path
        return "\(location): \(explanation)"
    }

    public var explanation: String {
        func quoted(_ text: String?, or fallback: String) -> String { text.map { "'\($0)'" } ?? fallback }
        switch problem {
        case .empty: return "the key file is empty (no keys)"
        case .tooLarge(let limit): return "the key file is larger than \(limit) bytes"
        case .unrecognizedFormat:
            return "not a signing key file: expected Synapse lines ('ed25519 VERSION SEED') "
                + "or an MMR or Dendrite PEM block ('-----BEGIN MMR PRIVATE KEY-----')"
        case .fieldCount(let count):
            return "expected 3 fields ('ed25519 VERSION SEED'), found \(count)"
        case .legacyUnversionedKey:
            return "a bare key with no algorithm or version (an old Synapse format); write it as 'ed25519 VERSION SEED'"
        case .unsupportedAlgorithm(let name):
            return "unsupported key algorithm \(quoted(name, or: "(a long field)")); only ed25519 is supported"
        case .invalidKeyVersion(let version):
            return
                "invalid key version \(quoted(version, or: "(a long field)")): it must be 1 to \(KeyFile.maxVersionLength) characters of printable ASCII without spaces, quotes, commas or backslashes"
        case .invalidSeedEncoding(let why): return "the seed is not valid base64: \(why)"
        case .seedLength(let count): return "the seed is \(count) bytes; an Ed25519 seed is exactly 32 bytes"
        case .missingKeyID: return "missing Key-ID header"
        case .keyIDNotEd25519(let id):
            return
                "Key-ID \(quoted(id, or: "(a long value)")) does not denote an ed25519 key (expected 'ed25519:VERSION', with VERSION 1 to \(KeyFile.maxVersionLength) characters of printable ASCII without spaces, quotes, commas or backslashes)"
        case .missingVersionHeader: return "missing Version header (MMR keys need 'Version: 1')"
        case .unsupportedVersionHeader(let version):
            return "unsupported MMR key format Version \(quoted(version, or: "(a long value)")); only 1 is known"
        case .duplicateHeader(let name): return "header '\(name)' appears twice"
        case .malformedHeader: return "malformed PEM header line"
        case .unterminatedBlock(let type): return "the \(type) block has no END line"
        case .mismatchedEnd(let begin, let end): return "END line \(end.map { "'\($0)'" } ?? "") does not match BEGIN \(begin)"
        case .unexpectedBlockType(let type):
            return "unexpected PEM block type \(quoted(type, or: "(unreadable)")); expected MMR PRIVATE KEY or MATRIX PRIVATE KEY"
        case .mixedBlockTypes:
            return
                "the file mixes MATRIX PRIVATE KEY and MMR PRIVATE KEY blocks (MMR would read only the MATRIX ones); keep one format per file"
        case .textOutsideBlock: return "unexpected text outside a PEM block"
        case .duplicateKeyID(let id, let firstLine): return "duplicate key ID \(id) (first seen on line \(firstLine))"
        case .unreadable(let why): return why
        case .untrustedOwner(let uid, let expected):
            return "the key file is owned by uid \(uid); the daemon only reads key files owned by root or by its own user (uid \(expected))"
        case .unsafePermissions(let mode):
            return
                "the file is accessible by other users (mode \(String(mode & 0o777, radix: 8, uppercase: false).leftPadded(to: 4))); fix it with: chmod 600 \(path)"
        }
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}

/// Text from a key file that is safe to echo in an error: short and identifier-like, so it
/// cannot be a base64 seed (43+ characters).
func echoable(_ bytes: UnsafeRawBufferPointer) -> String? {
    guard bytes.count > 0, bytes.count <= echoedBase64Run else { return nil }
    guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

/// The most base64 characters in a row an error may repeat from a key file: 24 of a seed's 43
/// leave 114 bits unknown, while an echo of 40 would leave a brute-forceable 18.
let echoedBase64Run = 24

/// Longer text from a key file (a PEM block type, an END line, a Key-ID value) that is safe to
/// echo: printable ASCII, at most 40 bytes, holding no more than `echoedBase64Run` base64
/// characters in a row, so that neither a seed nor most of one can show.
func echoableLine(_ bytes: UnsafeRawBufferPointer) -> String? {
    guard bytes.count <= 40, bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
    var run = 0
    for byte in bytes {
        let isBase64 =
            (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || (byte >= 0x30 && byte <= 0x39) || byte == 0x2B || byte == 0x2F || byte == 0x3D
        run = isBase64 ? run + 1 : 0
        guard run <= echoedBase64Run else { return nil }
    }
    return String(decoding: bytes, as: UTF8.self)
}
