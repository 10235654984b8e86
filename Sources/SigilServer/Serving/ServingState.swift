public import SigilCore
import SigilPosix

/// Why keys or configuration could not be (re)loaded. Never contains key material.
public struct LoadError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What the daemon serves with: the keyring and the configuration it came from. Immutable; a
/// reload builds a new one and swaps it in whole, so a request sees either the old keys and
/// rules or the new ones, never a mix.
public final class ServingState: Sendable {
    public let generation: UInt64
    public let keyring: Keyring
    public let configuration: Configuration
    /// Per server: KEY_DOCUMENT validity in ms.
    let documentValidity: [String: Int64]
    /// Warnings from loading (odd key IDs, unlocked memory), for the log.
    public let warnings: [String]
    /// The rules that apply on each listener; `defaultRules` on any other.
    let listenerRules: [String: [AccessRule]]
    let defaultRules: [AccessRule]

    init(generation: UInt64, keyring: Keyring, configuration: Configuration, warnings: [String]) {
        self.generation = generation
        self.keyring = keyring
        self.configuration = configuration
        self.warnings = warnings
        var validity: [String: Int64] = [:]
        for server in configuration.servers { validity[server.name] = server.keyDocumentValidity }
        documentValidity = validity
        // With no rules at all, only the daemon's own user may call, with the default operations.
        let base = configuration.access.isEmpty ? [AccessRule(uid: Posix.effectiveUID)] : configuration.access
        defaultRules = base
        var perListener: [String: [AccessRule]] = [:]
        for listener in configuration.listeners { perListener[listener.name] = listener.access ?? base }
        listenerRules = perListener
    }

    func rules(forListener name: String) -> [AccessRule] {
        listenerRules[name] ?? defaultRules
    }

    /// Reads every key file (refusing ones other users can read or write) into one guarded arena.
    public static func load(_ configuration: Configuration, generation: UInt64) throws(LoadError) -> ServingState {
        var warnings: [String] = []
        var sources: [Keyring.Source] = []
        for server in configuration.servers {
            var files: [KeyFile] = []
            for path in server.keyFiles {
                let resolved = SystemdCredentials.resolve(path)
                do {
                    let (file, fileWarnings) = try KeyFileIO.read(resolved, permissions: .refuse, lockPolicy: configuration.memoryLock)
                    warnings += fileWarnings.filter { !$0.contains("could not be locked") }
                    files.append(file)
                } catch {
                    throw LoadError("server \(server.name): \(error)")
                }
            }
            sources.append(Keyring.Source(serverName: server.name, files: files, retired: server.retired))
        }
        let keyring: Keyring
        do {
            keyring = try Keyring(sources: sources, lockPolicy: configuration.memoryLock)
        } catch {
            throw LoadError(error.description)
        }
        if !keyring.isLocked {
            let limit = Posix.memlockLimit().map { $0 == .max ? "unlimited" : "\($0) bytes" } ?? "unknown"
            warnings.append(
                "key memory is not locked into RAM (RLIMIT_MEMLOCK \(limit)): keys could be swapped to disk; "
                    + "raise LimitMEMLOCK= or grant CAP_IPC_LOCK, or keep memory_lock: warn knowingly")
        }
        return ServingState(generation: generation, keyring: keyring, configuration: configuration, warnings: warnings)
    }
}
