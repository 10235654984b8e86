import FuzzSupport

@testable import SigilCore

@_cdecl("FuzzEncodings_main")
public func fuzzEncodingsMain(argc: Int32, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzMain(EncodingsTarget.self, argc: argc, argv: argv)
}

/// The small parsers and encoders: the first byte picks one, the rest is its input. Each is
/// checked against a reference written from its spec or against the standard library, and
/// every encoder against its decoder.
enum EncodingsTarget: FuzzTarget {
    enum Subject: UInt8, CaseIterable {
        case base64, keyID, serverName, duration, utf8, jsonString, integer
    }

    static func run(_ input: UnsafeRawBufferPointer) {
        guard let first = input.first else { return }
        let data = UnsafeRawBufferPointer(rebasing: input[1...])
        switch Subject(rawValue: first % UInt8(Subject.allCases.count))! {
        case .base64: Base64Checks.run(data)
        case .keyID: checkKeyID(String(decoding: data, as: UTF8.self))
        case .serverName: checkServerName(data)
        case .duration: checkDuration(String(decoding: data, as: UTF8.self))
        case .utf8: checkUTF8(data)
        case .jsonString: checkJSONString(data)
        case .integer: checkInteger(data)
        }
    }

    static func checkKeyID(_ text: String) {
        let bytes = Array(text.utf8)
        let expected =
            !bytes.isEmpty && bytes.count <= 255
            && bytes.allSatisfy {
                $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") && $0 != UInt8(ascii: ",")
            }
        fuzzCheck(KeyID.isValidVersion(text) == expected, "isValidVersion(\(printable(bytes))) is \(!expected)")
        fuzzCheck(KeyID.isValidVersion(utf8: bytes) == expected, "isValidVersion(utf8:) disagrees")
        let id = KeyID(version: text)
        fuzzCheck((id != nil) == expected, "KeyID(version:) disagrees with isValidVersion")
        if let id {
            fuzzCheck(id.version == text && id.description == "ed25519:" + text, "\(id) from \(printable(bytes))")
            fuzzCheck(KeyID(id.description) == id, "\(id) does not parse back")
            let compliant = bytes.allSatisfy { Grammar.isDigit($0) || Grammar.isAlpha($0) || $0 == UInt8(ascii: "_") }
            fuzzCheck(id.isSpecCompliant == compliant, "isSpecCompliant of \(id)")
        }
        let full = KeyID(text)
        let prefixed = bytes.starts(with: "ed25519:".utf8)
        fuzzCheck(
            (full != nil) == (prefixed && KeyID.isValidVersion(String(decoding: bytes.dropFirst(8), as: UTF8.self))),
            "KeyID(\(printable(bytes)))")
        if let full { fuzzCheck(full.description == text, "\(full) is not \(printable(bytes))") }
    }

    static func checkServerName(_ data: UnsafeRawBufferPointer) {
        let expected = Grammar.isServerName(data)
        fuzzCheck(ServerName.isValid(data) == expected, "ServerName.isValid(\(printable(data))) is \(!expected)")
        if let text = String(validating: data, as: UTF8.self) {
            fuzzCheck(ServerName.isValid(text) == expected, "ServerName.isValid(String) disagrees")
        }
    }

    static func checkDuration(_ text: String) {
        let result = Result { () throws(DurationText.ParseError) in try DurationText.milliseconds(text) }
        let expected = referenceDuration(Array(text.utf8))
        switch (result, expected) {
        case (.success(let value), .some(let reference)):
            fuzzCheck(Int128(value) == reference, "\(printable(text.utf8)) is \(value) ms, not \(reference)")
        case (.failure(let error), .none):
            fuzzCheck(error.text == text, "the error does not name the text")
        case (.success(let value), .none):
            fuzzCheck(false, "\(printable(text.utf8)) accepted as \(value) ms")
        case (.failure, .some(let reference)):
            fuzzCheck(false, "\(printable(text.utf8)) refused, expected \(reference) ms")
        }
    }

