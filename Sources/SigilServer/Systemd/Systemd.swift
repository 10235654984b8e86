import SigilPosix

/// systemd's socket activation and notify protocols, by hand (each is a few lines; libsystemd
/// has no static library on Debian and would be one more thing to trust).
public enum SystemdActivation {
    public struct InheritedSocket: Sendable, Equatable {
        public let fd: Int32
        /// From `LISTEN_FDNAMES` (`FileDescriptorName=`), or "unknown".
        public let name: String
    }

    /// The first inherited descriptor.
    public static let firstDescriptor: Int32 = 3

    /// Takes the sockets passed by systemd (`sd_listen_fds(1)`): only if `LISTEN_PID` is this
    /// process; marks them close-on-exec; unsets the variables so children do not see them.
    /// Call before any thread starts (getenv and unsetenv are not thread-safe).
    public static func takeListenSockets() throws(PosixError) -> [InheritedSocket] {
        defer {
            Posix.unsetEnvironment("LISTEN_PID")
            Posix.unsetEnvironment("LISTEN_FDS")
            Posix.unsetEnvironment("LISTEN_FDNAMES")
        }
        guard let pidText = Posix.environment("LISTEN_PID"), let pid = Int32(pidText), pid == Posix.pid else { return [] }
        guard let countText = Posix.environment("LISTEN_FDS"), let count = Int32(countText), count > 0 else { return [] }
        let names = Posix.environment("LISTEN_FDNAMES")?.split(separator: ":", omittingEmptySubsequences: false).map(String.init) ?? []
        var sockets: [InheritedSocket] = []
        for offset in 0..<count {
            let fd = firstDescriptor + offset
            try Posix.setCloseOnExec(fd)
            let name = Int(offset) < names.count && !names[Int(offset)].isEmpty ? names[Int(offset)] : "unknown"
            sockets.append(InheritedSocket(fd: fd, name: name))
        }
        return sockets
    }
}

/// Sends `sd_notify` messages: one datagram to `$NOTIFY_SOCKET` (a path, or `@name` in the
/// abstract namespace). Without `NOTIFY_SOCKET` every call does nothing.
public struct SystemdNotifier: Sendable {
    public let socketPath: String?
    /// Half of `WATCHDOG_USEC`, when systemd asked this process for keep-alives.
    public let watchdogInterval: UInt64?

    public init(environment: (String) -> String? = Posix.environment, pid: Int32 = Posix.pid) {
        let path = environment("NOTIFY_SOCKET").flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        var interval: UInt64?
        if let usecText = environment("WATCHDOG_USEC"), let usec = UInt64(usecText), usec > 0 {
            let forUs = environment("WATCHDOG_PID").map { Int32($0) == pid } ?? true
            if forUs { interval = usec / 2 }
        }
        watchdogInterval = interval
    }

    /// Sends `KEY=VALUE` lines. Errors are returned, not thrown: notification is best effort.
    @discardableResult
    public func notify(_ fields: [String]) -> PosixError? {
        guard let socketPath else { return nil }
        do {
            try Posix.sendDatagram(Array(fields.joined(separator: "\n").utf8), to: socketPath)
            return nil
        } catch {
            return error
        }
    }

    public func ready(status: String) { notify(["READY=1", "STATUS=\(status)"]) }
    public func reloading() { notify(["RELOADING=1", "MONOTONIC_USEC=\(Posix.monotonicNanoseconds() / 1000)"]) }
    public func stopping() { notify(["STOPPING=1"]) }
    public func status(_ line: String) { notify(["STATUS=\(line)"]) }
    public func watchdog() { notify(["WATCHDOG=1"]) }
}
