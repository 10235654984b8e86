import ArgumentParser
import Logging
import SigilCore
import SigilPosix
import SigilServer

@main
struct Sigild: ParsableCommand {
    static let version = "0.1.0"

    /// Swift's crash reporter prints registers and the memory they point to: a crash while a
    /// register points into the key arena would put key bytes in the journal. It reads its
    /// setting only at start, so sigild restarts itself once with it off, unless the operator
    /// chose a setting explicitly.
    static func main() {
        if Posix.environment("SWIFT_BACKTRACE") == nil {
            let error = Posix.reexecuteSelf(setting: "SWIFT_BACKTRACE", to: "enable=no")
            Posix.printError("sigild: warning: cannot restart with crash backtraces off (\(error)); continuing")
        }
        Self.main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "sigild",
        abstract:
            "The Sigil signing daemon: holds Matrix signing keys in locked, guarded memory and signs for local callers over a Unix socket.",
        discussion: """
            With a configuration file:      sigild --config /etc/sigil/sigild.yaml
            Check one without serving:      sigild --check-config /etc/sigil/sigild.yaml
            Quick start, no file:           sigild --socket /run/sigil/sigild.sock --key example.org=/etc/sigil/mmr.signing.key
            Quick start, socket activated:  systemd-socket-activate -l /run/sigil/sigild.sock sigild --key example.org=/etc/sigil/mmr.signing.key

            SIGHUP reloads the configuration and keys (a bad file keeps the running keys);
            SIGTERM and SIGINT stop accepting, answer what is in flight, and exit.
            """,
        version: version)

    @Option(name: .long, help: "The YAML configuration file.")
    var config: String?

    @Option(name: .customLong("check-config"), help: "Validate this configuration file and its key files, then exit.")
    var checkConfig: String?

    @Option(
        name: .long, help: "Quick start: the socket path to listen on (not needed under socket activation: the inherited socket is used).")
    var socket: String?

    @Option(name: .long, help: "Quick start: SERVER_NAME=KEYFILE. Repeatable; several files for one server are used in order.")
    var key: [String] = []

    @Option(name: .long, help: "Quick start: also allow this operation for our own uid (e.g. sign_json). Repeatable.")
    var allow: [String] = []

    @Option(name: .customLong("memory-lock"), help: "Quick start: require or warn when key memory cannot be locked.")
    var memoryLock: String = "require"

