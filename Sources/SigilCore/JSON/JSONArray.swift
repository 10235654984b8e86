/// The elements of a JSON array: a copy-on-write collection like `[JSONValue]`, held in a
/// class of its own so that freeing a deeply nested value does not recurse (see `JSONTeardown`).
public struct JSONArray: Sendable, RandomAccessCollection, MutableCollection, RangeReplaceableCollection, ExpressibleByArrayLiteral {
    // @unchecked: mutated only through `mutableValues`, which copies unless this is the only
    // reference, the same discipline as Array's own buffer.
    final class Storage: @unchecked Sendable {
        var values: [JSONValue]

        init(_ values: [JSONValue]) { self.values = values }

        deinit { JSONTeardown.dismantle(&values) }
    }

    /// Nil while empty: no allocation for `[]`.
    private var storage: Storage?

    public init() {}

    public init(_ values: [JSONValue]) {
        storage = values.isEmpty ? nil : Storage(values)
    }

    public init<S: Sequence<JSONValue>>(_ values: S) {
        self.init(Array(values))
    }

    public init(arrayLiteral elements: JSONValue...) {
        self.init(elements)
    }

    /// The elements as a Swift array (shares storage; no copy of the elements).
    public var values: [JSONValue] { storage?.values ?? [] }

    public var startIndex: Int { 0 }
    public var endIndex: Int { storage?.values.count ?? 0 }

    public subscript(position: Int) -> JSONValue {
        get { storage!.values[position] }
        set { mutableValues { $0[position] = newValue } }
    }

    public mutating func replaceSubrange<C: Collection<JSONValue>>(_ range: Range<Int>, with elements: C) {
        mutableValues { $0.replaceSubrange(range, with: elements) }
    }

    public mutating func append(_ element: JSONValue) {
        mutableValues { $0.append(element) }
    }

    public mutating func reserveCapacity(_ n: Int) {
        mutableValues { $0.reserveCapacity(n) }
    }

    private mutating func mutableValues(_ body: (inout [JSONValue]) -> Void) {
        if storage == nil {
            storage = Storage([])
        } else if !isKnownUniquelyReferenced(&storage) {
            storage = Storage(storage!.values)
        }
        body(&storage!.values)
    }

    func sharesStorage(with other: JSONArray) -> Bool { storage === other.storage }

    /// For `JSONTeardown`.
    var storageObject: Storage? { storage }
}

extension JSONArray: Equatable {
    public static func == (a: JSONArray, b: JSONArray) -> Bool { JSONValue.array(a) == JSONValue.array(b) }
}
