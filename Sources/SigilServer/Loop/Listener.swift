internal import CLibUV
import Logging
import SigilPosix

#if canImport(Glibc)
    import Glibc
#endif

/// A listening Unix socket: inherited from systemd, given as a descriptor, or bound to a path
/// by us (and then removed when we stop).
final class Listener {
    let id: ListenerID
    let fd: Int32
    let boundPath: String?
    let origin: String
    var poll: UnsafeMutablePointer<uv_poll_t>?

    var name: String { id.name }

    private init(id: ListenerID, fd: Int32, boundPath: String?, origin: String) {
        self.id = id
        self.fd = fd
        self.boundPath = boundPath
        self.origin = origin
    }

    /// Opens every configured listener, taking inherited sockets by name first. A socket systemd
    /// passes that no listener names still serves, under the top-level rules.
    static func open(_ configuration: Configuration, inherited: [SystemdActivation.InheritedSocket], logger: Logger) throws(LoadError)
        -> [Listener]
    {
        var listeners: [Listener] = []
        var unclaimed = inherited
        func next(_ name: String) -> ListenerID { ListenerID(index: listeners.count, name: name) }
        for listener in configuration.listeners {
            if let index = unclaimed.firstIndex(where: { $0.name == listener.name })
                ?? (configuration.listeners.count == 1 && unclaimed.count == 1 ? 0 : nil)
            {
                let socket = unclaimed.remove(at: index)
                try checkStream(socket.fd, name: listener.name)
                listeners.append(
                    Listener(id: next(listener.name), fd: socket.fd, boundPath: nil, origin: "systemd fd \(socket.fd) (\(socket.name))"))
            } else if let fd = listener.fd {
                try checkStream(fd, name: listener.name)
                do {
                    try Posix.setCloseOnExec(fd)
                } catch {
                    throw LoadError("listener \(listener.name): fd \(fd): \(error)")
                }
                listeners.append(Listener(id: next(listener.name), fd: fd, boundPath: nil, origin: "fd \(fd)"))
            } else if let path = listener.path {
                listeners.append(try bind(listener, path: path, id: next(listener.name), logger: logger))
            } else if !inherited.isEmpty {
                throw LoadError(
                    "listener \(listener.name): systemd passed no socket named '\(listener.name)' (FileDescriptorName=) and no path is configured"
                )
            } else {
                throw LoadError("listener \(listener.name): no path, no fd, and not started by systemd socket activation")
            }
        }
        for socket in unclaimed {
            try checkStream(socket.fd, name: socket.name)
            logger.notice(
                "systemd passed socket '\(socket.name)' (fd \(socket.fd)), which no listener names; it uses the top-level access rules")
            listeners.append(Listener(id: next(socket.name), fd: socket.fd, boundPath: nil, origin: "systemd fd \(socket.fd)"))
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

    /// Binds a path with its mode set by the umask around `bind` (the socket is never open to
    /// others, even briefly, and no path-based chmod follows a symlink someone swapped in), in a
    /// directory no one else can use to swap the node, then sets owner and group through a
    /// descriptor of the node itself.
    private static func bind(_ listener: Configuration.Listener, path: String, id: ListenerID, logger: Logger) throws(LoadError) -> Listener
    {
        let name = listener.name
        let abstract = path.hasPrefix("@")
        if abstract {
            logger.warning(
                "listener \(name): \(path) is an abstract socket (abstract: true): any local process can connect (the access rules still apply) and whoever binds the name first owns it"
            )
        } else {
            try checkDirectory(of: path, listener: name)
            if let isSocket = Posix.isSocket(path) {
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
        }
        do {
            let fd = try Posix.socket(type: Int32(SOCK_STREAM.rawValue))
            do {
                // The node is created with 0777 & ~umask: set the umask to give exactly `mode`.
                // (The umask is process-wide: listeners are bound before any other thread starts.)
                let old = Posix.umask(0o777 & ~listener.mode)
                defer { Posix.umask(old) }
                try Posix.bind(fd, path: path)
                if !abstract {
                    let mode = try Posix.chownSocketNode(path, owner: listener.owner, group: listener.group)
                    guard mode & 0o777 == listener.mode else {
                        throw PosixError(
                            "\(path): created with mode \(String(mode, radix: 8)), not \(String(listener.mode, radix: 8))", errno: EPERM)
                    }
                }
                try Posix.listen(fd, backlog: 511)
            } catch {
                Posix.close(fd)
                if !abstract { try? Posix.unlink(path) }
                throw error
            }
            return Listener(id: id, fd: fd, boundPath: abstract ? nil : path, origin: path)
        } catch {
            throw LoadError("listener \(name): \(error)")
        }
    }

    /// Refuses a socket directory in which another user could replace the socket node: one that
    /// is not a directory, is owned by someone other than root or us, or is writable by others
    /// without the sticky bit (with it, others cannot rename or remove our node).
    private static func checkDirectory(of path: String, listener: String) throws(LoadError) {
        let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let status: FileStatus
        do {
            status = try Posix.stat(directory)
        } catch {
            throw LoadError("listener \(listener): socket directory \(directory): \(error)")
        }
        guard status.isDirectory else { throw LoadError("listener \(listener): \(directory) is not a directory") }
        guard status.owner == 0 || status.owner == Posix.effectiveUID else {
            throw LoadError(
                "listener \(listener): socket directory \(directory) is owned by uid \(status.owner), not by root or by sigild's user")
        }
        let writableByOthers =
            status.permissions & 0o002 != 0
            || (status.permissions & 0o020 != 0 && status.group != 0 && status.group != Posix.effectiveGID)
        if writableByOthers && !status.isSticky {
            throw LoadError(
                "listener \(listener): socket directory \(directory) is writable by other users without the sticky bit, so they could swap the socket for something else; use a directory only sigild's user can write (such as /run/sigil)"
            )
        }
    }

    /// Stops listening: the poll handle is closed by the caller; here the socket goes.
    func close() {
        Posix.close(fd)
        if let boundPath { try? Posix.unlink(boundPath) }
    }
}