    @Option(name: .long, help: "Quick start: event loops (0: one per CPU).")
    var workers: Int = 0

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    func validate() throws {
        let modes = [config != nil, checkConfig != nil, socket != nil || !key.isEmpty].filter { $0 }.count
        guard modes == 1 else {
            throw ValidationError("give one of --config FILE, --check-config FILE, or --socket PATH with --key SERVER=KEYFILE")
        }
        if socket != nil || !key.isEmpty {
            guard socket != nil || Sigild.socketActivated else {
                throw ValidationError("--key needs --socket PATH (or a socket passed by systemd socket activation, LISTEN_FDS)")
            }
            guard !key.isEmpty else { throw ValidationError("--socket needs at least one --key SERVER_NAME=KEYFILE") }
        }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level '\(logLevel)': expected trace, debug, info, notice, warning, error or critical")
        }
    }

    /// Whether systemd (or systemd-socket-activate) passed this process listening sockets.
    static var socketActivated: Bool {
        Posix.environment("LISTEN_PID").flatMap { Int32($0) } == Posix.pid && (Posix.environment("LISTEN_FDS").flatMap { Int($0) } ?? 0) > 0
    }

    func run() throws {
        if let checkConfig {
            try check(checkConfig)
            return
        }
        let configuration = try config.map(load) ?? quickStartConfiguration()
        let level = Logger.Level(rawValue: logLevel ?? configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, level: level) }
        let logger = Logger(label: "sigild")
        let daemon = Daemon(
            options: Daemon.Options(configuration: configuration, configPath: config, version: Sigild.version), logger: logger)
        let status = daemon.run()
        if status != 0 { throw ExitCode(status) }
    }

    private func load(_ path: String) throws -> Configuration {
        do {
            return try ConfigLoader.load(path: path)
        } catch {
            throw ValidationError(error.description)
        }
    }

    private func check(_ path: String) throws {
        let configuration = try load(path)
        let state: ServingState
        do {
            state = try ServingState.load(configuration, generation: 1)
        } catch {
            throw ValidationError("\(path): \(error)")
        }
        for warning in state.warnings { print("warning: \(warning)") }
        print("\(path): OK")
        let keyring = state.keyring
        let fromDirectories = state.directoryServerCount
        print(
            "  \(keyring.servers.count) server(s), \(keyring.keyCount) active key(s), \(keyring.retiredKeyCount) retired"
                + (configuration.keyDirectories.isEmpty
                    ? "" : "; \(keyring.servers.count - fromDirectories) from servers:, \(fromDirectories) from key directories"))
        for directory in configuration.keyDirectories {
            let skipped = state.warnings.filter {
                if case .serverSkipped(_, let file, _, _) = $0 { return file.hasPrefix(directory.path + "/") } else { return false }
            }.count
            print(
                "  key directory \(directory.path) (\(directory.pattern)): \(state.serverCount(inDirectory: directory)) server(s) loaded, \(skipped) skipped"
            )
        }
        let shown = 20
        for server in keyring.servers.prefix(shown) {
            print(
                "  \(server.serverName): signs with \(server.signingKey.id); publishes \(server.activeKeys.map(\.id.description).joined(separator: ", "))"
                    + (server.retiredKeys.isEmpty ? "" : "; retired \(server.retiredKeys.map(\.id.description).joined(separator: ", "))"))
        }
        if keyring.servers.count > shown { print("  … and \(keyring.servers.count - shown) more server(s)") }
        for listener in configuration.listeners {
            let address = listener.path ?? listener.fd.map { "fd \($0)" } ?? "systemd socket"
            print("  listener \(listener.name): \(address), \((listener.access ?? configuration.access).count) rule(s)")
        }
        let limit = Posix.memlockLimit().map { $0 == .max ? "unlimited" : "\($0) bytes" } ?? "unknown"
        print(
            "  key memory: \(keyring.lockedBytes) bytes, \(keyring.isLocked ? "locked" : "NOT locked") (RLIMIT_MEMLOCK here: \(limit); a reload needs about twice this)"
        )
    }

    private func quickStartConfiguration() throws -> Configuration {
        var servers: [Configuration.Server] = []
        for item in key {
            guard let equals = item.firstIndex(of: "=") else { throw ValidationError("--key '\(item)': expected SERVER_NAME=KEYFILE") }
            let name = String(item[..<equals])
            let path = String(item[item.index(after: equals)...])
            guard ServerName.isValid(name) else { throw ValidationError("--key '\(item)': '\(name)' is not a valid Matrix server name") }
            guard !path.isEmpty else { throw ValidationError("--key '\(item)': no key file") }
            if let index = servers.firstIndex(where: { $0.name == name }) {
                servers[index].keyFiles.append(path)
            } else {
                servers.append(Configuration.Server(name: name, keyFiles: [path]))
            }
        }
        var operations = AccessRule.defaultOperations
        for name in allow {
            guard let op = Opcode(name: name) else {
                throw ValidationError("--allow '\(name)': unknown operation; known: \(Opcode.allCases.map(\.name).joined(separator: ", "))")
            }
            operations.insert(op)
        }
        guard let policy = MemoryLockPolicy(rawValue: memoryLock) else { throw ValidationError("--memory-lock: expected require or warn") }
        return Configuration(
            // Without --socket (socket activation) the listener takes the one inherited socket.
            listeners: [Configuration.Listener(name: "sigild", path: socket, mode: 0o600)],
            servers: servers,
            access: [AccessRule(uid: SigilServer.currentUID, operations: operations)],
            memoryLock: policy, logLevel: logLevel ?? "info", workers: workers)
    }
}
