import Foundation
import SigilClient
import SigilCore
import SigilPosix

/// A real sigild process on a real socket in a scratch directory. It counts as started when it
/// says READY=1 on its notify socket (a datagram socket the fixture binds, as systemd would):
/// by then its keys are loaded, its sockets open and its event loops running.
public final class DaemonFixture: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let socketPath: String
    public let logPath: String
    public let notify: NotifyReceiver
    public let child: ChildProcess
    private var stopped = false

    /// Starts sigild with a YAML configuration. `{dir}` in the text is replaced by the scratch
    /// directory; the socket is `{dir}/s.sock`. `prefix`: programs that exec sigild (setpriv,
    /// prlimit). `waitForReady` false: return once started (for daemons expected to fail).
    /// `notify`: a receiver the test watches itself (otherwise the fixture binds its own).
    public init(
        config: String, files: [String: String] = [:], arguments extra: [String] = [], prefix: [String] = [],
        environment: [String: String] = [:], directory: TemporaryDirectory = TemporaryDirectory(), notify: NotifyReceiver? = nil,
        waitForReady: Bool = true, readyTimeout: Double = 30
    ) throws {
        self.directory = directory
        socketPath = directory.file("s.sock")
        logPath = directory.file("sigild.log")
        for (name, contents) in files { directory.write(name, contents) }
        let configPath = directory.write("sigild.yaml", config.replacingOccurrences(of: "{dir}", with: directory.path), mode: 0o644)
        let receiver = try notify ?? NotifyReceiver(address: directory.file("notify-\(NotifyReceiver.nextNumber()).sock"))
        self.notify = receiver
        // A daemon started under another user must be able to send to the notify socket.
        if !receiver.address.hasPrefix("@") {
            chmod(receiver.address, 0o777)
            Self.allowTraversal(directory.path)
        }
        let command = [Binaries.path("sigild"), "--config", configPath] + extra
        let program = prefix.first ?? command[0]
        let arguments = Array((prefix + command).dropFirst())
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        child = try ChildProcess(
            program, arguments, environment: environment.merging(["NOTIFY_SOCKET": receiver.address]) { _, fixture in fixture },
            stdout: .file(logPath),
            stderr: .file(logPath))
        if waitForReady { try waitUntilReady(timeout: readyTimeout) }
    }

    /// Lets other users reach sockets in a scratch directory (mkdtemp makes it 0700) without
    /// letting them list or write it.
    static func allowTraversal(_ path: String) {
        var status = stat()
        if stat(path, &status) == 0 && status.st_mode & 0o011 != 0o011 { chmod(path, (status.st_mode & 0o7777) | 0o011) }
    }

    /// The quick-start form: one server `domain` with the spec key.
    public static func quickStart(key: String = TestKeys.specSynapseFile, extraConfig: String = "", limits: String = "") throws
        -> DaemonFixture
    {
        try DaemonFixture(
            config: """
                listen:
                  - name: main
                    path: {dir}/s.sock
                    mode: "0666"
                servers:
                  domain:
                    keys: [{dir}/spec.key]
                \(extraConfig)
                limits:
                  frame_timeout: 2s
                \(limits)
                log_level: debug
                """,
            files: ["spec.key": key])
    }

    /// Waits for READY=1 (or for the daemon to exit, which throws with its log).
    public func waitUntilReady(timeout: Double = 30) throws {
        let ready = waitUntil(timeout: timeout) { notify.messages.contains { $0.notifyFields["READY"] == "1" } || !child.isRunning }
        guard child.isRunning else { throw FixtureError("sigild exited with status \(child.status ?? -1):\n\(log)") }
        guard ready else { throw FixtureError("sigild did not say READY=1 within \(timeout) s:\n\(log)") }
    }

    public var pid: Int32 { child.pid }
    public var isRunning: Bool { child.isRunning }
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    public func client(timeout: Double? = 30) -> SigilClient { SigilClient(socketPath: socketPath, timeout: timeout) }

    public func signal(_ signal: Int32) { child.signal(signal) }

    /// Waits for the log to contain `text`.
    public func waitForLog(_ text: String, timeout: Double = 10) -> Bool {
        waitUntil(timeout: timeout) { log.contains(text) }
    }

    /// Waits for the n-th READY=1 (a reload ends with one), counting from the first.
    public func waitForReady(count: Int, timeout: Double = 30) -> Bool {
        waitUntil(timeout: timeout) { notify.messages.filter { $0.notifyFields["READY"] == "1" }.count >= count }
    }

    /// The exit status, waiting up to `timeout`; nil if it still runs.
    public func waitForExit(timeout: Double) -> Int32? {
        child.wait(timeout: timeout)
    }

    /// SIGTERM, then waits; returns the exit status (-1 if it had to be killed).
    @discardableResult
    public func stop(timeout: Double = 20) -> Int32 {
        guard !stopped else { return child.status ?? -1 }
        stopped = true
        child.signal(SIGTERM)
        if let status = child.wait(timeout: timeout) { return status }
        child.signal(SIGKILL)
        child.wait(timeout: 10)
        return -1
    }

    deinit {
        stop()
        notify.close()
    }
}
