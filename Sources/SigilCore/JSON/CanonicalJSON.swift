/// Canonical JSON straight from bytes to bytes, in one pass, without building a tree.
///
/// Members are written as they are read; an object whose keys arrive out of order is re-laid
/// once when it closes. Already-canonical input (the common case) is copied with no re-layout.
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
    public static func canonicalObject(_ input: UnsafeRawBufferPointer, limits: JSONLimits = .default) throws(JSONError) -> CanonicalObject {
        var writer = CanonicalWriter(input: input, limits: limits, recordTopLevel: true)
        try writer.run()
        guard writer.out.first == UInt8(ascii: "{") else { throw JSONError(.wrongType(expected: "a JSON object"), at: writer.firstValueOffset) }
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
    /// Members of the objects currently open: key range in `keyBytes`, member range in `out`, input offset.
    var memberStack: [(key: Range<Int>, member: Range<Int>, valueStart: Int, offset: Int)] = []
    var stringScratch: [UInt8] = []
    var topLevel: [CanonicalObject.Member] = []
    var firstValueOffset = 0

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
        try value(depth: 0)
        scanner.skipWhitespace()
        guard scanner.atEnd else { throw JSONError(.trailingData, at: scanner.position) }
    }

    mutating func value(depth: Int) throws(JSONError) {
        let byte = try scanner.peek()
        switch byte {
        case UInt8(ascii: "{"):
            try object(depth: depth)
        case UInt8(ascii: "["):
            guard depth < limits.maxDepth else { throw JSONError(.tooDeep(limit: limits.maxDepth), at: scanner.position) }
            scanner.position += 1
            out.append(UInt8(ascii: "["))
            if try scanner.peek() == UInt8(ascii: "]") {
                scanner.position += 1
                out.append(UInt8(ascii: "]"))
                return
            }
            while true {
                try value(depth: depth + 1)
                let next = try scanner.peek()
                scanner.position += 1
                if next == UInt8(ascii: "]") {
                    out.append(UInt8(ascii: "]"))
                    return
                }
                guard next == UInt8(ascii: ",") else { throw JSONError(.unexpectedByte(next), at: scanner.position - 1) }
                out.append(UInt8(ascii: ","))
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
    }

    mutating func object(depth: Int) throws(JSONError) {
        guard depth < limits.maxDepth else { throw JSONError(.tooDeep(limit: limits.maxDepth), at: scanner.position) }
        scanner.position += 1
        let objectStart = out.count
        out.append(UInt8(ascii: "{"))
        let stackBase = memberStack.count
        let keyBase = keyBytes.count
        defer {
            memberStack.removeSubrange(stackBase...)
            keyBytes.removeSubrange(keyBase...)
        }
        if try scanner.peek() == UInt8(ascii: "}") {
            scanner.position += 1
            out.append(UInt8(ascii: "}"))
            return
        }
        var sorted = true
        while true {
            guard try scanner.peek() == 0x22 else {
                throw JSONError(.unexpectedByte(scanner.input[scanner.position]), at: scanner.position)
            }
            let keyOffset = scanner.position
            let keyStart = keyBytes.count
            try scanner.string(into: &keyBytes)
            let keyRange = keyStart..<keyBytes.count
            if memberStack.count > stackBase {
                let previous = memberStack[memberStack.count - 1].key
                switch compareKeys(previous, keyRange) {
                case .orderedSame: throw JSONError(.duplicateKey(echoing: keyBytes[keyRange]), at: keyOffset)
                case .orderedDescending: sorted = false
                case .orderedAscending: break
                }
            }
            let memberStart = out.count
            keyBytes.withUnsafeBytes { CanonicalEncoding.appendString(UnsafeRawBufferPointer(rebasing: $0[keyRange]), to: &out) }
            try scanner.expect(UInt8(ascii: ":"))
            out.append(UInt8(ascii: ":"))
            let valueStart = out.count
            try value(depth: depth + 1)
            memberStack.append((keyRange, memberStart..<out.count, valueStart, keyOffset))
            let next = try scanner.peek()
            scanner.position += 1
            if next == UInt8(ascii: "}") { break }
            guard next == UInt8(ascii: ",") else { throw JSONError(.unexpectedByte(next), at: scanner.position - 1) }
            out.append(UInt8(ascii: ","))
        }
        out.append(UInt8(ascii: "}"))
        if !sorted { try relayout(objectStart: objectStart, stackBase: stackBase) }
        if depth == 0 && recordTopLevel {
            topLevel = memberStack[stackBase...].map { entry in
                CanonicalObject.Member(key: keyString(entry.key), range: entry.member, valueRange: entry.valueStart..<entry.member.upperBound)
            }
        }
    }

    /// Rewrites the object at `objectStart` with its members in key order.
    ///
    /// Touches only this object's entries, `memberStack[stackBase...]`, in place: copying the
    /// whole stack (which holds the members of every enclosing object read so far) would make a
    /// document of many small unsorted objects quadratic.
    mutating func relayout(objectStart: Int, stackBase: Int) throws(JSONError) {
        // This object's entries, sorted by key. `keyBytes` is only read while sorting, so
        // borrowing it through `self` copies nothing.
        var entries = Array(memberStack[stackBase...])
        entries.sort { a, b in
            keyBytes[a.key].lexicographicallyPrecedes(keyBytes[b.key])
        }
        for i in 1..<entries.count where compareKeys(entries[i - 1].key, entries[i].key) == .orderedSame {
            let later = max(entries[i - 1].offset, entries[i].offset)
            throw JSONError(.duplicateKey(echoing: keyBytes[entries[i].key]), at: later)
        }
        let original = Array(out[objectStart...])
        out.removeSubrange(objectStart...)
        out.append(UInt8(ascii: "{"))
        for (position, entry) in entries.enumerated() {
            if position > 0 { out.append(UInt8(ascii: ",")) }
            let newStart = out.count
            out.append(contentsOf: original[(entry.member.lowerBound - objectStart)..<(entry.member.upperBound - objectStart)])
            let shift = newStart - entry.member.lowerBound
            memberStack[stackBase + position] = (entry.key, newStart..<out.count, entry.valueStart + shift, entry.offset)
        }
        out.append(UInt8(ascii: "}"))
    }

    func compareKeys(_ a: Range<Int>, _ b: Range<Int>) -> Ordering {
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
