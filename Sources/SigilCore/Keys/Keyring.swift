internal import CSodiumShims

/// A public key that no longer signs but is still published, with the time it stopped being valid.
public struct RetiredKey: Sendable, Equatable {
    public let id: KeyID
    public let publicKey: PublicKey
    /// Milliseconds since the epoch.
    public let expiredTS: Int64

    public init(id: KeyID, publicKey: PublicKey, expiredTS: Int64) {
        self.id = id
        self.publicKey = publicKey
        self.expiredTS = expiredTS
    }
}

/// One server name's keys: the active keys in order (the first one signs, all are published and
/// all sign the key document), and retired public keys.
public struct ServerKeys: Sendable {
    public let serverName: String
    public let activeKeys: [SigningKey]
    public let retiredKeys: [RetiredKey]
    /// How long a key document is valid for when the caller does not say (ms).
    public let keyDocumentValidity: Int64

    public init(serverName: String, activeKeys: [SigningKey], retiredKeys: [RetiredKey], keyDocumentValidity: Int64 = 86_400_000) {
        self.serverName = serverName
        self.activeKeys = activeKeys
        self.retiredKeys = retiredKeys
        self.keyDocumentValidity = keyDocumentValidity
    }

    /// The key that signs requests and JSON.
    public var signingKey: SigningKey { activeKeys[0] }

    public func activeKey(_ id: KeyID) -> SigningKey? { activeKeys.first { $0.id == id } }

    /// An active or retired public key, for verification.
    public func publicKey(_ id: KeyID) -> PublicKey? {
        activeKey(id)?.publicKey ?? retiredKeys.first { $0.id == id }?.publicKey
    }
}

/// Why a keyring could not be assembled.
public enum KeyringError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidServerName(String)
    case duplicateServer(String)
    case noActiveKeys(server: String)
    case duplicateKeyID(server: String, KeyID)
    case retiredKeyIsActive(server: String, KeyID)
    case memory(GuardedMemoryError)

    public var description: String {
        switch self {
        case .invalidServerName(let name): return "'\(name)' is not a valid Matrix server name"
        case .duplicateServer(let name): return "server \(name) is configured twice"
        case .noActiveKeys(let server): return "server \(server) has no signing keys"
        case .duplicateKeyID(let server, let id): return "server \(server) has two keys with ID \(id); a key ID must never be reused"
        case .retiredKeyIsActive(let server, let id): return "server \(server): \(id) is listed both as an active and as a retired key"
        case .memory(let error): return error.description
        }
    }
}

/// Every server name's keys, with all secret keys in one guarded, read-only arena. Immutable:
/// a reload builds a new keyring and swaps it in, and the old arena is zeroed and freed when
/// the last request using it finishes.
public final class Keyring: Sendable {
    /// Sorted by name (byte order), so lists can be paged with a name as the cursor.
    public let servers: [ServerKeys]
    private let index: [String: Int]
    /// The same, by the bytes of a name (the request path's lookup).
    private let nameTable: ServerNameTable
    /// Each server's signing key (`servers[i].signingKey`), side by side: the request path reads
    /// one element here instead of a server's entry and then its key array (two cache misses
    /// when origins are spread over many servers).
    public let signingKeys: ContiguousArray<SigningKey>
    /// Where the arena every signing key lives in (one per keyring) starts, for
    /// `serverIndex(forName:)`'s prefetch. A plain address, so that the hint costs no retain
    /// and release (atomic, and they waited for the prefetch); the arena lives as long as the
    /// keys in `servers`. Kept as bits so that the class stays `Sendable`.
    private let signingKeyHint: UInt
    /// Whether the secret keys are locked into RAM.
    public let isLocked: Bool
    /// Guarded memory the secret keys take.
    public let lockedBytes: Int

    /// One server's key files (in order) and retired keys.
    public struct Source: Sendable {
        public let serverName: String
        public let files: [KeyFile]
        public let retired: [RetiredKey]
        public let keyDocumentValidity: Int64

        public init(serverName: String, files: [KeyFile], retired: [RetiredKey] = [], keyDocumentValidity: Int64 = 86_400_000) {
            self.serverName = serverName
            self.files = files
            self.retired = retired
            self.keyDocumentValidity = keyDocumentValidity
        }
    }

