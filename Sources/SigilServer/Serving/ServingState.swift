public import SigilCore
import SigilPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Why keys or configuration could not be (re)loaded. Never contains key material.
public struct LoadError: Error, Sendable, CustomStringConvertible {
    public let description: String
    /// Where it failed (a file, a line, a field), without what the file says: for `systemctl
    /// status`, which every local user can read.
    public let location: String

    public init(_ description: String, location: String? = nil) {
        self.description = description
        self.location = location ?? description
    }
}

/// Something worth an operator's attention that did not stop keys loading.
public enum LoadWarning: Sendable, Equatable, CustomStringConvertible {
    /// Key memory could not be locked (`memory_lock: warn`).
    case notLocked(needed: Int, limit: UInt64?)
    case keyFile(KeyFileWarning)
    /// One server of a key directory could not be loaded: it is left out, or keeps the keys it
    /// had before this reload.
    case serverSkipped(server: String, file: String, reason: String, keptPrevious: Bool)
    /// A file in a key directory whose name is not a server name.
    case badFileName(directory: String, file: String)
    /// A server found in two places; the first one is used.
    case duplicateServer(server: String, used: String, ignored: String)
    /// A rule names a server the daemon has no keys for.
    case unknownServerInRule(String)
    /// A reloaded setting that the running daemon cannot apply (sockets, loops, log level).
    case needsRestart(String)
    /// A `uri_prefixes` entry that does not end in `/`, so it matches more than its segment.
    case openURIPrefix(String)

    public var description: String {
        switch self {
        case .notLocked(let needed, let limit):
            let limitText = limit.map { $0 == .max ? "unlimited" : "\($0) bytes" } ?? "unknown"
            return "key memory (\(needed) bytes) is not locked into RAM (RLIMIT_MEMLOCK \(limitText)): keys could be swapped to disk; "
                + "raise LimitMEMLOCK= (to at least twice that, for reloads) or grant CAP_IPC_LOCK, or keep memory_lock: warn knowingly"
        case .keyFile(let warning): return warning.description
        case .serverSkipped(let server, let file, let reason, let kept):
            return "server \(server): \(file): \(reason); " + (kept ? "it keeps the keys it had before this reload" : "it is not served")
        case .badFileName(let directory, let file):
            return
                "\(directory): '\(file.truncatedUTF8(80))' fits the key file pattern but its name is not a valid Matrix server name; skipped"
        case .duplicateServer(let server, let used, let ignored):
            return "server \(server) is configured in \(used) and in \(ignored); using \(used)"
        case .unknownServerInRule(let name):
            return "an access rule names server \(name), which has no keys (yet)"
        case .needsRestart(let what):
            return "\(what) takes effect after a restart"
        case .openURIPrefix(let prefix):
            return "uri_prefixes entry \(prefix) does not end in '/': uris are matched by prefix, so it also allows \(prefix)X… "
                + "and \(prefix)_other/…; end it with '/' to allow only what is below it"
        }
    }
}

/// Paging of server lists (HELLO, LIST_KEYS).
enum ServerPaging {
    /// The most servers one page lists.
    static let pageSize = 1000
}

/// What the daemon serves with: the keyring and the configuration it came from. Immutable; a
/// reload builds a new one and swaps it in whole, so a request sees either the old keys and
/// rules or the new ones, never a mix.
public final class ServingState: Sendable {
    public let generation: UInt64
    public let keyring: Keyring
    public let configuration: Configuration
    public let warnings: [LoadWarning]
    /// The rules that apply on each listener; `defaultRules` on any other.
    let listenerRules: [String: [AccessRule]]
    let defaultRules: [AccessRule]
    let rateLimits: [String: RateLimit]
    /// Servers that came from a key directory (a reload that cannot read one keeps its keys).
    let directoryServers: Set<String>
    /// The directory each of those came from.
    let directoryOrigins: [String: String]
    /// Which servers each kind of caller sees in HELLO and LIST_KEYS (computed on first use).
    let visibilityCache = ServerVisibilityCache()

