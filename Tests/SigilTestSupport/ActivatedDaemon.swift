import Foundation
import SigilPosix

/// sigild started by `systemd-socket-activate`, the way systemd starts it from socket units: the
/// sockets are bound by systemd-socket-activate and named with `LISTEN_FDNAMES` exactly as
/// `FileDescriptorName=` does, and sigild is exec'd on the first connection. It counts as started
/// when it says READY=1 on the notify socket the fixture passes in.
public final class ActivatedDaemon: @unchecked Sendable {
    public static let socketActivate = findProgram("systemd-socket-activate")

    public let directory: TemporaryDirectory
    public let logPath: String
    public let configPath: String
    public let notify: NotifyReceiver
    /// systemd-socket-activate, which execs sigild (through `wrapper`) in place.
    public let child: ChildProcess

    /// - Parameters:
    ///   - sockets: paths and `FileDescriptorName=`s, in LISTEN_FDS order.
    ///   - environment: what the service gets (systemd-socket-activate passes nothing else).
    ///   - wrapper: programs that exec sigild in place (strace -D, prlimit, setpriv).
    ///   - arguments: sigild's arguments (default: `--config` with the written configuration).
    ///   - notify: a receiver the test watches itself (otherwise the fixture binds its own).
    ///   - waitUntilReady: connect to the socket at `probe` (which makes systemd-socket-activate
    ///     start sigild) and wait for READY=1.
    public init(
        config: String, files: [String: String] = [:], sockets: [(path: String, name: String)], environment: [String: String] = [:],
        wrapper: [String] = [], arguments: [String]? = nil, directory: TemporaryDirectory = TemporaryDirectory(),
        notify: NotifyReceiver? = nil,
        probe: Int = 0, waitUntilReady: Bool = true
    ) throws {
        guard let activate = Self.socketActivate else { throw FixtureError("systemd-socket-activate is not installed") }
        self.directory = directory
        logPath = directory.file("sigild.log")
        for (name, contents) in files { directory.write(name, contents) }
        configPath = directory.write("sigild.yaml", config.replacingOccurrences(of: "{dir}", with: directory.path), mode: 0o644)
        let receiver = try notify ?? NotifyReceiver(address: directory.file("notify-\(NotifyReceiver.nextNumber()).sock"))
        self.notify = receiver
        if !receiver.address.hasPrefix("@") { chmod(receiver.address, 0o777) }
        DaemonFixture.allowTraversal(directory.path)
        var command: [String] = []
        for socket in sockets { command += ["-l", socket.path] }
        command.append("--fdname=" + sockets.map(\.name).joined(separator: ":"))
        let serviceEnvironment = environment.merging(["NOTIFY_SOCKET": receiver.address]) { _, fixture in fixture }
        for (name, value) in serviceEnvironment.sorted(by: { $0.key < $1.key }) { command += ["-E", "\(name)=\(value)"] }
        command += wrapper + [Binaries.path("sigild")] + (arguments ?? ["--config", configPath])
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        child = try ChildProcess(activate, command, stdout: .file(logPath), stderr: .file(logPath))

        guard waitUntilReady, probe < sockets.count else { return }
        let first = sockets[probe]
        guard waitUntil(timeout: 10, { FileManager.default.fileExists(atPath: first.path) || !isRunning }) else {
            throw FixtureError("systemd-socket-activate did not bind \(first.path):\n\(log)")
        }
        // systemd-socket-activate starts sigild on the first connection (whether or not sigild
        // then accepts this caller does not matter here).
        triggerStart(first.path)
        guard waitUntil(timeout: 30, { receiver.messages.contains { $0.notifyFields["READY"] == "1" } || !isRunning }), isRunning else {
            throw FixtureError("sigild did not start under systemd-socket-activate:\n\(log)")
        }
    }

    /// Connects once to `path`, which makes systemd-socket-activate start sigild. (The path
    /// exists from bind(); until listen() a connection is refused: retry.)
    public func triggerStart(_ path: String) {
        _ = waitUntil(timeout: 10) {
            guard let probe = try? Posix.socket(type: Int32(SOCK_STREAM.rawValue)) else { return false }
            defer { Posix.close(probe) }
            return (try? Posix.connect(probe, path: path)) != nil || !isRunning
        }
    }

    public var pid: Int32 { child.pid }
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    public var exitStatus: Int32? { child.status }
    public var isRunning: Bool { child.isRunning }

    public func signal(_ signal: Int32) { child.signal(signal) }

    public func waitForLog(_ text: String, timeout: Double = 10) -> Bool {
        waitUntil(timeout: timeout) { log.contains(text) }
    }

    /// SIGTERM, then waits (SIGKILL after `timeout`); returns the exit status.
    @discardableResult
    public func stop(timeout: Double = 20) -> Int32 {
        if let status = exitStatus { return status }
        child.signal(SIGTERM)
        if child.wait(timeout: timeout) == nil {
            child.signal(SIGKILL)
            child.wait(timeout: 5)
        }
        return exitStatus ?? -1
    }

    deinit {
        stop()
        notify.close()
    }
}
