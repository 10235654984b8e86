import Foundation
import Testing

@testable import SigilCore

/// Deep documents (issue 14, item 6): homeservers accept and sign events nested far deeper
/// than the old limit of 64, so the default is 1,024 and can go to `JSONLimits.supportedDepths`.
/// Nothing may use the thread's stack per level: these run on a 256 KiB stack, smaller than
/// libuv's pool threads and Sigil's loop threads get.
@Suite("Canonical JSON: deep nesting")
struct JSONDepthTests {
    /// `depth` arrays, innermost holding 1.
    static func arrays(_ depth: Int) -> [UInt8] {
        Array((String(repeating: "[", count: depth) + "1" + String(repeating: "]", count: depth)).utf8)
    }

    /// `depth` objects, each with its keys out of order: `{"b":0,"a":{"b":0,"a":…}}`, and the
    /// canonical form, `{"a":{"a":…,"b":0},"b":0}`.
    static func unsortedObjects(_ depth: Int) -> (input: [UInt8], canonical: [UInt8]) {
        let input = String(repeating: #"{"b":0,"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
        let canonical = String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: #","b":0}"#, count: depth)
        return (Array(input.utf8), Array(canonical.utf8))
    }

    /// Streaming, tree, tree re-encoded, compared and freed: all of it on a small stack.
    static func roundTrip(_ input: [UInt8], expected: [UInt8], limits: JSONLimits) throws {
        let failure = try onSmallStack { () -> String? in
            do throws(JSONError) {
                let streamed = try CanonicalJSON.canonicalize(input, limits: limits)
                let tree = try JSONValue(parsing: input, limits: limits)
                let again = try JSONValue(parsing: expected, limits: limits)
                if streamed != expected { return "streamed output differs" }
                if tree.canonicalBytes != expected { return "tree output differs" }
                if tree != again { return "trees differ" }
                return nil  // both trees are freed here, on this thread
            } catch {
                return "\(error)"
            }
        }
        if let failure { Issue.record(Comment(rawValue: failure)) }
    }

    @Test("256, 1,000 and 1,024 (the default limit) levels are accepted", arguments: [256, 1000, 1024])
    func acceptedDepths(depth: Int) throws {
        let limits = JSONLimits.default
        #expect(limits.maxDepth == 1024)
        try Self.roundTrip(Self.arrays(depth), expected: Self.arrays(depth), limits: limits)
        let objects = Self.unsortedObjects(depth)
        try Self.roundTrip(objects.input, expected: objects.canonical, limits: limits)
    }

    @Test("1,025 levels are refused at the offset of the bracket that opens the 1,025th")
    func oneTooDeep() throws {
        let error = JSONError(.tooDeep(limit: 1024), at: 1024)
        #expect(throws: error) { try CanonicalJSON.canonicalize(Self.arrays(1025)) }
        #expect(throws: error) { try JSONValue(parsing: Self.arrays(1025)) }
        // Objects: each level is `{"b":0,"a":`, 11 bytes.
        let objects = Self.unsortedObjects(1025).input
        let objectError = JSONError(.tooDeep(limit: 1024), at: 1024 * 11)
        #expect(throws: objectError) { try CanonicalJSON.canonicalize(objects) }
        #expect(throws: objectError) { try JSONValue(parsing: objects) }
        #expect(objectError.description == "nesting deeper than 1024 levels at byte 11264")
        // sign-json refuses it the same way.
        let key = try TestKeys.spec()
        #expect(throws: JSONSigningError.json(objectError)) { try JSONSigning.sign(objects, serverName: "domain", keys: [key]) }
    }

    @Test("the top of the supported range, on a small stack; one more level is refused")
    func maximumDepth() throws {
        let max = JSONLimits.supportedDepths.upperBound
        let limits = JSONLimits(maxDepth: max, maxBytes: 4 << 20)
        try Self.roundTrip(Self.arrays(max), expected: Self.arrays(max), limits: limits)
        let objects = Self.unsortedObjects(max)
        try Self.roundTrip(objects.input, expected: objects.canonical, limits: limits)
        let refusals = try onSmallStack { () -> [JSONError] in
            var refusals: [JSONError] = []
            let input = Self.arrays(max + 1)
            do throws(JSONError) {
                _ = try CanonicalJSON.canonicalize(input, limits: limits)
            } catch {
                refusals.append(error)
            }
            do throws(JSONError) {
                _ = try JSONValue(parsing: input, limits: limits)
            } catch {
                refusals.append(error)
            }
            return refusals
        }
        #expect(refusals == [JSONError(.tooDeep(limit: max), at: max), JSONError(.tooDeep(limit: max), at: max)])
    }

    @Test("a megabyte of open brackets is refused without crashing, at any configured limit")
    func hostileNesting() throws {
        let hostile = [UInt8](repeating: UInt8(ascii: "["), count: 1 << 20)
        let objects = Array(String(repeating: #"{"a":"#, count: (1 << 20) / 5).utf8)
        for depth in [64, 1024, JSONLimits.supportedDepths.upperBound] {
            let limits = JSONLimits(maxDepth: depth)
            let errors = try onSmallStack { () -> [JSONError?] in
                func error(_ parse: () throws(JSONError) -> Void) -> JSONError? {
                    do throws(JSONError) {
                        try parse()
                        return nil
                    } catch {
                        return error
                    }
                }
                return [
                    error { () throws(JSONError) in _ = try CanonicalJSON.canonicalize(hostile, limits: limits) },
                    error { () throws(JSONError) in _ = try JSONValue(parsing: hostile, limits: limits) },
                    error { () throws(JSONError) in _ = try CanonicalJSON.canonicalize(objects, limits: limits) },
                    error { () throws(JSONError) in _ = try JSONValue(parsing: objects, limits: limits) },
                ]
            }
            let expected: [JSONError] = [
                JSONError(.tooDeep(limit: depth), at: depth), JSONError(.tooDeep(limit: depth), at: depth),
                JSONError(.tooDeep(limit: depth), at: depth * 5), JSONError(.tooDeep(limit: depth), at: depth * 5),
            ]
            #expect(errors == expected)
        }
    }

    @Test("values built in code, nested far beyond any limit, encode, compare and free on a small stack")
    func deepValuesBuiltInCode() throws {
        let failure = try onSmallStack { () -> String? in
            let depth = 200_000
            var array = JSONValue.integer(1)
            var object = JSONValue.integer(1)
            for _ in 0..<depth {
                array = .array([array])
                object = ["k": object]
            }
            let copy = array
            if array != copy || array == object { return "comparison" }
            var encoded: [UInt8] = []
            array.appendCanonical(to: &encoded)
            if encoded.count != 2 * depth + 1 || encoded.first != UInt8(ascii: "[") { return "array encoding" }
            if object.description.utf8.count != 6 * depth + 1 { return "object encoding" }
            return nil  // `array`, `copy` and `object` are freed here, on this thread
        }
        if let failure { Issue.record(Comment(rawValue: failure)) }
    }

    @Test("a tree shared between values survives when one of them is freed")
    func sharedSubtrees() throws {
        let inner: JSONValue = ["x": [1, 2, ["y": "z"]]]
        var outer: JSONValue? = .array([inner, inner])
        outer = nil
        #expect(outer == nil)
        #expect(inner.canonicalString == #"{"x":[1,2,{"y":"z"}]}"#)
        var array = JSONArray([inner])
        let snapshot = array
        array.append(.null)
        #expect(snapshot.count == 1 && array.count == 2)
        #expect(JSONValue.array(snapshot).canonicalString == #"[{"x":[1,2,{"y":"z"}]}]"#)
    }

    @Test("unsorted objects nested in unsorted objects are laid out right, and their top-level members found")
    func nestedReorders() throws {
        let input = #"{"z":{"d":[{"q":1,"p":[{"b":2,"a":1}]}],"c":0},"a":[{"y":0,"x":{"n":1,"m":2}}],"m":{"b":{"z":0,"a":1},"a":2}}"#
        let expected = #"{"a":[{"x":{"m":2,"n":1},"y":0}],"m":{"a":2,"b":{"a":1,"z":0}},"z":{"c":0,"d":[{"p":[{"a":1,"b":2}],"q":1}]}}"#
        #expect(try CanonicalJSON.canonicalize(input) == expected)
        #expect(try JSONValue(parsing: input).canonicalString == expected)
        let object = try Array(input.utf8).withUnsafeBytes { try CanonicalJSON.canonicalObject($0) }
        #expect(object.members.map(\.key) == ["a", "m", "z"])
        #expect(String(decoding: object.bytes[object.member("m")!.valueRange], as: UTF8.self) == #"{"a":2,"b":{"a":1,"z":0}}"#)
        #expect(
            String(decoding: object.bytes[object.member("z")!.range], as: UTF8.self) == #""z":{"c":0,"d":[{"p":[{"a":1,"b":2}],"q":1}]}"#)
    }

    @Test("duplicates are reported alike by both parsers: at the second occurrence of the smallest duplicated key")
    func duplicatesAlike() {
        for (input, error) in [
            (#"{"b":1,"a":2,"b":3,"a":4}"#, JSONError(.duplicateKey("a"), at: 19)),
            (#"{"c":1,"b":2,"c":3,"b":4,"b":5}"#, JSONError(.duplicateKey("b"), at: 25)),  // adjacent: at once
            (#"{"a":1,"a":[}"#, JSONError(.duplicateKey("a"), at: 7)),
        ] {
            #expect(throws: error) { try CanonicalJSON.canonicalize(input) }
            #expect(throws: error) { try JSONValue(parsing: input) }
        }
    }

    @Test(
        "deep documents canonicalise as Synapse's canonicaljson does",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "needs /usr/bin/python3 with python3-canonicaljson"))
    func matchesPythonCanonicaljson() throws {
        // Python's json stops near its recursion limit (1,000); raised here to check past 1,024.
        let script = """
            import sys, json
            from canonicaljson import encode_canonical_json
            sys.setrecursionlimit(20000)
            for line in sys.stdin.buffer.read().split(b"\\n"):
                if line:
                    sys.stdout.buffer.write(encode_canonical_json(json.loads(line)) + b"\\n")
            """
        var documents: [[UInt8]] = []
        for depth in [256, 1000, 1024] {
            documents.append(Self.arrays(depth))
            documents.append(Self.unsortedObjects(depth).input)
            // Levels alternating array and object, keys out of order and escaped.
            var text = "1"
            for level in 0..<depth {
                text = level % 2 == 0 ? #"{"\u00e9":\#(level),"z":"\u2028\/","a\u0000":\#(text)}"# : "[\(level),\(text),{}]"
            }
            documents.append(Array(text.utf8))
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data(documents.joined(separator: [0x0A]) + [0x0A]))
        try input.fileHandleForWriting.close()
        let theirs = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 canonicaljson failed (is python3-canonicaljson installed?)")
        let lines = Array(theirs).split(separator: 0x0A, omittingEmptySubsequences: false).dropLast()
        try #require(lines.count == documents.count)
        for (document, line) in zip(documents, lines) {
            #expect(try CanonicalJSON.canonicalize(document) == Array(line))
            #expect(try JSONValue(parsing: document).canonicalBytes == Array(line))
        }
    }
}

/// Runs `body` on a new thread with a 256 KiB stack and returns what it returns. A stack
/// overflow kills the test process, which is the failure this exists to catch.
func onSmallStack<T: Sendable>(_ body: @escaping @Sendable () -> T) throws -> T {
    let outcome = SmallStackOutcome<T>()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        outcome.value = body()
        done.signal()
    }
    thread.stackSize = 256 * 1024
    try #require(thread.stackSize == 256 * 1024)
    thread.start()
    done.wait()
    return outcome.value!
}

/// What `onSmallStack`'s thread returns. @unchecked: written by that thread before it signals,
/// read by the caller after the wait.
private final class SmallStackOutcome<T>: @unchecked Sendable {
    var value: T?
}
