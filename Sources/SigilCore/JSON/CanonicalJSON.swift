/// Canonical JSON straight from bytes to bytes, in one pass, without building a tree.
///
/// Members are written as they are read. An object whose keys arrive out of order is checked
/// for duplicates when it closes and re-laid in key order once the whole document has been
/// read, in a single pass over the output however deeply such objects nest, so the cost is
/// linear in the document's size whatever its depth. Already-canonical input (the common case)
/// is copied with no re-layout. Nothing recurses on the input's nesting: open containers wait
/// on a heap stack, so the depth `JSONLimits` allows is safe on any thread's stack.
public enum CanonicalJSON {
    /// The canonical form of a JSON text.
    public static func canonicalize(_ input: UnsafeRawBufferPointer, limits: JSONLimits = .default) throws(JSONError) -> [UInt8] {
        var writer = CanonicalWriter(input: input, limits: limits, recordTopLevel: false)
        try writer.run()
        return writer.out
    }

    public static func canonicalize<C: Collection<UInt8>>(_ input: C, limits: JSONLimits = .default) throws(JSONError) -> [UInt8] {
        try withBytes(input) { (raw) throws(JSONError) in try canonicalize(raw, limits: limits) }
    }

    public static func canonicalize(_ text: String, limits: JSONLimits = .default) throws(JSONError) -> String {
        String(decoding: try canonicalize(Array(text.utf8), limits: limits), as: UTF8.self)
    }

    /// Canonicalises a JSON object and reports where each top-level member landed, so callers can
    /// drop or replace members (`signatures`, `unsigned`) without parsing again.
    public static func canonicalObject(_ input: UnsafeRawBufferPointer, limits: JSONLimits = .default) throws(JSONError) -> CanonicalObject
    {
        var writer = CanonicalWriter(input: input, limits: limits, recordTopLevel: true)
        try writer.run()
        guard writer.out.first == UInt8(ascii: "{") else {
            throw JSONError(.wrongType(expected: "a JSON object"), at: writer.firstValueOffset)
        }
        return CanonicalObject(bytes: writer.out, members: writer.topLevel)
    }
}

/// A canonical JSON object with the byte ranges of its top-level members.
public struct CanonicalObject: Sendable {
    public struct Member: Sendable {
        /// The decoded key.
        public let key: String
        /// `"key":value` within `bytes`.
        public let range: Range<Int>
        /// `value` within `bytes`.
        public let valueRange: Range<Int>
    }

    /// The whole canonical object.
    public let bytes: [UInt8]
    /// In canonical (sorted) order.
    public let members: [Member]

    public func member(_ key: String) -> Member? {
        members.first { $0.key.utf8.elementsEqual(key.utf8) }
    }

    /// The canonical encoding of this object without the given top-level keys.
    public func bytes(excluding keys: Set<String>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        appendMembers(excluding: keys, to: &out)
        return out
    }

    /// Appends `{…}` without the given keys; members stay in canonical order.
    public func appendMembers(excluding keys: Set<String>, extra: [(key: String, value: [UInt8])] = [], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        var extras = extra.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }[...]
        func emitExtra(_ pair: (key: String, value: [UInt8])) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            CanonicalEncoding.appendString(pair.key, to: &out)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: pair.value)
        }
        for member in members where !keys.contains(member.key) {
            while let next = extras.first, next.key.utf8.lexicographicallyPrecedes(member.key.utf8) {
                emitExtra(next)
                extras = extras.dropFirst()
            }
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(contentsOf: bytes[member.range])
        }
        for pair in extras { emitExtra(pair) }
        out.append(UInt8(ascii: "}"))
    }
}

private struct CanonicalWriter {
    var scanner: JSONScanner
    let limits: JSONLimits
    let recordTopLevel: Bool
    var out: [UInt8] = []
    /// Decoded keys of the objects currently open, back to back.
    var keyBytes: [UInt8] = []
    /// The open containers, each followed by its members so far (objects) in input order. One
    /// stack for both keeps the common document to the allocations it always needed.
    var stack: [Entry] = []
    /// Where in `stack` the innermost open container is; -1 when none is open.
    var innermost = -1
    var depth = 0
    /// Objects whose keys came out of order, laid out in key order once the whole document has
    /// been read: each a `.container` (its bytes in `out`, braces included) followed by its
    /// members' ranges in key order.
    var reorders: [Reorder] = []
    var stringScratch: [UInt8] = []
    var topLevel: [CanonicalObject.Member] = []
    var firstValueOffset = 0