    /// Builds a keyring one server at a time, so a caller reading thousands of key files holds
    /// only one file's guarded copy at a time.
    public struct Builder: ~Copyable {
        private var arena: KeyArena.Builder
        private var loaded: [(name: String, keys: [(id: KeyID, slot: Int, publicKey: PublicKey)], retired: [RetiredKey], validity: Int64)] =
            []
        private var names: Set<String> = []

        /// `expectedKeys`: room to start with (the arena grows if more come).
        public init(expectedKeys: Int, lockPolicy: MemoryLockPolicy) throws(KeyringError) {
            do {
                arena = try KeyArena.Builder(capacity: max(expectedKeys, 1), lockPolicy: lockPolicy)
            } catch {
                throw .memory(error)
            }
        }

        public var serverCount: Int { loaded.count }
        public func contains(_ name: String) -> Bool { names.contains(name) }

        /// Checks and adds one server's keys.
        public mutating func add(_ source: Source) throws(KeyringError) {
            guard ServerName.isValid(source.serverName) else { throw .invalidServerName(source.serverName) }
            guard !names.contains(source.serverName) else { throw .duplicateServer(source.serverName) }
            let ids = source.files.flatMap(\.keyIDs)
            guard !ids.isEmpty else { throw .noActiveKeys(server: source.serverName) }
            var seen: Set<KeyID> = []
            for id in ids where !seen.insert(id).inserted { throw .duplicateKeyID(server: source.serverName, id) }
            var seenRetired: Set<KeyID> = []
            for retired in source.retired {
                if seen.contains(retired.id) { throw .retiredKeyIsActive(server: source.serverName, retired.id) }
                if !seenRetired.insert(retired.id).inserted { throw .duplicateKeyID(server: source.serverName, retired.id) }
            }
            do {
                try arena.reserve(ids.count)
            } catch {
                throw .memory(error)
            }
            var keys: [(id: KeyID, slot: Int, publicKey: PublicKey)] = []
            for file in source.files { keys += file.load(into: &arena) }
            names.insert(source.serverName)
            loaded.append((source.serverName, keys, source.retired, source.keyDocumentValidity))
        }

        /// Adds a server of an earlier keyring as it was (its seeds copied inside guarded memory):
        /// a reload that cannot read one server's new file keeps serving its old keys.
        public mutating func add(copyOf server: ServerKeys) throws(KeyringError) {
            guard !names.contains(server.serverName) else { throw .duplicateServer(server.serverName) }
            do {
                try arena.reserve(server.activeKeys.count)
            } catch {
                throw .memory(error)
            }
            var keys: [(id: KeyID, slot: Int, publicKey: PublicKey)] = []
            for key in server.activeKeys {
                let (slot, publicKey) = arena.add(copyOf: key.slot, in: key.arena)
                keys.append((key.id, slot, publicKey))
            }
            names.insert(server.serverName)
            loaded.append((server.serverName, keys, server.retiredKeys, server.keyDocumentValidity))
        }

