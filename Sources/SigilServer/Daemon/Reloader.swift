import Logging
import SigilCore
import SigilPosix

/// SIGHUP's work, on a thread of its own: reading thousands of key files takes seconds, and the
/// main loop must go on accepting meanwhile. The outcome is handed back to the main loop (woken
/// through `waker`), which swaps the new state in; a reload asked for while one runs is done
/// once more afterwards.
final class Reloader: Sendable {
    struct Outcome: Sendable {
        let result: Result<ServingState, LoadError>
        /// When the reload started (monotonic ns), for how long it took.
        let startedAt: UInt64
    }

    private struct Status {
        var running = false
        var again = false
        var outcome: Outcome?
        var thread: PosixThread?
    }

    private let status = Locked(Status())
    private let configPath: String?
    private let flagConfiguration: Configuration

    init(configPath: String?, flagConfiguration: Configuration) {
        self.configPath = configPath
        self.flagConfiguration = flagConfiguration
    }

    /// Starts a reload from `current` unless one runs (then one more follows it).
    func start(from current: ServingState, listeners: [String], waker: LoopWaker) {
        let proceed: Bool = status.withLock { status in
            if status.running {
                status.again = true
                return false
            }
            status.running = true
            return true
        }
        guard proceed else { return }
        let configPath = self.configPath
        let flagConfiguration = self.flagConfiguration
        let startedAt = Posix.monotonicNanoseconds()
        do {
            let thread = try PosixThread(name: "sigild-reload") { [self] in
                let result = Result { () throws(LoadError) -> ServingState in
                    try Reloader.load(configPath: configPath, flagConfiguration: flagConfiguration, current: current, listeners: listeners)
                }
                status.withLock { $0.outcome = Outcome(result: result, startedAt: startedAt) }
                waker.wake()
            }
            status.withLock { $0.thread = thread }
        } catch {
            status.withLock {
                $0.outcome = Outcome(result: .failure(LoadError("cannot start the reload thread: \(error)")), startedAt: startedAt)
                $0.running = false
            }
            waker.wake()
        }
    }

    /// The finished reload's outcome, if one is ready; and whether another must start.
    func take() -> (outcome: Outcome, again: Bool)? {
        let taken: (Outcome, Bool, PosixThread?)? = status.withLock { status in
            guard let outcome = status.outcome else { return nil }
            defer {
                status.outcome = nil
                status.running = false
                status.again = false
                status.thread = nil
            }
            return (outcome, status.again, status.thread)
        }
        guard let (outcome, again, thread) = taken else { return nil }
        thread?.join()
        return (outcome, again)
    }

    /// Waits for a running reload (when the daemon stops).
    func finish() {
        let thread = status.withLock { $0.thread }
        thread?.join()
    }

    private static func load(configPath: String?, flagConfiguration: Configuration, current: ServingState, listeners: [String]) throws(LoadError) -> ServingState {
        var configuration = flagConfiguration
        var notices: [LoadWarning] = []
        if let path = configPath {
            do {
                configuration = try ConfigLoader.load(path: path)
            } catch {
                throw LoadError(error.description, location: error.location)
            }
            notices = try checkReloadable(configuration, against: current.configuration, serving: listeners, path: path)
        }
        let next = try ServingState.load(configuration, generation: current.generation + 1, previous: current)
        guard !notices.isEmpty else { return next }
        return ServingState(
            generation: next.generation, keyring: next.keyring, configuration: next.configuration, warnings: notices + next.warnings,
            directoryServers: next.directoryServers, directoryOrigins: next.directoryOrigins)
    }

    /// What a reload cannot change, since the sockets and loops stay. A listener that serves a
    /// socket must keep an entry (its rules would otherwise silently fall back to the top-level
    /// ones): removing or renaming one refuses the whole reload.
    private static func checkReloadable(_ next: Configuration, against current: Configuration, serving: [String], path: String) throws(LoadError) -> [LoadWarning] {
        let configured = Set(current.listeners.map(\.name))
        let kept = Set(next.listeners.map(\.name))
        for name in serving where configured.contains(name) && !kept.contains(name) {
            throw LoadError(
                "\(path): listener '\(name)' serves a socket but is not in the new configuration; removing or renaming a listener needs a restart",
                location: "\(path): listen")
        }
        var notices: [LoadWarning] = []
        let addressesChanged = next.listeners.contains { listener in
            current.listeners.first { $0.name == listener.name }.map {
                $0.path != listener.path || $0.fd != listener.fd || $0.mode != listener.mode || $0.owner != listener.owner
                    || $0.group != listener.group || $0.abstract != listener.abstract
            } ?? true
        }
        if addressesChanged { notices.append(.needsRestart("\(path): a new listener, or a socket's address, mode, owner or group,")) }
        if next.workers != current.workers { notices.append(.needsRestart("\(path): 'workers'")) }
        if next.logLevel != current.logLevel { notices.append(.needsRestart("\(path): 'log_level'")) }
        if next.audit != current.audit { notices.append(.needsRestart("\(path): 'audit'")) }
        return notices
    }
}
