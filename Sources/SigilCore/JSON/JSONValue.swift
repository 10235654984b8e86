/// A JSON value under Matrix's rules: integers only, strings kept as exact UTF-8.
///
/// Strings and object keys compare by their UTF-8 bytes, never by Swift's canonical
/// equivalence (which would merge "é" and "e\u{301}"), and objects keep their members sorted by
/// code point, which is the order canonical JSON needs.
///
/// Nothing here recurses on the input's nesting: parsing, encoding, comparing and freeing a
/// value all keep their pending work in heap arrays, so a document nested as deep as the limit
/// allows is safe on a thread with a small stack (libuv's pool threads, the event loops).
public enum JSONValue: Sendable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case integer(Int64)
    case string(String)
    case array(JSONArray)
    case object(JSONObject)

    /// An array value from Swift values (`.array(items.map { … })`).
    public static func array(_ values: [JSONValue]) -> JSONValue { .array(JSONArray(values)) }

    /// Parses a JSON text. Numbers must be integers within ±(2^53−1); duplicate keys, invalid
    /// UTF-8 and lone surrogates are refused. Errors are the ones `CanonicalJSON` reports.
    public init(parsing bytes: UnsafeRawBufferPointer, limits: JSONLimits = .default) throws(JSONError) {
        self = try JSONTreeParser.parse(bytes, limits: limits)
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
        guard isContainer else { return appendScalar(to: &out) }
        // The containers being written, innermost last, each with the index of its next member.
        var open: [(container: JSONValue, next: Int)] = []
        var pending: JSONValue? = self
        while true {
            if let value = pending {
                pending = nil
                switch value {
                case .array:
                    out.append(UInt8(ascii: "["))
                    open.append((value, 0))
                case .object:
                    out.append(UInt8(ascii: "{"))
                    open.append((value, 0))
                default:
                    value.appendScalar(to: &out)
                }
            }
            guard let (container, next) = open.last else { return }
            switch container {
            case .array(let array):
                if next == array.count {
                    out.append(UInt8(ascii: "]"))
                    open.removeLast()
                    continue
                }
                if next > 0 { out.append(UInt8(ascii: ",")) }
                pending = array[next]
            case .object(let object):
                if next == object.count {
                    out.append(UInt8(ascii: "}"))
                    open.removeLast()
                    continue
                }
                if next > 0 { out.append(UInt8(ascii: ",")) }
                let member = object.members[next]
                CanonicalEncoding.appendString(member.key, to: &out)
                out.append(UInt8(ascii: ":"))
                pending = member.value
            default:
                preconditionFailure("only containers are opened")
            }
            open[open.count - 1].next = next + 1
        }
    }

    private func appendScalar(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
        case .bool(true): out.append(contentsOf: [0x74, 0x72, 0x75, 0x65])
        case .bool(false): out.append(contentsOf: [0x66, 0x61, 0x6C, 0x73, 0x65])
        case .integer(let value): CanonicalEncoding.appendInteger(value, to: &out)
        case .string(let value): CanonicalEncoding.appendString(value, to: &out)
        case .array, .object: preconditionFailure("not a scalar")
        }
    }

    var isContainer: Bool {
        switch self {
        case .array, .object: return true
        default: return false
        }
    }

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        // Pairs still to compare, so that deep values compare without deep recursion.
        var pending: [(JSONValue, JSONValue)] = []
        var pair = (a, b)
        while true {
            switch pair {
            case (.null, .null): break
            case (.bool(let x), .bool(let y)): guard x == y else { return false }
            case (.integer(let x), .integer(let y)): guard x == y else { return false }
            case (.string(let x), .string(let y)): guard x.utf8.elementsEqual(y.utf8) else { return false }
            case (.array(let x), .array(let y)):
                guard x.count == y.count else { return false }
                if !x.sharesStorage(with: y) { pending.append(contentsOf: zip(x, y)) }
            case (.object(let x), .object(let y)):
                guard x.count == y.count else { return false }
                if !x.sharesStorage(with: y) {
                    for (m, n) in zip(x.members, y.members) {
                        guard m.key.utf8.elementsEqual(n.key.utf8) else { return false }
                        pending.append((m.value, n.value))
                    }
                }
            default: return false
            }
            guard let next = pending.popLast() else { return true }
            pair = next
        }
    }

    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var integerValue: Int64? { if case .integer(let i) = self { return i } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a.values } else { return nil } }
}

// Deliberately not ExpressibleByNilLiteral: `value != nil` on a `JSONValue?` would then compare
// against `.null` instead of testing for absence.
extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(JSONArray(elements)) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        guard let object = JSONObject(elements) else { preconditionFailure("duplicate key in JSON literal") }
        self = .object(object)
    }
}