        public consuming func finish() -> Keyring {
            let locked = arena.isLocked
            let bytes = KeyArena.Builder.bytes(forKeys: arena.count)
            let sealed = arena.finish()
            let servers = loaded.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }.map { entry in
                ServerKeys(
                    serverName: entry.name,
                    activeKeys: entry.keys.map { SigningKey(id: $0.id, publicKey: $0.publicKey, arena: sealed, slot: $0.slot) },
                    retiredKeys: entry.retired, keyDocumentValidity: entry.validity)
            }
            return Keyring(servers: servers, isLocked: locked, lockedBytes: bytes)
        }
    }

    private init(servers: [ServerKeys], isLocked: Bool, lockedBytes: Int) {
        self.servers = servers
        self.isLocked = isLocked
        self.lockedBytes = lockedBytes
        var index: [String: Int] = [:]
        index.reserveCapacity(servers.count)
        for (position, server) in servers.enumerated() { index[server.serverName] = position }
        self.index = index
        signingKeys = ContiguousArray(servers.map(\.signingKey))
        let arena = servers.first?.signingKey.arena
        signingKeyHint = arena.map { UInt(bitPattern: $0.hintAddress) } ?? 0
        nameTable = ServerNameTable(
            servers.map(\.serverName), keySlots: servers.map { $0.signingKey.arena === arena ? $0.signingKey.slot : -1 })
    }

    public convenience init(sources: [Source], lockPolicy: MemoryLockPolicy) throws(KeyringError) {
        var builder = try Builder(
            expectedKeys: sources.reduce(0) { $0 + $1.files.reduce(0) { $0 + $1.entries.count } }, lockPolicy: lockPolicy)
        for source in sources { try builder.add(source) }
        let keyring = builder.finish()
        self.init(servers: keyring.servers, isLocked: keyring.isLocked, lockedBytes: keyring.lockedBytes)
    }

    /// The position of the first server whose name comes after `name` in byte order.
    public func firstIndex(after name: String) -> Int {
        guard !name.isEmpty else { return 0 }
        var low = 0
        var high = servers.count
        while low < high {
            let middle = (low + high) / 2
            if name.utf8.lexicographicallyPrecedes(servers[middle].serverName.utf8) {
                high = middle
            } else {
                low = middle + 1
            }
        }
        return low
    }

    /// Server names are ASCII (checked above), so String lookup is exact. A daemon usually
    /// serves one or two names: comparing them beats hashing.
    public func server(_ name: String) -> ServerKeys? {
        if servers.count <= 4 {
            for server in servers where server.serverName == name { return server }
            return nil
        }
        return index[name].map { servers[$0] }
    }

    /// The key that signs for `name`, without copying the server's key lists (the hot path).
    public func signingKey(for name: String) -> SigningKey? {
        if servers.count <= 4 {
            for index in servers.indices where servers[index].serverName == name { return servers[index].activeKeys[0] }
            return nil
        }
        return index[name].map { servers[$0].activeKeys[0] }
    }

    /// The index in `servers` of the server whose name is these bytes. For the daemon's hot path,
    /// which then needs neither a new String nor a check of the name: every name here passed
    /// `ServerName.isValid` when the keyring was built.
    ///
    /// With many servers, the lookup also starts loading the server's signing key and its entry in
    /// `signingKeys`, which the caller is about to sign with: both addresses come from the name
    /// table's slot, so the two cache misses overlap each other and the message's layout instead
    /// of following the lookup one after the other (docs/BENCHMARKS.md, "2026-12-04, night").
    public func serverIndex(forName bytes: UnsafeRawBufferPointer) -> Int? {
        if servers.count <= 4 {
            for position in servers.indices {
                let same = servers[position].serverName.utf8.withContiguousStorageIfAvailable { name in
                    guard name.count == bytes.count else { return false }
                    for i in 0..<name.count where name[i] != bytes[i] { return false }
                    return true
                }
                if same ?? servers[position].serverName.utf8.elementsEqual(bytes) { return position }
            }
            return nil
        }
        let found = servers.withUnsafeBufferPointer { servers in nameTable.entry(of: bytes) { servers[$0].serverName } }
        guard let found else { return nil }
        if found.keySlot >= 0, let keys = UnsafeRawPointer(bitPattern: signingKeyHint) {
            CSodiumShims_prefetch(keys + found.keySlot &* Ed25519.secretKeyBytes)
            signingKeys.withUnsafeBufferPointer { keys in
                let entry = UnsafeRawPointer(keys.baseAddress! + found.index)
                CSodiumShims_prefetch(entry)
                CSodiumShims_prefetch(entry + (MemoryLayout<SigningKey>.size - 1))
            }
        }
        return found.index
    }

    /// Whether names are looked up in the table, where a hint ahead of the lookup pays: with up to
    /// four servers `serverIndex(forName:)` compares the names in place.
    public var looksUpByTable: Bool { servers.count > 4 }

    /// Starts loading the table slot where a lookup of this name begins: one hash (none for a name
    /// longer than every server's), no load. For a name looked up a request or two later.
    public func prefetchSlot(forName bytes: UnsafeRawBufferPointer) {
        if servers.count > 4 { nameTable.prefetch(bytes) }
    }

    /// Finds the name and starts loading its signing key and `signingKeys` entry, as
    /// `serverIndex(forName:)` does. It reads the name's slot, so it waits unless a
    /// `prefetchSlot(forName:)` came well before it.
    public func prefetchKey(forName bytes: UnsafeRawBufferPointer) {
        if servers.count > 4 { _ = serverIndex(forName: bytes) }
    }

    public var serverNames: [String] { servers.map(\.serverName) }
    public var keyCount: Int { servers.reduce(0) { $0 + $1.activeKeys.count } }
    public var retiredKeyCount: Int { servers.reduce(0) { $0 + $1.retiredKeys.count } }
}