    init(
        generation: UInt64, keyring: Keyring, configuration: Configuration, warnings: [LoadWarning], directoryServers: Set<String>,
        directoryOrigins: [String: String] = [:]
    ) {
        self.generation = generation
        self.keyring = keyring
        self.configuration = configuration
        self.warnings = warnings
        self.directoryServers = directoryServers
        self.directoryOrigins = directoryOrigins
        // With no rules at all, only the daemon's own user may call, with the default operations.
        let base = configuration.access.isEmpty ? [AccessRule(uid: Posix.effectiveUID)] : configuration.access
        defaultRules = base
        var perListener: [String: [AccessRule]] = [:]
        var limits: [String: RateLimit] = [:]
        for listener in configuration.listeners {
            perListener[listener.name] = listener.access ?? base
            limits[listener.name] = listener.rateLimit
        }
        listenerRules = perListener
        rateLimits = limits
    }

    /// How many servers came from key directories.
    public var directoryServerCount: Int { directoryServers.count }

    /// How many servers came from this key directory.
    public func serverCount(inDirectory directory: Configuration.KeyDirectory) -> Int {
        directoryServers.reduce(0) { count, name in
            count + (directoryOrigins[name] == directory.path ? 1 : 0)
        }
    }

    func rules(forListener name: String) -> [AccessRule] {
        listenerRules[name] ?? defaultRules
    }

    func rateLimit(forListener name: String) -> RateLimit? {
        rateLimits[name]
    }

    func documentValidity(for server: String) -> Int64 {
        keyring.server(server)?.keyDocumentValidity ?? Configuration.defaultDocumentValidity
    }

    // MARK: Paging

    /// The servers a caller whose matching rules are `rules` (positions in the listener's list)
    /// sees, for `purpose`.
    func visibility(listener: String, rules: [Int], purpose: ServerVisibility.Purpose) -> ServerVisibility {
        visibilityCache.visibility(.init(listener: listener, rules: rules, purpose: purpose)) {
            let all = self.rules(forListener: listener)
            return ServerVisibility.compute(rules: rules.map { all[$0] }, purpose: purpose, keyring: keyring)
        }
    }

    /// Visible names after `cursor`: at most `limit`, and at most `budget` bytes as wire
    /// strings. `nextCursor` is "" when the list is complete. Costs the page, not the keyring.
    func serverList(after cursor: String, limit: Int, budget: Int, visible: ServerVisibility) -> (names: [String], nextCursor: String) {
        var names: [String] = []
        var used = 0
        let servers = keyring.servers
        for position in visible.positions(from: keyring.firstIndex(after: cursor), total: servers.count) {
            let name = servers[position].serverName
            let size = 2 + name.utf8.count
            if names.count == limit || names.count == Int(UInt16.max) || used + size > budget {
                return (names, names.last ?? "")
            }
            names.append(name)
            used += size
        }
        return (names, "")
    }

    // MARK: Loading