    /// Numbers of at most 12 digits, each with a unit (a bare number is seconds), summed
    /// exactly and refused past Int64.
    static func referenceDuration(_ bytes: [UInt8]) -> Int128? {
        guard !bytes.isEmpty else { return nil }
        if bytes.allSatisfy(Grammar.isDigit) {
            guard bytes.count <= 12 else { return nil }
            return bytes.reduce(Int128(0)) { $0 * 10 + Int128($1 - 0x30) } * 1000
        }
        let units: [String: Int128] = ["ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000]
        var total: Int128 = 0
        var index = 0
        while index < bytes.count {
            let start = index
            while index < bytes.count, Grammar.isDigit(bytes[index]) { index += 1 }
            guard index > start, index - start <= 12 else { return nil }
            let value = bytes[start..<index].reduce(Int128(0)) { $0 * 10 + Int128($1 - 0x30) }
            let unitStart = index
            while index < bytes.count, bytes[index] >= 0x61, bytes[index] <= 0x7A { index += 1 }
            guard let scale = units[String(decoding: bytes[unitStart..<index], as: UTF8.self)] else { return nil }
            total += value * scale
            guard total <= Int128(Int64.max) else { return nil }
        }
        return total
    }

    static func checkUTF8(_ data: UnsafeRawBufferPointer) {
        let valid = String(validating: data, as: UTF8.self) != nil
        fuzzCheck(UTF8Validation.isValid(data) == valid, "UTF8Validation says \(!valid) for \(printable(data))")
        if let lead = data.first, lead >= 0x80 {
            var iterator = data.makeIterator()
            var decoder = UTF8()
            let expected: Int?
            if case .scalarValue(let scalar) = decoder.decode(&iterator) { expected = UTF8.width(scalar) } else { expected = nil }
            fuzzCheck(UTF8Validation.sequenceLength(data, at: 0) == expected, "sequenceLength of \(printable(data.prefix(4)))")
        }
    }

    /// A string's canonical encoding: every way of writing it agrees, and it reads back.
    static func checkJSONString(_ data: UnsafeRawBufferPointer) {
        var appended: [UInt8] = []
        CanonicalEncoding.appendString(data, to: &appended)
        let length = CanonicalEncoding.quotedLength(data)
        fuzzCheck(length == appended.count, "quotedLength \(length), appendString wrote \(appended.count)")
        var written = [UInt8](repeating: 0, count: length)
        let count = written.withUnsafeMutableBytes { CanonicalEncoding.writeQuoted(data, at: $0.baseAddress!, length: length) }
        fuzzCheck(count == length && written == appended, "writeQuoted and appendString differ")
        var index = 0
        while index + 8 <= data.count {
            let word = data.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let expected = data[index..<(index + 8)].contains(where: CanonicalEncoding.needsEscape)
            fuzzCheck(CanonicalEncoding.wordNeedsEscape(word) == expected, "wordNeedsEscape of \(printable(data[index..<(index + 8)]))")
            index += 8
        }
        guard let text = String(validating: data, as: UTF8.self) else { return }
        fuzzCheck(JSONValue.string(text).canonicalBytes == appended, "JSONValue.string encodes differently")
        let decoded = try? JSONValue(parsing: appended)
        fuzzCheck(decoded?.stringValue.map { Array($0.utf8) } == Array(data), "\(printable(appended)) does not read back")
        fuzzCheck((try? CanonicalJSON.canonicalize(appended)) == appended, "a canonical string is not canonical")
    }

    static func checkInteger(_ data: UnsafeRawBufferPointer) {
        var raw: UInt64 = 0
        for byte in data.prefix(8) { raw = raw << 8 | UInt64(byte) }
        let value = Int64(bitPattern: raw)
        var out: [UInt8] = []
        CanonicalEncoding.appendInteger(value, to: &out)
        fuzzCheck(out == Array(String(value).utf8), "appendInteger(\(value)) wrote \(printable(out))")
        // And the rest as a number: anything read is a whole number in range, written back as
        // one that reads the same.
        let text = UnsafeRawBufferPointer(rebasing: data.dropFirst(min(8, data.count)))
        // The scanner reads a number only where its caller has peeked a '-' or a digit.
        guard let first = text.first, first == UInt8(ascii: "-") || Grammar.isDigit(first) else { return }
        var scanner = JSONScanner(text)
        guard let number = try? scanner.integer() else { return }
        fuzzCheck(abs(number) <= canonicalJSONMaxInteger, "\(number) is out of range")
        var canonical: [UInt8] = []
        CanonicalEncoding.appendInteger(number, to: &canonical)
        let again = canonical.withUnsafeBytes { bytes -> Int64? in
            var scanner = JSONScanner(bytes)
            return try? scanner.integer()
        }
        fuzzCheck(again == number, "\(number) reads back as \(String(describing: again))")
    }

    static var seeds: [[UInt8]] {
        func seed(_ subject: Subject, _ text: String) -> [UInt8] { [subject.rawValue] + Array(text.utf8) }
        var seeds: [[UInt8]] = []
        for text in [
            "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1", "PJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcgc=", "QQ==", "QQ", "QUI=", "Q",
            "Q===", "QQ=A",
            "PJt0OaIImDJk8P/P\r\nDb4TNQHgI/1AA1C+AaQaABxAcgc=\n", "", "*",
        ] {
            seeds.append(seed(.base64, text))
        }
        for text in ["a_RVfN", "ed25519:a_RVfN", "ed25519:", "a b", "a,b", String(repeating: "v", count: 256), "é"] {
            seeds.append(seed(.keyID, text))
        }
        for text in ["example.org", "example.org:8448", "[::1]:8448", "[2001:db8::1]", "1.2.3.4:5", "a:123456", "[]", "ex ample.org", ""] {
            seeds.append(seed(.serverName, text))
        }
        for text in [
            "500ms", "30s", "5m", "12h", "1d", "1w", "1h30m", "90", "999999999999", "1000000000000", "15250w", "99999999999w", "1x", "s",
        ] {
            seeds.append(seed(.duration, text))
        }
        seeds.append([Subject.utf8.rawValue] + Array("日本語 😀 é".utf8) + [0xED, 0xA0, 0x80, 0xC0, 0xAF, 0xF4, 0x90, 0x80, 0x80])
        seeds.append(seed(.jsonString, "a/b \"q\" \\ \u{1}\u{1F}\u{7F}\u{2028} 日本語 and some plain ASCII text"))
        seeds.append([Subject.integer.rawValue] + [0x80, 0, 0, 0, 0, 0, 0, 0] + Array("90071992547409910e-1".utf8))
        seeds.append([Subject.integer.rawValue] + [0, 0, 0, 0, 0, 0, 0, 1] + Array("-0E-5".utf8))
        return seeds
    }
}
