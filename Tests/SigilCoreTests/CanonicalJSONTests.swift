import Testing

@testable import SigilCore

@Suite("Canonical JSON")
struct CanonicalJSONTests {
    /// The examples from the Matrix spec's appendix, input then expected output.
    static let specExamples: [(String, String)] = [
        ("{}", "{}"),
        (#"{"one": 1, "two": "Two"}"#, #"{"one":1,"two":"Two"}"#),
        (#"{"two": "Two", "one": 1}"#, #"{"one":1,"two":"Two"}"#),
        (#"{"b": "2", "a": "1"}"#, #"{"a":"1","b":"2"}"#),
        (
            #"""
            {
                "auth": {
                    "success": true,
                    "mxid": "@john.doe:example.com",
                    "profile": {
                        "display_name": "John Doe",
                        "three_pids": [
                            {
                                "medium": "email",
                                "address": "john.doe@example.org"
                            },
                            {
                                "medium": "msisdn",
                                "address": "123456789"
                            }
                        ]
                    }
                }
            }
            """#,
            #"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#
        ),
        (#"{"a": "日本語"}"#, #"{"a":"日本語"}"#),
        (#"{"本": 2, "日": 1}"#, #"{"日":1,"本":2}"#),
        (#"{"a": "\u65E5"}"#, #"{"a":"日"}"#),
        (#"{"a": null}"#, #"{"a":null}"#),
        (#"{"a": -0, "b": 1e10}"#, #"{"a":0,"b":10000000000}"#),
    ]

    @Test("spec examples, streaming canonicaliser", arguments: specExamples)
    func specExampleStreaming(input: String, expected: String) throws {
        #expect(try CanonicalJSON.canonicalize(input) == expected)
    }

    @Test("spec examples, tree parser and encoder", arguments: specExamples)
    func specExampleTree(input: String, expected: String) throws {
        #expect(try JSONValue(parsing: input).canonicalString == expected)
    }

    @Test(
        "escapes follow the spec grammar exactly",
        arguments: [
            (#""a/b""#, #""a/b""#),  // solidus never escaped
            (#""\/""#, #""/""#),
            (#""\u0000\u0001\u001f""#, #""\u0000\u0001\u001f""#),  // lower-case hex
            (#""\u001F""#, #""\u001f""#),
            (#""\b\t\n\f\r\"\\""#, #""\b\t\n\f\r\"\\""#),
            (#""\u0008\u0009\u000A\u000c\u000D""#, #""\b\t\n\f\r""#),
            (#""\u007f""#, "\"\u{7F}\""),  // DEL stays raw
            (#""\u2028\u2029""#, "\"\u{2028}\u{2029}\""),
            (#""\ud83d\ude00""#, "\"😀\""),
            (#""\u00e9""#, "\"é\""),
        ])
    func escapes(input: String, expected: String) throws {
        #expect(try CanonicalJSON.canonicalize(input) == expected)
        #expect(try JSONValue(parsing: input).canonicalString == expected)
    }

    @Test(
        "numbers: integers in range, with or without an exponent",
        arguments: [
            ("0", "0"), ("-0", "0"), ("0e99", "0"), ("-0E-5", "0"), ("1e10", "10000000000"), ("1E+2", "100"), ("5e0", "5"),
            ("150e-1", "15"), ("1000e-3", "1"), ("100", "100"), ("-7", "-7"),
            ("9007199254740991", "9007199254740991"), ("-9007199254740991", "-9007199254740991"),
            ("90071992547409910e-1", "9007199254740991"), ("9007199254740991e0", "9007199254740991"),
        ])
    func numbers(input: String, expected: String) throws {
        #expect(try CanonicalJSON.canonicalize(input) == expected)
        #expect(try JSONValue(parsing: input).canonicalString == expected)
    }

    @Test(
        "numbers that are refused: any fraction part is a float, whatever its value",
        arguments: [
            ("1.5", JSONError.Kind.notAnInteger), ("0.1", .notAnInteger),
            // A fraction part makes a float even when the value is whole.
            ("1.0", .notAnInteger), ("-0.0", .notAnInteger), ("0.0", .notAnInteger), ("1.5e1", .notAnInteger),
            ("1.50e1", .notAnInteger), ("0.05e2", .notAnInteger), ("9.007199254740991e15", .notAnInteger),
            ("1.0e400", .notAnInteger),
            // An exponent that leaves a fraction.
            ("1e-1", .notAnInteger), ("15e-1", .notAnInteger), ("1e-400", .notAnInteger),
            ("9007199254740992", .integerOutOfRange), ("-9007199254740992", .integerOutOfRange),
            ("1e16", .integerOutOfRange), ("1e400", .integerOutOfRange), ("123456789012345678901234567890", .integerOutOfRange),
            // Malformed syntax is reported as such, before any fraction part.
            ("01", .invalidNumber), ("1.", .invalidNumber), ("1.e5", .invalidNumber), ("1.5e", .invalidNumber), ("-", .invalidNumber),
            ("1e", .invalidNumber), (".5", .unexpectedByte(UInt8(ascii: "."))), ("+1", .unexpectedByte(UInt8(ascii: "+"))),
        ])
    func refusedNumbers(input: String, kind: JSONError.Kind) {
        #expect(throws: JSONError(kind, at: 0)) { try CanonicalJSON.canonicalize(input) }
        #expect(throws: JSONError(kind, at: 0)) { try JSONValue(parsing: input) }
    }

    @Test("a whole float inside a document is refused at its offset")
    func wholeFloatInDocument() throws {
        #expect(throws: JSONError(.notAnInteger, at: 12)) { try CanonicalJSON.canonicalize(#"{"b":1,"a":[1.0]}"#) }
        #expect(throws: JSONError(.notAnInteger, at: 12)) { try JSONValue(parsing: #"{"b":1,"a":[1.0]}"#) }
        #expect(try CanonicalJSON.canonicalize(#"{"b":1,"a":[1e0]}"#) == #"{"a":[1],"b":1}"#)
    }

    @Test("keys sort by code point, not by Swift's String order")
    func codePointOrder() throws {
        // U+FB01 (ﬁ, 3 bytes) sorts after U+00E9 (é, 2 bytes) and after ASCII 'z'; "e\u{301}" and "é"
        // are canonically equivalent to Swift but distinct keys to JSON.
        let input = "{\"\u{FB01}\":1,\"é\":2,\"z\":3,\"e\u{301}\":4,\"Z\":5}"
        let expected = "{\"Z\":5,\"e\u{301}\":4,\"z\":3,\"é\":2,\"\u{FB01}\":1}"
        #expect(try CanonicalJSON.canonicalize(input) == expected)
        #expect(try JSONValue(parsing: input).canonicalString == expected)
    }

    @Test("duplicate keys are refused, including ones spelled with escapes")
    func duplicateKeys() {
        #expect(throws: JSONError(.duplicateKey("a"), at: 8)) { try CanonicalJSON.canonicalize(#"{"a":1, "a":2}"#) }
        #expect(throws: JSONError(.duplicateKey("a"), at: 14)) { try CanonicalJSON.canonicalize(#"{"b":0,"a":1, "\u0061":2}"#) }
        #expect(throws: JSONError(.duplicateKey("a"), at: 8)) { try JSONValue(parsing: #"{"a":1, "a":2}"#) }
    }

    @Test("a duplicate key's echo is cut to 64 Unicode scalars, so a huge key cannot flood replies and logs")
    func duplicateKeyEchoIsShort() throws {
        let key = String(repeating: "k", count: 100_000)
        let cut = String(repeating: "k", count: 64) + "…"
        let sorted = #"{"\#(key)":1,"\#(key)":2}"#
        let unsorted = #"{"\#(key)":1,"a":0,"\#(key)":2}"#  // found when the object is re-laid
        let keyOffset = key.utf8.count + 6
        #expect(throws: JSONError(.duplicateKey(cut), at: keyOffset)) { try CanonicalJSON.canonicalize(sorted) }
        #expect(throws: JSONError(.duplicateKey(cut), at: keyOffset + 6)) { try CanonicalJSON.canonicalize(unsorted) }
        #expect(throws: JSONError(.duplicateKey(cut), at: keyOffset)) { try JSONValue(parsing: sorted) }
        let error = try #require(throws: JSONError.self) { try CanonicalJSON.canonicalize(sorted) }
        #expect(error.description.utf8.count < 200, "\(error.description.prefix(200))")

        // Counted in scalars, not bytes or characters; 64 scalars exactly are not cut.
        let wide = String(repeating: "日", count: 65)
        #expect(throws: JSONError(.duplicateKey(String(repeating: "日", count: 64) + "…"), at: 201)) {
            try CanonicalJSON.canonicalize(#"{"\#(wide)":1,"\#(wide)":2}"#)
        }
        let combining = String(repeating: "e\u{301}", count: 32)  // 64 scalars, 32 characters
        #expect(throws: JSONError(.duplicateKey(combining), at: 102)) {
            try JSONValue(parsing: #"{"\#(combining)":1,"\#(combining)":2}"#)
        }
        #expect(throws: JSONError(.duplicateKey(String(repeating: "e\u{301}", count: 32) + "…"), at: 103)) {
            try JSONValue(parsing: #"{"\#(combining)e":1,"\#(combining)e":2}"#)
        }
    }

    @Test("many small unsorted objects inside one object are re-laid in linear time, correctly")
    func manyUnsortedInnerObjects() throws {
        // Copying the whole member stack (the enclosing object's members included) for each
        // re-laid object made this quadratic: about 7 s in a debug build, against 0.3 s for
        // re-laying only the object's own members. Not a timing assertion: a regression shows as
        // a test that suddenly takes seconds.
        let count = 40_000  // 920 KB, within the default 1 MiB limit
        func key(_ i: Int) -> String { "k" + String(repeating: "0", count: 5 - String(i).count) + String(i) }
        var input = "{"
        var expected = "{"
        for i in 0..<count {
            if i > 0 {
                input += ","
                expected += ","
            }
            input += #""\#(key(i))":{"b":\#(i % 10),"a":\#(i % 7)}"#
            expected += #""\#(key(i))":{"a":\#(i % 7),"b":\#(i % 10)}"#
        }
        input += "}"
        expected += "}"
        let object = try Array(input.utf8).withUnsafeBytes { try CanonicalJSON.canonicalObject($0) }
        // Compared as text, and without printing a megabyte when they differ.
        let output = String(decoding: object.bytes, as: UTF8.self)
        let same = output == expected
        #expect(same, "first difference at byte \(zip(output.utf8, expected.utf8).prefix { $0 == $1 }.count)")
        #expect(object.members.count == count)
        let last = try #require(object.members.last)
        #expect(
            String(decoding: object.bytes[last.range], as: UTF8.self)
                == #""\#(key(count - 1))":{"a":\#((count - 1) % 7),"b":\#((count - 1) % 10)}"#)
        #expect(String(decoding: object.bytes[last.valueRange], as: UTF8.self) == #"{"a":\#((count - 1) % 7),"b":\#((count - 1) % 10)}"#)
    }

    @Test("invalid UTF-8 and lone surrogates are refused")
    func invalidText() {
        let cases: [([UInt8], JSONError)] = [
            ([0x22, 0xC0, 0xAF, 0x22], JSONError(.invalidUTF8, at: 1)),  // overlong '/'
            ([0x22, 0xED, 0xA0, 0x80, 0x22], JSONError(.invalidUTF8, at: 1)),  // encoded surrogate
            ([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], JSONError(.invalidUTF8, at: 1)),  // > U+10FFFF
            ([0x22, 0xE6, 0x97, 0x22], JSONError(.invalidUTF8, at: 1)),  // truncated
            ([0x22, 0x80, 0x22], JSONError(.invalidUTF8, at: 1)),
            (Array(#""\ud83d""#.utf8), JSONError(.loneSurrogate, at: 1)),
            (Array(#""\ude00""#.utf8), JSONError(.loneSurrogate, at: 1)),
            (Array(#""\ud83dx""#.utf8), JSONError(.loneSurrogate, at: 1)),
            ([0x22, 0x0A, 0x22], JSONError(.controlCharacterInString, at: 1)),
            (Array(#""\x""#.utf8), JSONError(.invalidEscape, at: 1)),
            (Array(#""\u12G4""#.utf8), JSONError(.invalidEscape, at: 1)),
            ([0xEF, 0xBB, 0xBF, 0x7B, 0x7D], JSONError(.byteOrderMark, at: 0)),
        ]
        for (bytes, error) in cases {
            #expect(throws: error) { try CanonicalJSON.canonicalize(bytes) }
            #expect(throws: error) { try JSONValue(parsing: bytes) }
        }
    }

    @Test("malformed structure names the byte")
    func malformed() {
        #expect(throws: JSONError(.unexpectedEnd, at: 5)) { try CanonicalJSON.canonicalize(#"{"a":"#) }
        #expect(throws: JSONError(.trailingData, at: 3)) { try CanonicalJSON.canonicalize("{} {}") }
        #expect(throws: JSONError(.unexpectedByte(UInt8(ascii: "}")), at: 7)) { try CanonicalJSON.canonicalize(#"{"a":1,}"#) }
        #expect(throws: JSONError(.unexpectedByte(UInt8(ascii: "]")), at: 3)) { try CanonicalJSON.canonicalize("[1,]") }
        #expect(throws: JSONError(.unexpectedByte(UInt8(ascii: "1")), at: 1)) { try CanonicalJSON.canonicalize("{1:2}") }
        #expect(throws: JSONError(.unexpectedByte(UInt8(ascii: "x")), at: 1)) { try CanonicalJSON.canonicalize("tx") }
        #expect(throws: JSONError(.unexpectedEnd, at: 0)) { try CanonicalJSON.canonicalize("") }
    }

    @Test("depth and size limits")
    func limits() throws {
        let limits = JSONLimits(maxDepth: 3, maxBytes: 64)
        #expect(try CanonicalJSON.canonicalize("[[[]]]", limits: limits) == "[[[]]]")
        #expect(throws: JSONError(.tooDeep(limit: 3), at: 3)) { try CanonicalJSON.canonicalize("[[[[]]]]", limits: limits) }
        #expect(throws: JSONError(.tooDeep(limit: 3), at: 3)) { try JSONValue(parsing: "[[[[]]]]", limits: limits) }
        let big = "[" + String(repeating: "1,", count: 40) + "1]"
        #expect(throws: JSONError(.tooLarge(limit: 64), at: 64)) { try CanonicalJSON.canonicalize(big, limits: limits) }
        // The default depth limit stops a hostile nesting (JSONDepthTests has the rest).
        let hostile = String(repeating: "[", count: 100_000)
        #expect(throws: JSONError(.tooDeep(limit: 1024), at: 1024)) { try CanonicalJSON.canonicalize(hostile) }
    }

    @Test("canonicalising twice changes nothing; both implementations agree")
    func idempotent() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            let value = RandomJSON.value(depth: 0, using: &generator)
            let text = RandomJSON.render(value, using: &generator)
            let once = try CanonicalJSON.canonicalize(Array(text.utf8))
            #expect(try CanonicalJSON.canonicalize(once) == once)
            #expect(try JSONValue(parsing: text).canonicalBytes == once)
            #expect(value.canonicalBytes == once)
        }
    }

    @Test("top-level members of a canonical object can be dropped and added")
    func canonicalObjectMembers() throws {
        let input = #"{"z":1,"signatures":{"a":{}},"b":[1,2],"unsigned":{"age":3}}"#
        let object = try Array(input.utf8).withUnsafeBytes { try CanonicalJSON.canonicalObject($0) }
        #expect(object.members.map(\.key) == ["b", "signatures", "unsigned", "z"])
        #expect(String(decoding: object.bytes(excluding: ["signatures", "unsigned"]), as: UTF8.self) == #"{"b":[1,2],"z":1}"#)
        var out: [UInt8] = []
        object.appendMembers(excluding: ["signatures"], extra: [("c", Array("true".utf8)), ("a", Array("0".utf8))], to: &out)
        #expect(String(decoding: out, as: UTF8.self) == #"{"a":0,"b":[1,2],"c":true,"unsigned":{"age":3},"z":1}"#)
        let member = try #require(object.member("unsigned"))
        #expect(String(decoding: object.bytes[member.valueRange], as: UTF8.self) == #"{"age":3}"#)
        #expect(throws: JSONError(.wrongType(expected: "a JSON object"), at: 1)) {
            try Array(" [1]".utf8).withUnsafeBytes { try CanonicalJSON.canonicalObject($0) }
        }
    }
}

/// Random JSON values and random (non-canonical) renderings of them, for property tests.
enum RandomJSON {
    static let alphabet: [String] = [
        "a", "b", "Z", "é", "e\u{301}", "日", "本", "😀", "\u{2028}", "\"", "\\", "/", "\n", "\u{1}", "\u{7F}", " ",
    ]

    static func string(using rng: inout SystemRandomNumberGenerator) -> String {
        (0..<Int.random(in: 0...4, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }.joined()
    }

    static func value(depth: Int, using rng: inout SystemRandomNumberGenerator) -> JSONValue {
        let pick = depth > 3 ? Int.random(in: 0..<4, using: &rng) : Int.random(in: 0..<6, using: &rng)
        switch pick {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return .integer(Int64.random(in: -canonicalJSONMaxInteger...canonicalJSONMaxInteger, using: &rng))
        case 3: return .string(string(using: &rng))
        case 4: return .array((0..<Int.random(in: 0...3, using: &rng)).map { _ in value(depth: depth + 1, using: &rng) })
        default:
            var object = JSONObject()
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                object[string(using: &rng)] = value(depth: depth + 1, using: &rng)
            }
            return .object(object)
        }
    }

    /// Renders with random whitespace, member order and escapes.
    static func render(_ value: JSONValue, using rng: inout SystemRandomNumberGenerator) -> String {
        let space = [" ", "", "\n", "\t", ""].randomElement(using: &rng)!
        switch value {
        case .null, .bool: return space + value.canonicalString
        case .integer(let int):
            return Bool.random(using: &rng) && int % 100 == 0 && int != 0 ? "\(int / 100)e2" : "\(int)"
        case .string(let s): return renderString(s, using: &rng)
        case .array(let values): return "[" + values.map { render($0, using: &rng) }.joined(separator: "," + space) + "]"
        case .object(let object):
            let members = object.members.shuffled(using: &rng).map {
                renderString($0.key, using: &rng) + space + ":" + render($0.value, using: &rng)
            }
            return "{" + space + members.joined(separator: ",") + "}"
        }
    }

    static func renderString(_ s: String, using rng: inout SystemRandomNumberGenerator) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || Bool.random(using: &rng) && scalar.value < 0x10000:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            case _ where scalar.value >= 0x10000 && Bool.random(using: &rng):
                let v = scalar.value - 0x10000
                out += String(format16: 0xD800 + (v >> 10)) + String(format16: 0xDC00 + (v & 0x3FF))
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

extension String {
    init(format16 value: UInt32) {
        self = "\\u" + String(value, radix: 16, uppercase: true)
    }
}