    /// Reads every key file (refusing ones other users can read, write or own) into one guarded
    /// arena. Servers named in `servers:` load all or nothing: any failure fails the load. Servers
    /// of a key directory load one by one: one that fails is reported and left out, or, on a
    /// reload, keeps the keys it had (`previous`).
    public static func load(_ configuration: Configuration, generation: UInt64, previous: ServingState? = nil) throws(LoadError)
        -> ServingState
    {
        var warnings: [LoadWarning] = []
        var sources: [Keyring.Source] = []
        var origins: [String: String] = [:]
        for server in configuration.servers {
            var files: [KeyFile] = []
            for path in server.keyFiles {
                let resolved = SystemdCredentials.resolve(path)
                do {
                    let (file, fileWarnings) = try KeyFileIO.read(resolved, permissions: .refuse, lockPolicy: configuration.memoryLock)
                    warnings += fileWarnings.filter { if case .notLocked = $0 { return false } else { return true } }.map(
                        LoadWarning.keyFile)
                    files.append(file)
                } catch {
                    throw LoadError(
                        "server \(server.name): \(error)",
                        location: "server \(server.name): \(error.path)\(error.line.map { ":\($0)" } ?? "")")
                }
            }
            sources.append(
                Keyring.Source(
                    serverName: server.name, files: files, retired: server.retired, keyDocumentValidity: server.keyDocumentValidity))
            origins[server.name] = configuration.sourcePath.map { "\($0) (servers:)" } ?? "the command line"
        }
        var listed: [(directory: Configuration.KeyDirectory, names: [String])] = []
        var expected = sources.reduce(0) { $0 + $1.files.reduce(0) { $0 + $1.entries.count } }
        for directory in configuration.keyDirectories {
            let names = try listDirectory(directory)
            listed.append((directory, names))
            expected += names.count
        }
        var builder: Keyring.Builder
        do {
            builder = try Keyring.Builder(expectedKeys: expected, lockPolicy: configuration.memoryLock)
        } catch {
            throw keyringError(error, keys: expected, previous: previous)
        }
        for source in sources {
            do {
                try builder.add(source)
            } catch {
                throw keyringError(error, keys: expected, previous: previous)
            }
        }
        var fromDirectories: Set<String> = []
        var directoryOrigins: [String: String] = [:]
        // One guarded buffer for every directory file (each is loaded before the next is read).
        let scratch = listed.isEmpty ? nil : try? GuardedBuffer(count: 4096, lockPolicy: configuration.memoryLock)
        defer { scratch?.wipe() }
        for (directory, names) in listed {
            for fileName in names {
                guard let server = directory.serverName(forFile: fileName) else { continue }
                let path = directory.path + "/" + fileName
                guard ServerName.isValid(server) else {
                    warnings.append(.badFileName(directory: directory.path, file: fileName))
                    continue
                }
                if let first = origins[server] {
                    warnings.append(.duplicateServer(server: server, used: first, ignored: path))
                    continue
                }
                origins[server] = path
                do {
                    let (file, fileWarnings) = try KeyFileIO.read(
                        path, permissions: .refuse, lockPolicy: configuration.memoryLock, scratch: scratch)
                    warnings += fileWarnings.filter { if case .notLocked = $0 { return false } else { return true } }.map(
                        LoadWarning.keyFile)
                    try builder.add(Keyring.Source(serverName: server, files: [file], keyDocumentValidity: directory.keyDocumentValidity))
                    fromDirectories.insert(server)
                    directoryOrigins[server] = directory.path
                } catch let error as KeyringError {
                    if case .memory = error { throw keyringError(error, keys: expected, previous: previous) }
                    try keepPrevious(
                        server, path: path, reason: error.description, previous: previous, builder: &builder, warnings: &warnings,
                        kept: &fromDirectories)
                    if fromDirectories.contains(server) { directoryOrigins[server] = directory.path }
                } catch let error as KeyFileError {
                    try keepPrevious(
                        server, path: path, reason: error.explanation, previous: previous, builder: &builder, warnings: &warnings,
                        kept: &fromDirectories)
                    if fromDirectories.contains(server) { directoryOrigins[server] = directory.path }
                } catch {
                    try keepPrevious(
                        server, path: path, reason: "\(error)", previous: previous, builder: &builder, warnings: &warnings,
                        kept: &fromDirectories)
                    if fromDirectories.contains(server) { directoryOrigins[server] = directory.path }
                }
            }
        }
        guard builder.serverCount > 0 else {
            // Say why: otherwise the reasons are only in warnings that are never shown.
            let reasons = warnings.compactMap { warning -> String? in
                if case .serverSkipped = warning { return warning.description } else { return nil }
            }
            let shown = reasons.prefix(5).joined(separator: "; ")
            let more = reasons.count > 5 ? "; and \(reasons.count - 5) more" : ""
            throw LoadError(
                "no server has keys: every key file failed to load" + (reasons.isEmpty ? "" : ": \(shown)\(more)"),
                location: "no server has keys")
        }
        let keyring = builder.finish()
        if !keyring.isLocked {
            warnings.append(.notLocked(needed: keyring.lockedBytes, limit: Posix.memlockLimit()))
        }
        for rule in configuration.access + configuration.listeners.flatMap({ $0.access ?? [] }) {
            for name in rule.servers?.exactNames.sorted() ?? [] where keyring.server(name) == nil {
                if !warnings.contains(.unknownServerInRule(name)) { warnings.append(.unknownServerInRule(name)) }
            }
            for prefix in rule.uriPrefixes ?? [] where !prefix.hasSuffix("/") && !warnings.contains(.openURIPrefix(prefix)) {
                warnings.append(.openURIPrefix(prefix))
            }
        }
        return ServingState(
            generation: generation, keyring: keyring, configuration: configuration, warnings: warnings, directoryServers: fromDirectories,
            directoryOrigins: directoryOrigins)
    }

