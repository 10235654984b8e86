/// A JSON object whose members are kept sorted by the UTF-8 bytes of their keys, with no
/// duplicates. Copy-on-write, held in a class of its own so that freeing a deeply nested value
/// does not recurse (see `JSONTeardown`).
public struct JSONObject: Sendable, Equatable, Sequence {
    public typealias Member = (key: String, value: JSONValue)

    // @unchecked: mutated only through `mutableMembers`, which copies unless this is the only
    // reference, the same discipline as Array's own buffer.
    final class Storage: @unchecked Sendable {
        var members: [Member]

        init(_ members: [Member]) { self.members = members }

        deinit { JSONTeardown.dismantle(&members) }
    }

    /// Nil while empty: no allocation for `{}`.
    private var storage: Storage?

    public init() {}

    /// From members in any order. Returns nil on a duplicate key.
    public init?(_ pairs: [(String, JSONValue)]) {
        let sorted = pairs.map { Member(key: $0.0, value: $0.1) }.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        for index in sorted.indices.dropFirst() where sorted[index - 1].key.utf8.elementsEqual(sorted[index].key.utf8) {
            return nil
        }
        self.init(sortedMembers: sorted)
    }

    /// From members already in key order, without duplicates (the parser's).
    init(sortedMembers: [Member]) {
        storage = sortedMembers.isEmpty ? nil : Storage(sortedMembers)
    }

    public var members: [Member] { storage?.members ?? [] }
    public var count: Int { storage?.members.count ?? 0 }
    public var isEmpty: Bool { count == 0 }
    public var keys: [String] { members.map(\.key) }

    public func makeIterator() -> IndexingIterator<[Member]> { members.makeIterator() }

    private func search(_ key: String) -> (found: Bool, index: Int) {
        guard let members = storage?.members else { return (false, 0) }
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
            return found ? storage!.members[index].value : nil
        }
        set {
            let (found, index) = search(key)
            switch (found, newValue) {
            case (true, .some(let value)): mutableMembers { $0[index].value = value }
            case (true, .none): mutableMembers { $0.remove(at: index) }
            case (false, .some(let value)): mutableMembers { $0.insert((key, value), at: index) }
            case (false, .none): break
            }
        }
    }

    /// Inserts a new member; returns true if the key was already present (nothing changes then).
    @discardableResult
    mutating func insert(_ key: String, _ value: JSONValue) -> Bool {
        let (found, index) = search(key)
        if found { return true }
        mutableMembers { $0.insert((key, value), at: index) }
        return false
    }

    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSONValue? {
        let (found, index) = search(key)
        guard found else { return nil }
        var removed: JSONValue?
        mutableMembers { removed = $0.remove(at: index).value }
        return removed
    }

    private mutating func mutableMembers(_ body: (inout [Member]) -> Void) {
        if storage == nil {
            storage = Storage([])
        } else if !isKnownUniquelyReferenced(&storage) {
            storage = Storage(storage!.members)
        }
        body(&storage!.members)
    }

    func sharesStorage(with other: JSONObject) -> Bool { storage === other.storage }

    /// For `JSONTeardown`.
    var storageObject: Storage? { storage }

    public static func == (a: JSONObject, b: JSONObject) -> Bool { JSONValue.object(a) == JSONValue.object(b) }

    public func appendCanonical(to out: inout [UInt8]) {
        JSONValue.object(self).appendCanonical(to: &out)
    }

    public var canonicalBytes: [UInt8] {
        var out: [UInt8] = []
        appendCanonical(to: &out)
        return out
    }
}
