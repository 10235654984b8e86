import Foundation
import SigilPosix
import Synchronization

/// The repository's root, for the units in systemd/, docs/ and scripts/.
enum Repository {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }
}

/// Finds a program on PATH (and in the usual system directories, which a test runner's PATH
/// may lack); nil when it is not installed, so a test can skip with a reason.
func findProgram(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let directories = path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    for directory in directories {
        let candidate = directory + "/" + name
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
func waitUntil(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// A stand-in for systemd's notify socket: a bound SOCK_DGRAM Unix socket that records every
/// datagram sigild sends (`READY=1`, `STATUS=…`, `WATCHDOG=1`, …), in arrival order.
final class NotifyReceiver: Sendable {
    /// What goes in `NOTIFY_SOCKET`: a path, or `@name` for the abstract namespace.
    let address: String
    private let fd: Int32
    private let received = Mutex<[String]>([])
    private let stopped = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)

    init(address: String) throws {
        self.address = address
        fd = try Posix.socket(type: Int32(SOCK_DGRAM.rawValue))
        do {
            try Posix.bind(fd, path: address)
            try Posix.setReceiveTimeout(fd, seconds: 0.05)
        } catch {
            Posix.close(fd)
            throw error
        }
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !stopped.load(ordering: .acquiring) {
                let count = (try? buffer.withUnsafeMutableBytes { try Posix.recv(fd, into: $0) }) ?? 0
                if count > 0 {
                    let message = String(decoding: buffer[0..<count], as: UTF8.self)
                    received.withLock { $0.append(message) }
                }
            }
            finished.store(true, ordering: .releasing)
        }
    }

    /// Every datagram so far, each as its text (`KEY=VALUE` lines).
    var messages: [String] { received.withLock { $0 } }

    /// Waits until the datagrams so far satisfy `condition`.
    func wait(timeout: Double = 10, until condition: ([String]) -> Bool) -> Bool {
        waitUntil(timeout: timeout) { condition(messages) }
    }

    func close() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = waitUntil(timeout: 2) { finished.load(ordering: .acquiring) }
        Posix.close(fd)
        if !address.hasPrefix("@") { try? Posix.unlink(address) }
    }

    deinit { close() }
}

extension String {
    /// The `KEY=VALUE` lines of a notify datagram, as a dictionary.
    var notifyFields: [String: String] {
        var fields: [String: String] = [:]
        for line in split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return fields
    }
}

/// sigild started by `systemd-socket-activate`, the way systemd starts it from socket units.
///
/// Spawned with posix_spawn and reaped with waitpid, not with Foundation's `Process`:
/// systemd-socket-activate closes every descriptor it inherits, among them the socket through
/// which Foundation learns that a child has exited. Foundation then blocks its single monitor
/// thread in waitpid() on this child until the daemon exits, and meanwhile no other `Process`
/// in the whole test run is ever seen to finish (a `run(...)` in any test hangs).
final class ActivatedDaemon: @unchecked Sendable {
    static let socketActivate = findProgram("systemd-socket-activate")

    let directory: TemporaryDirectory
    let logPath: String
    let configPath: String
    /// systemd-socket-activate's pid; it execs sigild (through `wrapper`) in place.
    let pid: pid_t
    private let state = Mutex<Int32?>(nil)

    /// - Parameters:
    ///   - sockets: paths and `FileDescriptorName=`s, in LISTEN_FDS order.
    ///   - environment: what the service gets (systemd-socket-activate passes nothing else).
    ///   - wrapper: programs that exec sigild in place (strace -D, prlimit, setpriv).
    ///   - waitUntilReady: connect to the first socket (which makes systemd-socket-activate
    ///     start sigild) and wait until sigild logs that it is ready.
    init(
        config: String, files: [String: String] = [:], sockets: [(path: String, name: String)], environment: [String: String] = [:],
        wrapper: [String] = [], directory: TemporaryDirectory = TemporaryDirectory(), waitUntilReady: Bool = true
    ) throws {
        guard let activate = Self.socketActivate else { throw FixtureError("systemd-socket-activate is not installed") }
        self.directory = directory
        logPath = directory.file("sigild.log")
        for (name, contents) in files { directory.write(name, contents) }
        configPath = directory.write("sigild.yaml", config.replacingOccurrences(of: "{dir}", with: directory.path), mode: 0o644)
        var arguments = [activate]
        for socket in sockets { arguments += ["-l", socket.path] }
        arguments.append("--fdname=" + sockets.map(\.name).joined(separator: ":"))
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) { arguments += ["-E", "\(name)=\(value)"] }
        arguments += wrapper + [Binaries.path("sigild"), "--config", configPath]

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, activate, &actions, nil, argv, envp)
        guard rc == 0 else { throw FixtureError("posix_spawn \(activate): \(String(cString: strerror(rc)))") }
        pid = child

        guard waitUntilReady, let first = sockets.first else { return }
        guard waitUntil(timeout: 10, { FileManager.default.fileExists(atPath: first.path) || !isRunning }) else {
            throw FixtureError("systemd-socket-activate did not bind \(first.path):\n\(log)")
        }
        // systemd-socket-activate starts sigild on the first connection.
        if let probe = try? Posix.socket(type: Int32(SOCK_STREAM.rawValue)) {
            try? Posix.connect(probe, path: first.path)
            Posix.close(probe)
        }
        guard waitUntil(timeout: 30, { log.contains("sigild: ready in") || !isRunning }), isRunning else {
            throw FixtureError("sigild did not start under systemd-socket-activate:\n\(log)")
        }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The exit status once it has exited (128 + n for a signal), nil while running.
    var exitStatus: Int32? {
        state.withLock { status in
            if status == nil {
                var raw: Int32 = 0
                if waitpid(pid, &raw, WNOHANG) == pid {
                    let signal = raw & 0x7f
                    status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
                }
            }
            return status
        }
    }

    var isRunning: Bool { exitStatus == nil }

    func signal(_ signal: Int32) { if isRunning { kill(pid, signal) } }

    func waitForLog(_ text: String, timeout: Double = 10) -> Bool {
        waitUntil(timeout: timeout) { log.contains(text) }
    }

    /// SIGTERM, then waits (SIGKILL after `timeout`); returns the exit status.
    @discardableResult
    func stop(timeout: Double = 20) -> Int32 {
        if let status = exitStatus { return status }
        kill(pid, SIGTERM)
        if !waitUntil(timeout: timeout, { !isRunning }) {
            kill(pid, SIGKILL)
            _ = waitUntil(timeout: 5) { !isRunning }
        }
        return exitStatus ?? -1
    }

    deinit { stop() }
}
