public import SigilCore

#if canImport(Glibc)
    import Glibc
#endif

/// How to treat a key file that other users can read or write.
public enum PermissionPolicy: Sendable {
    /// The daemon: refuse it.
    case refuse
    /// The tools: load it, and say how to fix it.
    case warn
}

/// Something about a key file that does not stop it loading. Typed, so callers choose what to
/// show (the daemon says once that memory is not locked, rather than once per file).
public enum KeyFileWarning: Sendable, Equatable, CustomStringConvertible {
    /// Other users can read or write it (the tools load it anyway; the daemon refuses it).
    case unsafePermissions(KeyFileError)
    /// The guarded copy could not be locked into RAM.
    case notLocked(path: String)
    /// A key ID with characters outside the spec's [a-zA-Z0-9_].
    case nonCompliantKeyID(path: String, line: Int, id: KeyID)

    public var description: String {
        switch self {
        case .unsafePermissions(let problem): return "warning: \(problem.description)"
        case .notLocked(let path): return "warning: \(path): key memory could not be locked into RAM (RLIMIT_MEMLOCK)"
        case .nonCompliantKeyID(let path, let line, let id):
            return "warning: \(path):\(line): key ID \(id) uses characters outside [a-zA-Z0-9_]; some servers may reject it"
        }
    }
}

/// Reading and writing key files, with the bytes going straight between the file and guarded
/// memory: no Swift array ever holds them.
public enum KeyFileIO {
    /// Reads and parses a key file.
    ///
    /// - Returns: the file, and warnings for the caller to print (never key material).
    /// `scratch`: a guarded buffer to read into when the file fits (the file's `KeyFile` is then
    /// valid only until the scratch is used again: load its keys first).
    public static func read(
        _ path: String, permissions: PermissionPolicy, lockPolicy: MemoryLockPolicy, scratch: GuardedBuffer? = nil
    ) throws(KeyFileError) -> (file: KeyFile, warnings: [KeyFileWarning]) {
        let fd: Int32
        do {
            // O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer came
            // (a hung tool, or a daemon stuck in a reload); it is then refused as not a regular
            // file. The flag has no effect on reading regular files.
            fd = try Posix.open(path, flags: O_RDONLY | O_NOCTTY | O_NONBLOCK)
        } catch {
            throw KeyFileError(path: path, .unreadable("cannot open: \(String(cString: strerror(error.errno)))"))
        }
        defer { Posix.close(fd) }
        let status: FileStatus
        do {
            status = try Posix.fstat(fd)
        } catch {
            throw KeyFileError(path: path, .unreadable(error.description))
        }
        guard status.isRegularFile else { throw KeyFileError(path: path, .unreadable("not a regular file")) }
        if permissions == .refuse && status.owner != 0 && status.owner != Posix.effectiveUID {
            throw KeyFileError(path: path, .untrustedOwner(uid: status.owner, expected: Posix.effectiveUID))
        }
        var warnings: [KeyFileWarning] = []
        if status.permissions & 0o077 != 0 {
            let problem = KeyFileError(path: path, .unsafePermissions(mode: status.permissions))
            switch permissions {
            case .refuse: throw problem
            case .warn: warnings.append(.unsafePermissions(problem))
            }
        }
        guard status.size <= KeyFile.maxSize else { throw KeyFileError(path: path, .tooLarge(limit: KeyFile.maxSize)) }
        let buffer: GuardedBuffer
        if let scratch, scratch.count >= status.size {
            // Reading thousands of key files, one guarded allocation (and its mmap, mprotect and
            // mlock) for all of them, wiped between files.
            buffer = scratch
            buffer.wipe()
        } else {
            do {
                buffer = try GuardedBuffer(count: status.size, lockPolicy: lockPolicy)
            } catch {
                throw KeyFileError(path: path, .unreadable(error.description))
            }
        }
        if !buffer.isLocked { warnings.append(.notLocked(path: path)) }
        let filled: Result<Int, PosixError> = buffer.withUnsafeMutableBytes { whole in
            Result { () throws(PosixError) -> Int in
                var offset = 0
                while offset < status.size {
                    let n = try Posix.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: whole[offset..<status.size]))
                    if n == 0 { break }
                    offset += n
                }
                return offset
            }
        }
        switch filled {
        case .failure(let error): throw KeyFileError(path: path, .unreadable(error.description))
        case .success(let count) where count != status.size:
            throw KeyFileError(path: path, .unreadable("the file changed size while being read"))
        case .success: break
        }
        let file = try KeyFile(contents: buffer, length: status.size, path: path)
        for entry in file.entries where !entry.id.isSpecCompliant {
            warnings.append(.nonCompliantKeyID(path: path, line: entry.line, id: entry.id))
        }
        return (file, warnings)
    }

    /// Writes guarded bytes to `path` with mode 0600, atomically: a temporary file in the same
    /// directory, fsync, rename. A crash never leaves a half-written key. `durable` false skips
    /// the fsyncs (throwaway keys for benchmarks, thousands at a time).
    public static func write(_ contents: GuardedBuffer, to path: String, durable: Bool = true) throws(PosixError) {
        let temporary = path + ".tmp-\(Posix.pid)-\(UInt32.random(in: 0...UInt32.max))"
        let fd = try Posix.open(temporary, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
        var renamed = false
        defer {
            if !renamed { try? Posix.unlink(temporary) }
        }
        do {
            defer { Posix.close(fd) }
            // O_CREAT's mode is filtered by the umask, which can only remove bits; set it exactly.
            try Posix.fchmod(fd, 0o600)
            let written: Result<Void, PosixError> = contents.withUnsafeBytes { bytes in
                Result { () throws(PosixError) in try Posix.writeAll(fd, bytes) }
            }
            try written.get()
            if durable { try Posix.fsync(fd) }
        }
        try Posix.rename(temporary, path)
        renamed = true
        guard durable else { return }
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        if let dirFD = try? Posix.open(directory.isEmpty ? "/" : directory, flags: O_RDONLY | O_DIRECTORY) {
            try? Posix.fsync(dirFD)
            Posix.close(dirFD)
        }
    }
}