    /// The files of a key directory, after checking that no one else can change the directory.
    private static func listDirectory(_ directory: Configuration.KeyDirectory) throws(LoadError) -> [String] {
        do {
            let status = try Posix.stat(directory.path)
            guard status.isDirectory else { throw PosixError("\(directory.path): not a directory", errno: ENOTDIR) }
            try Posix.checkTrusted(status, directory.path)
            // Names starting with "." are editors' and tools' temporary files.
            return try Posix.listDirectory(directory.path).filter { !$0.hasPrefix(".") }.sorted()
        } catch {
            throw LoadError("key directory \(directory.path): \(error)", location: "key directory \(directory.path)")
        }
    }

    /// A directory server that could not be read keeps the keys of `previous` (if it had any).
    private static func keepPrevious(
        _ server: String, path: String, reason: String, previous: ServingState?, builder: inout Keyring.Builder,
        warnings: inout [LoadWarning], kept: inout Set<String>
    ) throws(LoadError) {
        if let previous, previous.directoryServers.contains(server), let old = previous.keyring.server(server) {
            do {
                try builder.add(copyOf: old)
            } catch {
                throw keyringError(error, keys: 0, previous: previous)
            }
            kept.insert(server)
            warnings.append(.serverSkipped(server: server, file: path, reason: reason, keptPrevious: true))
        } else {
            warnings.append(.serverSkipped(server: server, file: path, reason: reason, keptPrevious: false))
        }
    }

    private static func keyringError(_ error: KeyringError, keys: Int, previous: ServingState?) -> LoadError {
        guard case .memory(.lockFailed(let bytes, let limit)) = error else { return LoadError(error.description) }
        let held = previous?.keyring.lockedBytes ?? 0
        let limitText = limit.map { $0 == .max ? "unlimited" : "\($0) bytes" } ?? "unknown"
        let advice = max(2 * KeyArenaSize.bytes(keys: keys), bytes + held)
        return LoadError(
            "cannot lock \(bytes) bytes of key memory for \(keys) key(s) into RAM"
                + (held > 0 ? " while the running keys still hold \(held) bytes" : "")
                + " (RLIMIT_MEMLOCK is \(limitText)): raise LimitMEMLOCK= (ulimit -l) to at least \(advice) bytes"
                + " (twice the keys' size, so that a reload fits), grant CAP_IPC_LOCK, or set memory_lock: warn",
            location: "locking key memory (RLIMIT_MEMLOCK)")
    }
}

/// Sizes of key memory, for advice in messages.
enum KeyArenaSize {
    /// Guarded memory for `keys` keys, rounded up to whole pages, plus libsodium's guard page
    /// and canary page.
    static func bytes(keys: Int) -> Int {
        let page = 4096
        let data = KeyArena.Builder.bytes(forKeys: keys)
        return (data + page - 1) / page * page + 2 * page
    }
}
