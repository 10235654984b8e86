internal import CLibUV
import Logging
import SigilPosix

#if canImport(Glibc)
import Glibc
#endif

/// A listening Unix socket: inherited from systemd, given as a descriptor, or bound to a path
/// by us (and then removed when we stop).
final class Listener {
    let name: String
    let fd: Int32
    let boundPath: String?
    let origin: String
    var poll: UnsafeMutablePointer<uv_poll_t>?
    /// Called on the main loop when a connection is waiting.
    var onReadable: ((Listener, Int32) -> Void)?

    private init(name: String, fd: Int32, boundPath: String?, origin: String) {
        self.name = name
        self.fd = fd
        self.boundPath = boundPath
        self.origin = origin
    }

    /// Opens every configured listener, taking inherited sockets by name first.
    static func open(_ configuration: Configuration, inherited: [SystemdActivation.InheritedSocket], logger: Logger) throws(LoadError) -> [Listener] {
        var listeners: [Listener] = []
        var unclaimed = inherited
        for listener in configuration.listeners {
            if let index = unclaimed.firstIndex(where: { $0.name == listener.name })
                ?? (configuration.listeners.count == 1 && unclaimed.count == 1 ? 0 : nil)
            {
                let socket = unclaimed.remove(at: index)
                try checkStream(socket.fd, name: listener.name)
                listeners.append(Listener(name: listener.name, fd: socket.fd, boundPath: nil, origin: "systemd fd \(socket.fd) (\(socket.name))"))
            } else if let fd = listener.fd {
                try checkStream(fd, name: listener.name)
                do {
                    try Posix.setCloseOnExec(fd)
                } catch {
                    throw LoadError("listener \(listener.name): fd \(fd): \(error)")
                }
                listeners.append(Listener(name: listener.name, fd: fd, boundPath: nil, origin: "fd \(fd)"))
            } else if let path = listener.path {
                listeners.append(try bind(path: path, mode: listener.mode, name: listener.name, logger: logger))
            } else if !inherited.isEmpty {
                throw LoadError("listener \(listener.name): systemd passed no socket named '\(listener.name)' (FileDescriptorName=) and no path is configured")
            } else {
                throw LoadError("listener \(listener.name): no path, no fd, and not started by systemd socket activation")
            }
        }
        for socket in unclaimed {
            // A socket systemd passes that no listener names still serves, under the top-level rules.
            try checkStream(socket.fd, name: socket.name)
            logger.notice("systemd passed socket '\(socket.name)' (fd \(socket.fd)), which no listener names; it uses the top-level access rules")
            listeners.append(Listener(name: socket.name, fd: socket.fd, boundPath: nil, origin: "systemd fd \(socket.fd)"))
        }
        for listener in listeners {
            do {
                try Posix.setNonBlocking(listener.fd)
            } catch {
                throw LoadError("listener \(listener.name): \(error)")
            }
        }
        return listeners
    }

    private static func checkStream(_ fd: Int32, name: String) throws(LoadError) {
        do {
            guard try Posix.socketType(fd) == Int32(SOCK_STREAM.rawValue) else {
                throw LoadError("listener \(name): fd \(fd) is not a stream socket (use ListenStream=)")
            }
        } catch let error as LoadError {
            throw error
        } catch {
            throw LoadError("listener \(name): fd \(fd) is not a socket: \(error)")
        }
    }

    private static func bind(path: String, mode: UInt32, name: String, logger: Logger) throws(LoadError) -> Listener {
        let abstract = path.hasPrefix("@")
        if !abstract, let isSocket = Posix.isSocket(path) {
            guard isSocket else { throw LoadError("listener \(name): \(path) exists and is not a socket; refusing to replace it") }
            // A socket file left by a daemon that died: remove it, unless something answers on it.
            if let probe = try? Posix.socket(type: Int32(SOCK_STREAM.rawValue)) {
                defer { Posix.close(probe) }
                if (try? Posix.connect(probe, path: path)) != nil {
                    throw LoadError("listener \(name): \(path) is in use by another process (is sigild already running?)")
                }
            }
            logger.info("removing stale socket \(path)")
            try? Posix.unlink(path)
        }
        do {
            let fd = try Posix.socket(type: Int32(SOCK_STREAM.rawValue))
            do {
                // Bind under a tight umask so the socket is never briefly open to others, then set the mode.
                let old = Posix.umask(0o177)
                defer { Posix.umask(old) }
                try Posix.bind(fd, path: path)
                if !abstract { try Posix.chmod(path, mode) }
                try Posix.listen(fd, backlog: 511)
            } catch {
                Posix.close(fd)
                throw error
            }
            return Listener(name: name, fd: fd, boundPath: abstract ? nil : path, origin: path)
        } catch {
            throw LoadError("listener \(name): \(error)")
        }
    }

    /// Stops listening: the poll handle is closed by the caller; here the socket goes.
    func close() {
        Posix.close(fd)
        if let boundPath { try? Posix.unlink(boundPath) }
    }
}
