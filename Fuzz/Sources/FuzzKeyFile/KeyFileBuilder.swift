import FuzzSupport
import SigilCore

/// Writes key files from fuzz choices around real seeds: the formats' real lines, with the
/// mistakes operators make (fields swapped, a seed pasted into a header or a version, a seed
/// cut short or wrapped, CRLF, stray lines, mixed blocks). The seeds it used come back with the
/// text, so the target can check that none of them shows in an error and that every key that
/// loads is one of them.
enum KeyFileBuilder {
    struct Built {
        var text: [UInt8] = []
        var seeds: [[UInt8]] = []
    }

    static func build(_ r: inout FuzzReader) -> Built {
        var built = Built()
        let newline = r.int(in: 0...7) == 0 ? "\r\n" : "\n"
        let style = r.int(in: 0...2)  // 0 Synapse, 1 MMR, 2 Dendrite
        let count = r.int(in: 1...4)
        var versions: [String] = []
        var lines: [String] = []
        for _ in 0..<count {
            let seed = seedBytes(r.byte())
            built.seeds.append(seed)
            let seedText = self.seedText(seed, &r)
            let version = self.version(&r, seedText: seedText, previous: versions)
            versions.append(version)
            // Occasionally a block of the other kind, to mix formats.
            let kind = r.int(in: 0...15) == 0 ? (style + 1) % 3 : style
            if kind == 0 {
                lines.append(synapseLine(version: version, seedText: seedText, &r))
            } else {
                lines.append(contentsOf: pemBlock(mmr: kind == 1, version: version, seedText: seedText, &r))
            }
        }
        switch r.int(in: 0...11) {
        case 0: lines.insert(r.pick(["# a comment", "ed25519", "garbage", "-----END MMR PRIVATE KEY-----"]), at: 0)
        case 1: lines.append(contentsOf: ["", ""])
        case 2: lines.append(r.pick(["-----BEGIN MMR PRIVATE KEY-----", "-----", "ed25519 x"]))
        default: break
        }
        var text = lines.joined(separator: newline)
        if r.bool() { text += newline }
        built.text = Array(text.utf8)
        return built
    }

    /// 32 bytes from one choice (splitmix64), so a seed costs one input byte.
    static func seedBytes(_ choice: UInt8) -> [UInt8] {
        var state = UInt64(choice) &* 0x9E37_79B9_7F4A_7C15 &+ 0x1234_5678
        var out: [UInt8] = []
        for _ in 0..<4 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: z >> UInt64(shift))) }
        }
        return out
    }

    /// The seed as the file shows it: padded or not, or damaged.
    static func seedText(_ seed: [UInt8], _ r: inout FuzzReader) -> String {
        let text = Base64.encode(seed, padded: r.bool())
        switch r.int(in: 0...15) {
        case 0: return String(text.prefix(r.int(in: 0...42)))  // cut short
        case 1: return text + r.pick(["A", "AAAA", "=", "==", "*", " "])
        case 2:
            var utf8 = Array(text.utf8)
            utf8[r.int(in: 0...(utf8.count - 1))] = r.pick(Array("!-_.:\"\\,é".utf8))
            return String(decoding: utf8, as: UTF8.self)
        default: return text
        }
    }

    static func version(_ r: inout FuzzReader, seedText: String, previous: [String]) -> String {
        switch r.int(in: 0...15) {
        case 0: return seedText  // the seed pasted as the version
        case 1: return previous.last ?? "a_RVfN"  // a duplicate
        case 2: return String(repeating: "v", count: r.int(in: 60...70))
        case 3: return r.pick(["", "a b", "a\"b", "a,b", "a\\b", "é", "a\tb"])
        case 4: return String(decoding: r.bytes(upTo: 30), as: UTF8.self)
        default: return r.pick(["a_RVfN", "1", "e5d0oC", "auto", "key_2", "0ldKey"])
        }
    }

    static func synapseLine(version: String, seedText: String, _ r: inout FuzzReader) -> String {
        let separator = r.pick([" ", " ", "\t", "  ", " \t "])
        let algorithm = r.int(in: 0...11) == 0 ? r.pick(["ed448", "ED25519", "curve25519", seedText]) : "ed25519"
        var fields = [algorithm, version, seedText]
        switch r.int(in: 0...9) {
        case 0: fields.swapAt(1, 2)
        case 1: fields = [seedText]
        case 2: fields.removeLast()
        case 3: fields.append(r.pick(["extra", seedText]))
        default: break
        }
        let line = fields.joined(separator: separator)
        return r.int(in: 0...7) == 0 ? " " + line + " " : line
    }

    static func pemBlock(mmr: Bool, version: String, seedText: String, _ r: inout FuzzReader) -> [String] {
        var type = mmr ? "MMR PRIVATE KEY" : "MATRIX PRIVATE KEY"
        if r.int(in: 0...15) == 0 { type = r.pick(["RSA PRIVATE KEY", "PRIVATE KEY", seedText, "MMR PRIVATE KEY "]) }
        var lines = ["-----BEGIN \(type)-----"]
        var headers: [String] = []
        let keyID: String
        switch r.int(in: 0...11) {
        case 0: keyID = seedText
        case 1: keyID = "ed448:" + version
        case 2: keyID = "ed25519:"
        default: keyID = "ed25519:" + version
        }
        if r.int(in: 0...15) != 0 { headers.append("Key-ID: " + keyID) }
        if mmr ? r.int(in: 0...15) != 0 : r.int(in: 0...7) == 0 {
            headers.append("Version: " + (r.int(in: 0...11) == 0 ? r.pick(["2", "", seedText]) : "1"))
        }
        switch r.int(in: 0...11) {
        case 0: headers.append("Proc-Type: 4,ENCRYPTED")
        case 1: headers.append(headers.first ?? "Key-ID: ed25519:x")  // a duplicate header
        case 2: headers.append(seedText + ": x")  // the seed as a header name
        case 3: headers.insert(":no name", at: 0)
        default: break
        }
        if r.bool() { headers.reverse() }
        lines.append(contentsOf: headers)
        if r.int(in: 0...5) != 0 { lines.append("") }  // the blank line after the headers
        // The body: the seed whole, wrapped, or missing.
        switch r.int(in: 0...7) {
        case 0:
            let cut = r.int(in: 0...seedText.count)
            lines.append(String(seedText.prefix(cut)))
            lines.append(String(seedText.dropFirst(cut)))
        case 1: break
        case 2: lines.append(seedText + " " + seedText)
        default: lines.append(seedText)
        }
        switch r.int(in: 0...15) {
        case 0: break  // no END line
        case 1: lines.append("-----END \(mmr ? "MATRIX" : "MMR") PRIVATE KEY-----")
        case 2: lines.append("-----END \(type)-----" + r.pick(["x", " ", "-"]))
        default: lines.append("-----END \(type)-----")
        }
        return lines
    }
}
