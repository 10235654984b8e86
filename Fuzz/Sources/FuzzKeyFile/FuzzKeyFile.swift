import FuzzSupport

@testable import SigilCore

@_cdecl("FuzzKeyFile_main")
public func fuzzKeyFileMain(argc: Int32, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzMain(KeyFileTarget.self, argc: argc, argv: argv)
}

/// Key files in the three formats. An input starting with 0x00 (which no key file does) drives
/// a generator that writes files around known seeds (`KeyFileBuilder`); anything else is the
/// file itself. Either way: no crash; what parses re-encodes in every format with
/// `KeyFileWriter` and parses back to the same keys; a refusal never shows seed text.
enum KeyFileTarget: FuzzTarget {
    static func run(_ input: UnsafeRawBufferPointer) {
        if input.first == 0 {
            var reader = FuzzReader(UnsafeRawBufferPointer(rebasing: input[1...]))
            let built = KeyFileBuilder.build(&reader)
            built.text.withUnsafeBytes { check($0, seeds: built.seeds) }
        } else {
            check(input, seeds: nil)
        }
    }

    /// `seeds`: the seeds a generated file holds (unknown for a raw input).
    static func check(_ text: UnsafeRawBufferPointer, seeds: [[UInt8]]?) {
        // The parser straight on the input first: most inputs are refused, and a refusal then
        // costs no guarded allocation (sodium_malloc, mlock and munmap per input).
        do {
            _ = try KeyFileParser(bytes: text, path: "fuzz.key").parse()
        } catch {
            checkRefusal(error, text: text, seeds: seeds)
            return
        }
        let file: KeyFile
        do {
            file = try KeyFile(contents: guarded(text), path: "fuzz.key")
        } catch {
            fuzzCheck(false, "KeyFile refused what its parser read: \(error)")
            return
        }
        fuzzCheck(!file.entries.isEmpty, "a key file parsed to no keys")
        fuzzCheck(Set(file.keyIDs).count == file.keyIDs.count, "duplicate key IDs accepted")
        let keys = try! file.loadKeys(lockPolicy: .warn)
        if let seeds {
            let expected = Set(seeds.map(publicKey))
            for key in keys { fuzzCheck(expected.contains(key.publicKey), "\(key.id) loaded a key from none of the file's seeds") }
        }
        for format in KeyFileFormat.allCases {
            let encoded = try! KeyFileWriter.encode(keys, format: format, lockPolicy: .warn)
            let again: KeyFile
            do {
                again = try KeyFile(contents: encoded, path: "rewritten.key")
            } catch {
                fuzzCheck(false, "\(format) rewrite does not parse: \(error)")
                return
            }
            fuzzCheck(again.format == format, "\(format) rewrite detected as \(again.format)")
            fuzzCheck(again.keyIDs == file.keyIDs, "\(format) rewrite has IDs \(again.keyIDs), not \(file.keyIDs)")
            let reloaded = try! again.loadKeys(lockPolicy: .warn)
            fuzzCheck(reloaded.map(\.publicKey) == keys.map(\.publicKey), "\(format) rewrite holds other keys")
        }
    }

    static func checkRefusal(_ error: KeyFileError, text: UnsafeRawBufferPointer, seeds: [[UInt8]]?) {
        let description = Array(error.description.utf8)
        if let line = error.line {
            let lines = text.reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
            fuzzCheck((1...lines).contains(line), "line \(line) of a \(lines)-line file")
        }
        // A key ID named in an error is the checked version of an entry that parsed: a public
        // name, published in key documents.
        if case .duplicateKeyID = error.problem { return }
        // Errors echo at most 24 characters of a field ("short, identifier-like"), so no 25
        // characters of seed text, or of anything that could be part of one, may appear.
        let windows = Windows(of: description, length: echoLimit + 1)
        for seed in seeds ?? [] {
            for padded in [false, true] {
                let encoded = Array(Base64.encode(seed, padded: padded).utf8)
                fuzzCheck(!windows.occur(in: encoded), "seed text in the error: \(error)")
            }
        }
        for run in base64Runs(text, minimumLength: echoLimit + 1) {
            fuzzCheck(!windows.occur(in: Array(run)), "\(run.count) base64 characters of the file in the error: \(error)")
        }
    }

