import SigilPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Where audit records go.
struct AuditSink {
    enum Kind {
        case file(Int32)
        /// The journal's socket path, and our datagram socket.
        case journal(String, Int32)
    }

    let kind: Kind

    init(_ destination: Configuration.Audit.Destination) throws(PosixError) {
        switch destination {
        case .file(let path): kind = .file(try Self.openFile(path))
        case .journal(let socket): kind = .journal(socket, try Posix.socket(type: Int32(SOCK_DGRAM.rawValue)))
        }
    }

    /// Opens the audit file for appending, refusing one that someone other than root or sigild's
    /// user could change or swap: the directory is opened and checked first and the file opened
    /// relative to it (no path walk to race); a symlink is not followed; O_NONBLOCK so that a
    /// FIFO planted there cannot hang the writer in open(); then the file itself must be a
    /// regular file of root or ours that no one else may write.
    static func openFile(_ path: String) throws(PosixError) -> Int32 {
        let slash = path.lastIndex(of: "/")!
        let directory = slash == path.startIndex ? "/" : String(path[..<slash])
        let name = String(path[path.index(after: slash)...])
        let directoryFD = try Posix.open(directory, flags: O_RDONLY | O_DIRECTORY | O_NONBLOCK)
        defer { Posix.close(directoryFD) }
        try Posix.checkTrustedDirectory(try Posix.fstat(directoryFD), directory)
        // Named before opening: O_NOFOLLOW and O_NONBLOCK would only say ELOOP or ENXIO.
        if let existing = try Posix.statAt(directoryFD, name, describing: path), !existing.isRegularFile {
            throw PosixError("\(path): \(existing.kind), not a regular file", errno: EINVAL)
        }
        let fd = try Posix.openAt(
            directoryFD, name, flags: O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, mode: 0o600, describing: path)
        do throws(PosixError) {
            let status = try Posix.fstat(fd)
            guard status.isRegularFile else { throw PosixError("\(path): \(status.kind), not a regular file", errno: EINVAL) }
            try Posix.checkTrusted(status, path)
            if status.permissions & 0o020 != 0 {
                throw PosixError(
                    "\(path): writable by group \(status.group) (mode \(String(status.permissions, radix: 8))); chmod g-w it", errno: EPERM)
            }
        } catch {
            Posix.close(fd)
            throw error
        }
        return fd
    }

    func write(_ bytes: [UInt8]) -> Bool {
        guard case .file(let fd) = kind, !bytes.isEmpty else { return true }
        return (try? bytes.withUnsafeBytes { try Posix.writeAll(fd, $0) }) != nil
    }

    func sendJournalEntry(_ entry: [UInt8]) -> Bool {
        guard case .journal(let socket, let fd) = kind else { return false }
        return (try? Posix.sendDatagram(entry, to: socket, through: fd)) != nil
    }

    func close() {
        switch kind {
        case .file(let fd), .journal(_, let fd): Posix.close(fd)
        }
    }
}

extension Configuration.Audit.Destination: CustomStringConvertible {
    public var description: String {
        switch self {
        case .file(let path): return path
        case .journal(let socket): return "the journal (\(socket))"
        }
    }
}