    struct Member {
        /// The decoded key within `keyBytes`.
        var key: Range<Int>
        /// `"key":value` within `out`; until the value ends, `"key":`.
        var member: Range<Int>
        var valueStart: Int
        /// The key's offset in the input, for errors.
        var offset: Int
    }

    struct Container {
        let isObject: Bool
        /// Where its `{` or `[` is in `out`.
        let start: Int
        let keyBase: Int
        /// The enclosing container's index in `stack`.
        let parent: Int
        var sorted = true
    }

    enum Entry {
        case container(Container)
        case member(Member)

        var member: Member {
            guard case .member(let member) = self else { preconditionFailure("not a member") }
            return member
        }
    }

    enum Reorder {
        case object(Range<Int>, members: Int)
        case member(Range<Int>)
    }

    init(input: UnsafeRawBufferPointer, limits: JSONLimits, recordTopLevel: Bool) {
        scanner = JSONScanner(input)
        self.limits = limits
        self.recordTopLevel = recordTopLevel
        out.reserveCapacity(input.count)
    }

    mutating func run() throws(JSONError) {
        let input = scanner.input
        guard input.count <= limits.maxBytes else { throw JSONError(.tooLarge(limit: limits.maxBytes), at: limits.maxBytes) }
        if input.count >= 3, input[0] == 0xEF, input[1] == 0xBB, input[2] == 0xBF { throw JSONError(.byteOrderMark, at: 0) }
        scanner.skipWhitespace()
        firstValueOffset = scanner.position
        try document()
        scanner.skipWhitespace()
        guard scanner.atEnd else { throw JSONError(.trailingData, at: scanner.position) }
        if !reorders.isEmpty { applyReorders() }
    }

    var innermostIsObject: Bool {
        guard case .container(let container) = stack[innermost] else { preconditionFailure("innermost is not a container") }
        return container.isObject
    }

