/// A JSON value under Matrix's rules: integers only, strings kept as exact UTF-8.
///
/// Strings and object keys compare by their UTF-8 bytes, never by Swift's canonical
/// equivalence (which would merge "é" and "e\u{301}"), and objects keep their members sorted by
/// code point, which is the order canonical JSON needs.
public indirect enum JSONValue: Sendable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case integer(Int64)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.integer(let x), .integer(let y)): return x == y
        case (.string(let x), .string(let y)): return x.utf8.elementsEqual(y.utf8)
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)): return x == y
        default: return false
        }
    }

    /// Parses a JSON text. Numbers must be integers within ±(2^53−1); duplicate keys, invalid
    /// UTF-8 and lone surrogates are refused.
    public init(parsing bytes: UnsafeRawBufferPointer, limits: JSONLimits = .default) throws(JSONError) {
        guard bytes.count <= limits.maxBytes else { throw JSONError(.tooLarge(limit: limits.maxBytes), at: limits.maxBytes) }
        var parser = TreeParser(scanner: JSONScanner(bytes), limits: limits)
        try parser.checkByteOrderMark()
        self = try parser.value(depth: 0)
        parser.scanner.skipWhitespace()
        guard parser.scanner.atEnd else { throw JSONError(.trailingData, at: parser.scanner.position) }
    }

    public init<C: Collection<UInt8>>(parsing bytes: C, limits: JSONLimits = .default) throws(JSONError) {
        self = try withBytes(bytes) { (raw) throws(JSONError) in try JSONValue(parsing: raw, limits: limits) }
    }

    public init(parsing text: String, limits: JSONLimits = .default) throws(JSONError) {
        try self.init(parsing: Array(text.utf8), limits: limits)
    }

    /// The canonical encoding.
    public var canonicalBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        appendCanonical(to: &out)
        return out
    }

    public var canonicalString: String { String(decoding: canonicalBytes, as: UTF8.self) }
    public var description: String { canonicalString }

    public func appendCanonical(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
        case .bool(true): out.append(contentsOf: [0x74, 0x72, 0x75, 0x65])
        case .bool(false): out.append(contentsOf: [0x66, 0x61, 0x6C, 0x73, 0x65])
        case .integer(let value): CanonicalEncoding.appendInteger(value, to: &out)
        case .string(let value): CanonicalEncoding.appendString(value, to: &out)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                value.appendCanonical(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            object.appendCanonical(to: &out)
        }
    }

    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var integerValue: Int64? { if case .integer(let i) = self { return i } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
}

/// A JSON object whose members are kept sorted by the UTF-8 bytes of their keys, with no duplicates.
public struct JSONObject: Sendable, Equatable, Sequence {
    public typealias Member = (key: String, value: JSONValue)
    public private(set) var members: [Member] = []

    public init() {}

    /// From members in any order. Returns nil on a duplicate key.
    public init?(_ pairs: [(String, JSONValue)]) {
        for (key, value) in pairs where insert(key, value) {
            return nil
        }
    }

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }
    public var keys: [String] { members.map(\.key) }

    public func makeIterator() -> IndexingIterator<[Member]> { members.makeIterator() }

    private func search(_ key: String) -> (found: Bool, index: Int) {
        var low = 0
        var high = members.count
        let probe = key.utf8
        while low < high {
            let mid = (low + high) / 2
            let candidate = members[mid].key.utf8
            if candidate.elementsEqual(probe) { return (true, mid) }
            if candidate.lexicographicallyPrecedes(probe) { low = mid + 1 } else { high = mid }
        }
        return (false, low)
    }

    public subscript(key: String) -> JSONValue? {
        get {
            let (found, index) = search(key)
            return found ? members[index].value : nil
        }
        set {
            let (found, index) = search(key)
            switch (found, newValue) {
            case (true, .some(let value)): members[index].value = value
            case (true, .none): members.remove(at: index)
            case (false, .some(let value)): members.insert((key, value), at: index)
            case (false, .none): break
            }
        }
    }

    /// Inserts a new member; returns true if the key was already present (nothing changes then).
    @discardableResult
    mutating func insert(_ key: String, _ value: JSONValue) -> Bool {
        let (found, index) = search(key)
        if found { return true }
        members.insert((key, value), at: index)
        return false
    }

    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSONValue? {
        let (found, index) = search(key)
        guard found else { return nil }
        return members.remove(at: index).value
    }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.members.count == b.members.count
            && zip(a.members, b.members).allSatisfy { $0.key.utf8.elementsEqual($1.key.utf8) && $0.value == $1.value }
    }

    public func appendCanonical(to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        for (index, member) in members.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            CanonicalEncoding.appendString(member.key, to: &out)
            out.append(UInt8(ascii: ":"))
            member.value.appendCanonical(to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    public var canonicalBytes: [UInt8] {
        var out: [UInt8] = []
        appendCanonical(to: &out)
        return out
    }
}

// Deliberately not ExpressibleByNilLiteral: `value != nil` on a `JSONValue?` would then compare
// against `.null` instead of testing for absence.
extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        guard let object = JSONObject(elements) else { preconditionFailure("duplicate key in JSON literal") }
        self = .object(object)
    }
}