    static func guarded(_ bytes: UnsafeRawBufferPointer) -> GuardedBuffer {
        let buffer = try! GuardedBuffer(count: bytes.count, lockPolicy: .warn)
        buffer.withUnsafeMutableBytes { $0.copyMemory(from: bytes) }
        return buffer
    }

    static func publicKey(_ seed: [UInt8]) -> PublicKey {
        var builder = try! KeyArena.Builder(capacity: 1, lockPolicy: .warn)
        let (_, key) = builder.add { $0.copyBytes(from: seed) }
        _ = builder.finish()
        return key
    }

    /// Maximal runs of the base64 alphabet (with `=`) at least `minimumLength` long.
    static func base64Runs(_ text: UnsafeRawBufferPointer, minimumLength: Int) -> [Slice<UnsafeRawBufferPointer>] {
        func isBase64(_ b: UInt8) -> Bool {
            (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2B || b == 0x2F || b == 0x3D
        }
        var runs: [Slice<UnsafeRawBufferPointer>] = []
        var start = 0
        for index in 0...text.count {
            if index < text.count, isBase64(text[index]) { continue }
            if index - start >= minimumLength { runs.append(text[start..<index]) }
            start = index + 1
        }
        return runs
    }

    static let echoLimit = 24

    /// The `length`-byte windows of a text, to find any of them in another.
    struct Windows {
        let length: Int
        let set: Set<ArraySlice<UInt8>>

        init(of text: [UInt8], length: Int) {
            self.length = length
            set = text.count < length ? [] : Set((0...(text.count - length)).map { text[$0..<($0 + length)] })
        }

        func occur(in other: [UInt8]) -> Bool {
            guard other.count >= length, !set.isEmpty else { return false }
            return (0...(other.count - length)).contains { set.contains(other[$0..<($0 + length)]) }
        }
    }

    static var seeds: [[UInt8]] {
        let mmr1 = ("e5d0oC", "PJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcgc=")
        let mmr2 = ("CjtBYA", "Xj/gSXAtSOTPG54sAWjm9BMVNX/Pa8ujIzwYbvLk7mM=")
        let dendrite1 = ("1Pu3u3", "1Pu3u3solToI2pTdsHA4wj05bANnzPwJoxPepw2he2s=")
        let synapse1 = ("a_RVfN", "wdSWsTNSOmMuNA1Ej6JUyeNbiBEt5jexHmVs7mHKZVc")
        let synapse2 = ("IZJY6A", "dvA8xfimUqog15zY6n5uRfVHb/pQ0sw9jRORJslYsoI")
        func block(_ type: String, _ key: (String, String), version: Bool) -> String {
            "-----BEGIN \(type)-----\nKey-ID: ed25519:\(key.0)\n\(version ? "Version: 1\n" : "")\n\(key.1)\n-----END \(type)-----\n"
        }
        let texts = [
            block("MMR PRIVATE KEY", mmr1, version: true),
            block("MMR PRIVATE KEY", mmr1, version: true) + block("MMR PRIVATE KEY", mmr2, version: true),
            block("MATRIX PRIVATE KEY", dendrite1, version: false),
            "ed25519 \(synapse1.0) \(synapse1.1)\ned25519 \(synapse2.0) \(synapse2.1)",
            "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n",
            "ed25519 a_RVfN wdSWsTNSOmMuNA1Ej6JUyeNbiBEt5jexHmVs7mHKZVc\r\n\r\n",
            "-----BEGIN MMR PRIVATE KEY-----\r\nKey-ID: ed25519:x\r\nVersion: 1\r\nPJt0OaIImDJk8P/P\r\nDb4TNQHgI/1AA1C+AaQaABxAcgc\r\n-----END MMR PRIVATE KEY-----",
            "wdSWsTNSOmMuNA1Ej6JUyeNbiBEt5jexHmVs7mHKZVc",
            "ed25519 wdSWsTNSOmMuNA1Ej6JUyeNbiBEt5jexHmVs7mHKZVc a_RVfN",
            "-----BEGIN X-----\n", "-----BEGIN MMR PRIVATE KEY-----\nKey-ID: ed25519:a\nKey-ID: ed25519:b\n",
        ]
        var seeds = texts.map { Array($0.utf8) }
        // Generator programs: the 0x00 prefix, then choices (see KeyFileBuilder).
        for program in 0..<24 { seeds.append([0] + (0..<48).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ program &* 11) }) }
        return seeds
    }
}