    /// Reads one value and everything inside it.
    mutating func document() throws(JSONError) {
        nextValue: while true {
            let byte = try scanner.peek()
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard depth < limits.maxDepth else { throw JSONError(.tooDeep(limit: limits.maxDepth), at: scanner.position) }
                scanner.position += 1
                let isObject = byte == UInt8(ascii: "{")
                let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
                out.append(byte)
                if try scanner.peek() == close {
                    scanner.position += 1
                    out.append(close)
                } else {
                    // Room for a typical document's containers and members in one allocation
                    // (growing one entry at a time from empty would take several).
                    if stack.capacity == 0 { stack.reserveCapacity(16) }
                    stack.append(
                        .container(Container(isObject: isObject, start: out.count - 1, keyBase: keyBytes.count, parent: innermost)))
                    innermost = stack.count - 1
                    depth += 1
                    if isObject { try readKey() }
                    continue nextValue
                }
            case 0x22:
                stringScratch.removeAll(keepingCapacity: true)
                try scanner.string(into: &stringScratch)
                stringScratch.withUnsafeBytes { CanonicalEncoding.appendString($0, to: &out) }
            case UInt8(ascii: "t"):
                try scanner.literal("true")
                out.append(contentsOf: [0x74, 0x72, 0x75, 0x65])
            case UInt8(ascii: "f"):
                try scanner.literal("false")
                out.append(contentsOf: [0x66, 0x61, 0x6C, 0x73, 0x65])
            case UInt8(ascii: "n"):
                try scanner.literal("null")
                out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
            case UInt8(ascii: "-"), 0x30...0x39:
                CanonicalEncoding.appendInteger(try scanner.integer(), to: &out)
            default:
                throw JSONError(.unexpectedByte(byte), at: scanner.position)
            }
            // A whole value: close every container that ends with it.
            while innermost >= 0 {
                if innermostIsObject {
                    // The member this value belongs to is on top of the stack: it ends here.
                    var member = stack[stack.count - 1].member
                    member.member = member.member.lowerBound..<out.count
                    stack[stack.count - 1] = .member(member)
                    let next = try scanner.peek()
                    scanner.position += 1
                    if next == UInt8(ascii: ",") {
                        out.append(UInt8(ascii: ","))
                        try readKey()
                        continue nextValue
                    }
                    guard next == UInt8(ascii: "}") else { throw JSONError(.unexpectedByte(next), at: scanner.position - 1) }
                    out.append(UInt8(ascii: "}"))
                    try closeObject()
                } else {
                    let next = try scanner.peek()
                    scanner.position += 1
                    if next == UInt8(ascii: ",") {
                        out.append(UInt8(ascii: ","))
                        continue nextValue
                    }
                    guard next == UInt8(ascii: "]") else { throw JSONError(.unexpectedByte(next), at: scanner.position - 1) }
                    out.append(UInt8(ascii: "]"))
                    close()
                }
            }
            return
        }
    }

    /// Reads and writes `"key":` for the innermost open object, and pushes its member.
    mutating func readKey() throws(JSONError) {
        guard try scanner.peek() == 0x22 else {
            throw JSONError(.unexpectedByte(scanner.input[scanner.position]), at: scanner.position)
        }
        let keyOffset = scanner.position
        let keyStart = keyBytes.count
        try scanner.string(into: &keyBytes)
        let keyRange = keyStart..<keyBytes.count
        if stack.count - 1 > innermost {
            switch compareKeys(stack[stack.count - 1].member.key, keyRange) {
            case .orderedSame: throw JSONError(.duplicateKey(echoing: keyBytes[keyRange]), at: keyOffset)
            case .orderedDescending:
                guard case .container(var container) = stack[innermost] else { preconditionFailure("innermost is not a container") }
                container.sorted = false
                stack[innermost] = .container(container)
            case .orderedAscending: break
            }
        }
        let memberStart = out.count
        keyBytes.withUnsafeBytes { CanonicalEncoding.appendString(UnsafeRawBufferPointer(rebasing: $0[keyRange]), to: &out) }
        try scanner.expect(UInt8(ascii: ":"))
        out.append(UInt8(ascii: ":"))
        stack.append(.member(Member(key: keyRange, member: memberStart..<out.count, valueStart: out.count, offset: keyOffset)))
    }

    /// Pops the innermost container and its members.
    mutating func close() {
        guard case .container(let container) = stack[innermost] else { preconditionFailure("innermost is not a container") }
        stack.removeSubrange(innermost...)
        keyBytes.removeSubrange(container.keyBase...)
        innermost = container.parent
        depth -= 1
    }

    /// The innermost open object has just been written, `}` included.
    mutating func closeObject() throws(JSONError) {
        guard case .container(let object) = stack[innermost] else { preconditionFailure("innermost is not a container") }
        let members = (innermost + 1)..<stack.count
        if !object.sorted {
            // By key, then by position, so that a duplicate is reported at the second
            // occurrence of the smallest duplicated key (as JSONTreeParser does). In place: the
            // members are popped below anyway.
            let keys = keyBytes  // shares the buffer; `stack` alone is being sorted
            stack.withUnsafeMutableBufferPointer { entries in
                entries[members].sort { a, b in
                    let x = a.member
                    let y = b.member
                    switch Self.compareKeys(x.key, y.key, in: keys) {
                    case .orderedAscending: return true
                    case .orderedDescending: return false
                    case .orderedSame: return x.offset < y.offset
                    }
                }
            }
            for i in members.dropFirst() where compareKeys(stack[i - 1].member.key, stack[i].member.key) == .orderedSame {
                throw JSONError(.duplicateKey(echoing: keyBytes[stack[i].member.key]), at: stack[i].member.offset)
            }
            if reorders.capacity == 0 { reorders.reserveCapacity(max(16, members.count + 1)) }
            reorders.append(.object(object.start..<out.count, members: members.count))
            for i in members { reorders.append(.member(stack[i].member.member)) }
        }
        if object.parent < 0 && recordTopLevel {
            // Where each member will be once laid out in key order: the lengths do not change.
            var at = object.start + 1
            topLevel = stack[members].map { entry in
                let member = entry.member
                let range = at..<(at + member.member.count)
                at = range.upperBound + 1
                let valueStart = range.lowerBound + (member.valueStart - member.member.lowerBound)
                return CanonicalObject.Member(key: keyString(member.key), range: range, valueRange: valueStart..<range.upperBound)
            }
        }
        close()
    }

    /// Writes the document again with every reordered object's members in key order, copying
    /// each byte once however the reordered objects nest.
    mutating func applyReorders() {
        var result: [UInt8] = []
        result.reserveCapacity(out.count)
        if case .object(let object, let count) = reorders[0], count == reorders.count - 1 {
            // One reordered object (the usual case): nothing inside it moves.
            result.append(contentsOf: out[..<object.lowerBound])
            for index in 1...count {
                result.append(index == 1 ? UInt8(ascii: "{") : UInt8(ascii: ","))
                guard case .member(let range) = reorders[index] else { preconditionFailure("a reorder's members follow it") }
                result.append(contentsOf: out[range])
            }
            result.append(UInt8(ascii: "}"))
            result.append(contentsOf: out[object.upperBound...])
            out = result
            return
        }
        // Where each reordered object's entry is, by the object's start.
        var starts: [Int] = []
        for index in reorders.indices { if case .object = reorders[index] { starts.append(index) } }
        starts.sort { reorders[$0].objectRange.lowerBound < reorders[$1].objectRange.lowerBound }
        enum Task {
            case copy(Range<Int>)
            /// The member after `member` of the reorder whose entry is at `entry`.
            case member(entry: Int, member: Int)
        }
        var tasks: [Task] = [.copy(0..<out.count)]
        while let task = tasks.popLast() {
            switch task {
            case .copy(let range):
                // The first reordered object starting within `range`: the outermost there.
                var low = 0
                var high = starts.count
                while low < high {
                    let mid = (low + high) / 2
                    if reorders[starts[mid]].objectRange.lowerBound < range.lowerBound { low = mid + 1 } else { high = mid }
                }
                if low < starts.count, reorders[starts[low]].objectRange.lowerBound < range.upperBound {
                    let object = reorders[starts[low]].objectRange
                    result.append(contentsOf: out[range.lowerBound..<object.lowerBound])
                    tasks.append(.copy(object.upperBound..<range.upperBound))
                    tasks.append(.member(entry: starts[low], member: 0))
                } else {
                    result.append(contentsOf: out[range])
                }
            case .member(let entry, let member):
                guard case .object(_, let count) = reorders[entry] else { preconditionFailure("not a reordered object") }
                if member == count {
                    result.append(UInt8(ascii: "}"))
                    continue
                }
                result.append(member == 0 ? UInt8(ascii: "{") : UInt8(ascii: ","))
                tasks.append(.member(entry: entry, member: member + 1))
                guard case .member(let range) = reorders[entry + 1 + member] else { preconditionFailure("a reorder's members follow it") }
                tasks.append(.copy(range))
            }
        }
        out = result
    }

    func compareKeys(_ a: Range<Int>, _ b: Range<Int>) -> Ordering {
        Self.compareKeys(a, b, in: keyBytes)
    }

    static func compareKeys(_ a: Range<Int>, _ b: Range<Int>, in keyBytes: [UInt8]) -> Ordering {
        let x = keyBytes[a]
        let y = keyBytes[b]
        if x.elementsEqual(y) { return .orderedSame }
        return x.lexicographicallyPrecedes(y) ? .orderedAscending : .orderedDescending
    }

    func keyString(_ range: Range<Int>) -> String {
        String(decoding: keyBytes[range], as: UTF8.self)
    }

    enum Ordering { case orderedAscending, orderedSame, orderedDescending }
}

extension CanonicalWriter.Reorder {
    var objectRange: Range<Int> {
        guard case .object(let range, _) = self else { preconditionFailure("not a reordered object") }
        return range
    }
}
