/// Builds a `JSONValue` tree, without recursion: containers still open wait on a heap stack,
/// so the depth a document may have is bounded by `JSONLimits` alone, never by the thread's
/// stack. Checks and errors are `CanonicalJSON`'s, in the same order and at the same offsets.
struct JSONTreeParser {
    private var scanner: JSONScanner
    private let limits: JSONLimits
    private var scratch: [UInt8] = []
    private var open: [OpenContainer] = []
    /// Input offsets of the open objects' keys, back to back, for duplicates found when an
    /// object closes.
    private var keyOffsets: [Int] = []

    private struct OpenContainer {
        let isObject: Bool
        var elements: [JSONValue] = []
        var members: [JSONObject.Member] = []
        /// Where this object's key offsets start in `keyOffsets`.
        var keyBase = 0
        var pendingKey = ""
        var sorted = true
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, limits: JSONLimits) throws(JSONError) -> JSONValue {
        guard bytes.count <= limits.maxBytes else { throw JSONError(.tooLarge(limit: limits.maxBytes), at: limits.maxBytes) }
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { throw JSONError(.byteOrderMark, at: 0) }
        var parser = JSONTreeParser(scanner: JSONScanner(bytes), limits: limits)
        let value = try parser.document()
        parser.scanner.skipWhitespace()
        guard parser.scanner.atEnd else { throw JSONError(.trailingData, at: parser.scanner.position) }
        return value
    }

    private init(scanner: JSONScanner, limits: JSONLimits) {
        self.scanner = scanner
        self.limits = limits
    }

    private mutating func document() throws(JSONError) -> JSONValue {
        nextValue: while true {
            var value: JSONValue
            let byte = try scanner.peek()
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard open.count < limits.maxDepth else { throw JSONError(.tooDeep(limit: limits.maxDepth), at: scanner.position) }
                scanner.position += 1
                let isObject = byte == UInt8(ascii: "{")
                let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
                if try scanner.peek() == close {
                    scanner.position += 1
                    value = isObject ? .object(JSONObject()) : .array(JSONArray())
                } else {
                    open.append(OpenContainer(isObject: isObject, keyBase: keyOffsets.count))
                    if isObject { try readKey() }
                    continue nextValue
                }
            case 0x22:
                scratch.removeAll(keepingCapacity: true)
                try scanner.string(into: &scratch)
                value = .string(String(decoding: scratch, as: UTF8.self))
            case UInt8(ascii: "t"):
                try scanner.literal("true")
                value = .bool(true)
            case UInt8(ascii: "f"):
                try scanner.literal("false")
                value = .bool(false)
            case UInt8(ascii: "n"):
                try scanner.literal("null")
                value = .null
            case UInt8(ascii: "-"), 0x30...0x39:
                value = .integer(try scanner.integer())
            default:
                throw JSONError(.unexpectedByte(byte), at: scanner.position)
            }
            // A whole value: hand it to the container it is in, and close every container that
            // ends with it.
            while !open.isEmpty {
                let top = open.count - 1
                let next: UInt8
                if open[top].isObject {
                    open[top].members.append((open[top].pendingKey, value))
                    next = try scanner.peek()
                    scanner.position += 1
                    if next == UInt8(ascii: ",") {
                        try readKey()
                        continue nextValue
                    }
                    guard next == UInt8(ascii: "}") else { throw JSONError(.unexpectedByte(next), at: scanner.position - 1) }
                    // Taken off the stack first: evaluating a method call on `self` alongside
                    // `open.removeLast()` would copy `open` whole, at every level.
                    let object = open.removeLast()
                    value = .object(try Self.finishObject(object, keyOffsets: keyOffsets[object.keyBase...]))
                    keyOffsets.removeSubrange(object.keyBase...)
                } else {
                    open[top].elements.append(value)
                    next = try scanner.peek()
                    scanner.position += 1
                    if next == UInt8(ascii: ",") { continue nextValue }
                    guard next == UInt8(ascii: "]") else { throw JSONError(.unexpectedByte(next), at: scanner.position - 1) }
                    value = .array(JSONArray(open.removeLast().elements))
                }
            }
            return value
        }
    }

    /// Reads `"key":` for the innermost open object. A key equal to the one before it is refused
    /// at once, as the canonicaliser does.
    private mutating func readKey() throws(JSONError) {
        guard try scanner.peek() == 0x22 else { throw JSONError(.unexpectedByte(scanner.input[scanner.position]), at: scanner.position) }
        let keyOffset = scanner.position
        scratch.removeAll(keepingCapacity: true)
        try scanner.string(into: &scratch)
        let key = String(decoding: scratch, as: UTF8.self)
        let top = open.count - 1
        if let previous = open[top].members.last?.key.utf8 {
            if previous.elementsEqual(scratch) { throw JSONError(.duplicateKey(echoing: scratch), at: keyOffset) }
            if !previous.lexicographicallyPrecedes(scratch) { open[top].sorted = false }
        }
        try scanner.expect(UInt8(ascii: ":"))
        open[top].pendingKey = key
        keyOffsets.append(keyOffset)
    }

    /// The object's members in key order; a duplicate is reported at the second occurrence of
    /// the smallest key that has one (`CanonicalWriter` reports the same).
    private static func finishObject(_ container: OpenContainer, keyOffsets: ArraySlice<Int>) throws(JSONError) -> JSONObject {
        if container.sorted { return JSONObject(sortedMembers: container.members) }
        let order = container.members.indices.sorted { a, b in
            let x = container.members[a].key.utf8
            let y = container.members[b].key.utf8
            if x.elementsEqual(y) { return keyOffsets[keyOffsets.startIndex + a] < keyOffsets[keyOffsets.startIndex + b] }
            return x.lexicographicallyPrecedes(y)
        }
        for (previous, index) in zip(order, order.dropFirst())
        where container.members[previous].key.utf8.elementsEqual(container.members[index].key.utf8) {
            throw JSONError(.duplicateKey(echoing: container.members[index].key.utf8), at: keyOffsets[keyOffsets.startIndex + index])
        }
        return JSONObject(sortedMembers: order.map { container.members[$0] })
    }
}