/// Builds a `JSONValue` tree from a scanner.
private struct TreeParser {
    var scanner: JSONScanner
    let limits: JSONLimits
    var scratch: [UInt8] = []

    mutating func checkByteOrderMark() throws(JSONError) {
        let input = scanner.input
        if input.count >= 3, input[0] == 0xEF, input[1] == 0xBB, input[2] == 0xBF { throw JSONError(.byteOrderMark, at: 0) }
    }

    mutating func string() -> String {
        String(decoding: scratch, as: UTF8.self)
    }

    mutating func value(depth: Int) throws(JSONError) -> JSONValue {
        let byte = try scanner.peek()
        switch byte {
        case UInt8(ascii: "{"):
            guard depth < limits.maxDepth else { throw JSONError(.tooDeep(limit: limits.maxDepth), at: scanner.position) }
            scanner.position += 1
            var object = JSONObject()
            if try scanner.peek() == UInt8(ascii: "}") {
                scanner.position += 1
                return .object(object)
            }
            while true {
                guard try scanner.peek() == 0x22 else { throw JSONError(.unexpectedByte(scanner.input[scanner.position]), at: scanner.position) }
                let keyOffset = scanner.position
                scratch.removeAll(keepingCapacity: true)
                try scanner.string(into: &scratch)
                let key = string()
                try scanner.expect(UInt8(ascii: ":"))
                let member = try value(depth: depth + 1)
                if object.insert(key, member) { throw JSONError(.duplicateKey(echoing: key.utf8), at: keyOffset) }
                let next = try scanner.peek()
                scanner.position += 1
                if next == UInt8(ascii: "}") { return .object(object) }
                guard next == UInt8(ascii: ",") else { throw JSONError(.unexpectedByte(next), at: scanner.position - 1) }
            }
        case UInt8(ascii: "["):
            guard depth < limits.maxDepth else { throw JSONError(.tooDeep(limit: limits.maxDepth), at: scanner.position) }
            scanner.position += 1
            var values: [JSONValue] = []
            if try scanner.peek() == UInt8(ascii: "]") {
                scanner.position += 1
                return .array(values)
            }
            while true {
                values.append(try value(depth: depth + 1))
                let next = try scanner.peek()
                scanner.position += 1
                if next == UInt8(ascii: "]") { return .array(values) }
                guard next == UInt8(ascii: ",") else { throw JSONError(.unexpectedByte(next), at: scanner.position - 1) }
            }
        case 0x22:
            scratch.removeAll(keepingCapacity: true)
            try scanner.string(into: &scratch)
            return .string(string())
        case UInt8(ascii: "t"):
            try scanner.literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try scanner.literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try scanner.literal("null")
            return .null
        case UInt8(ascii: "-"), 0x30...0x39:
            return .integer(try scanner.integer())
        default:
            throw JSONError(.unexpectedByte(byte), at: scanner.position)
        }
    }
}
