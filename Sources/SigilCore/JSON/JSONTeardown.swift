/// Frees JSON trees without recursing on their depth.
///
/// Left to itself, releasing the outermost container of `[[[…]]]` releases the next inside it,
/// and so on down: a few stack frames per level, enough to overflow a 256 KiB thread stack at
/// a few thousand levels. Instead, each container's storage empties itself when it is freed:
/// the storages of the containers it holds go to heap worklists, and each one this code holds
/// the last reference to is emptied in turn, so every storage is freed with nothing inside it.
enum JSONTeardown {
    static func dismantle(_ values: inout [JSONValue]) {
        guard values.contains(where: \.isContainer) else { return }
        var work = Work()
        work.take(&values)
        work.drain()
    }

    static func dismantle(_ members: inout [JSONObject.Member]) {
        guard members.contains(where: { $0.value.isContainer }) else { return }
        var work = Work()
        work.take(&members)
        work.drain()
    }

    /// Storages popped from these arrays are held by a plain variable and nothing else of
    /// ours, so `isKnownUniquelyReferenced` answers for the rest of the program.
    private struct Work {
        var arrays: [JSONArray.Storage] = []
        var objects: [JSONObject.Storage] = []

        mutating func drain() {
            while true {
                if var storage = arrays.popLast() {
                    if isKnownUniquelyReferenced(&storage) { take(&storage.values) }
                    continue  // freed here when it was the last reference: already empty
                }
                if var storage = objects.popLast() {
                    if isKnownUniquelyReferenced(&storage) { take(&storage.members) }
                    continue
                }
                return
            }
        }

        mutating func take(_ values: inout [JSONValue]) {
            for value in values { add(value) }
            values = []
        }

        mutating func take(_ members: inout [JSONObject.Member]) {
            for member in members { add(member.value) }
            members = []
        }

        private mutating func add(_ value: JSONValue) {
            switch value {
            case .array(let array): if let storage = array.storageObject { arrays.append(storage) }
            case .object(let object): if let storage = object.storageObject { objects.append(storage) }
            default: break
            }
        }
    }
}
