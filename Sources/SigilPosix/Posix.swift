// Every system call Sigil makes outside libuv goes through this file, so that EINTR handling,
// errno capture and the list of what the process can do to the system sit in one place.
// Wrappers are @inline(never) so no ARC traffic between the call and the errno read can clobber
// errno (the same reason swift-nio gives in its System.swift).

#if canImport(Glibc)
import Glibc
#endif
internal import CSigilLinux

/// A joinable thread (pthreads), for event loops that must be waited for on shutdown.
public final class PosixThread: Sendable {
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    private let handle: pthread_t

    public init(name: String, _ body: @escaping @Sendable () -> Void) throws(PosixError) {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            body.run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw PosixError("pthread_create", errno: rc)
        }
        handle = thread
        CSigilLinux_set_thread_name(thread, String(name.prefix(15)))
    }

    public func join() {
        pthread_join(handle, nil)
    }
}

/// A failed system call: which one, and errno.
public struct PosixError: Error, Equatable, Sendable, CustomStringConvertible {
    public let call: String
    public let errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

/// The file kinds and modes Sigil cares about.
public struct FileStatus: Sendable {
    public let size: Int
    /// Permission bits and file type, as `st_mode`.
    public let mode: UInt32
    public let owner: UInt32
    public let group: UInt32
    public var isRegularFile: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
    public var permissions: UInt32 { mode & 0o7777 }
    public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
    public var isSticky: Bool { mode & UInt32(S_ISVTX) != 0 }
}

/// Credentials of the process at the other end of a Unix socket.
public struct PeerCredentials: Sendable, Equatable {
    public let pid: Int32
    public let uid: UInt32
    /// The effective (primary) group.
    public let gid: UInt32
    /// Supplementary groups at connect time (empty where the kernel cannot say).
    public let groups: [UInt32]

    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// Whether the caller is in `group`, as its primary or a supplementary group.
    public func isMember(of group: UInt32) -> Bool { gid == group || groups.contains(group) }
}

public enum Posix {
    @inline(never)
    private static func retrying<T: BinaryInteger>(_ call: String, _ body: () -> T) throws(PosixError) -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = Glibc.errno
            if code == EINTR { continue }
            throw PosixError(call, errno: code)
        }
    }

    // MARK: Files

    @inline(never)
    public static func open(_ path: String, flags: Int32, mode: UInt32 = 0) throws(PosixError) -> Int32 {
        try retrying("open(\(path))") { Glibc.open(path, flags | O_CLOEXEC, mode_t(mode)) }
    }

    @inline(never)
    public static func close(_ fd: Int32) {
        // Linux closes the descriptor even when close returns EINTR: never retry.
        _ = Glibc.close(fd)
    }

    @inline(never)
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(PosixError) -> Int {
        try retrying("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Writes all of `buffer`, looping over short writes.
    @inline(never)
    public static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(PosixError) {
        var offset = 0
        while offset < buffer.count {
            offset += try retrying("write") { Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset) }
        }
    }

    @inline(never)
    public static func fstat(_ fd: Int32) throws(PosixError) -> FileStatus {
        var st = Glibc.stat()
        _ = try retrying("fstat") { Glibc.fstat(fd, &st) }
        return FileStatus(size: Int(st.st_size), mode: st.st_mode, owner: st.st_uid, group: st.st_gid)
    }

    @inline(never)
    public static func fchmod(_ fd: Int32, _ mode: UInt32) throws(PosixError) {
        _ = try retrying("fchmod") { Glibc.fchmod(fd, mode_t(mode)) }
    }

    @inline(never)
    public static func fsync(_ fd: Int32) throws(PosixError) {
        _ = try retrying("fsync") { Glibc.fsync(fd) }
    }

    @inline(never)
    public static func rename(_ from: String, _ to: String) throws(PosixError) {
        _ = try retrying("rename(\(from), \(to))") { Glibc.rename(from, to) }
    }

    @inline(never)
    public static func unlink(_ path: String) throws(PosixError) {
        _ = try retrying("unlink(\(path))") { Glibc.unlink(path) }
    }

    @inline(never)
    public static func chmod(_ path: String, _ mode: UInt32) throws(PosixError) {
        _ = try retrying("chmod(\(path))") { Glibc.chmod(path, mode_t(mode)) }
    }

    // MARK: Sockets

    @inline(never)
    public static func socket(type: Int32) throws(PosixError) -> Int32 {
        try retrying("socket") { Glibc.socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0) }
    }

    /// Fills a `sockaddr_un`; a leading `@` selects the abstract namespace. Refuses paths that
    /// do not fit instead of truncating them (libuv 1.44's `uv_pipe_bind` truncates silently).
    public static func withUnixAddress<R>(
        _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(PosixError) -> R
    ) throws(PosixError) -> R {
        var storage = sockaddr_storage()
        let length = path.utf8.count
        let result: Int32 = withUnsafeMutableBytes(of: &storage) { raw in
            path.withCString { CSigilLinux_sockaddr_un(raw.baseAddress, raw.count, $0, length) }
        }
        guard result > 0 else { throw PosixError("unix socket path \(path) (over \(CSigilLinux_sockaddr_un_size() - 3) bytes?)", errno: ENAMETOOLONG) }
        let outcome: Result<R, PosixError> = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                Result { () throws(PosixError) -> R in try body(address, socklen_t(result)) }
            }
        }
        return try outcome.get()
    }

    @inline(never)
    public static func connect(_ fd: Int32, path: String) throws(PosixError) {
        try withUnixAddress(path) { (address, length) throws(PosixError) in
            _ = try retrying("connect(\(path))") { Glibc.connect(fd, address, length) }
        }
    }

    @inline(never)
    public static func bind(_ fd: Int32, path: String) throws(PosixError) {
        try withUnixAddress(path) { (address, length) throws(PosixError) in
            _ = try retrying("bind(\(path))") { Glibc.bind(fd, address, length) }
        }
    }

    @inline(never)
    public static func listen(_ fd: Int32, backlog: Int32) throws(PosixError) {
        _ = try retrying("listen") { Glibc.listen(fd, backlog) }
    }

    /// Accepts a connection, non-blocking and close-on-exec. Nil when none is pending.
    @inline(never)
    public static func accept(_ fd: Int32) throws(PosixError) -> Int32? {
        while true {
            let result = CSigilLinux_accept_nonblocking(fd)
            if result >= 0 { return result }
            let code = Glibc.errno
            switch code {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return nil
            // The peer gave up before we accepted: not an error of ours.
            case ECONNABORTED, EPROTO: continue
            default: throw PosixError("accept4", errno: code)
            }
        }
    }

    @inline(never)
    public static func send(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(PosixError) -> Int {
        try retrying("send") { Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) }
    }

    @inline(never)
    public static func sendAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(PosixError) {
        var offset = 0
        while offset < buffer.count {
            offset += try send(fd, UnsafeRawBufferPointer(rebasing: buffer[offset...]))
        }
    }

    @inline(never)
    public static func recv(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(PosixError) -> Int {
        try retrying("recv") { Glibc.recv(fd, buffer.baseAddress, buffer.count, 0) }
    }

    /// Waits until `fd` has something to read (or hangs up), for at most `milliseconds` (-1: no
    /// limit); false on timeout. Unlike a thread asleep in recv, which is also woken each time
    /// the peer drains the socket's send side (at the peer's expense), poll's wait is only
    /// woken for readable data.
    @inline(never)
    public static func waitReadable(_ fd: Int32, milliseconds: Int32) throws(PosixError) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = try retrying("poll") { Glibc.poll(&entry, 1, milliseconds) }
        return ready > 0
    }

    /// Gives the CPU to another thread.
    public static func yield() {
        sched_yield()
    }

    /// Ends the process at once, without running atexit handlers or flushing stdio: for a daemon
    /// that cannot stop cleanly.
    public static func exitImmediately(_ status: Int32) -> Never {
        _exit(status)
    }

    /// Sleeps the calling thread.
    public static func sleep(milliseconds: Int) {
        var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && Glibc.errno == EINTR { request = remaining }
    }

    /// One datagram to a Unix socket path (`@` for the abstract namespace): sd_notify's transport.
    @inline(never)
    public static func sendDatagram(_ message: [UInt8], to path: String) throws(PosixError) {
        let fd = try socket(type: Int32(SOCK_DGRAM.rawValue))
        defer { close(fd) }
        try sendDatagram(message, to: path, through: fd)
    }

    /// The same through a datagram socket the caller keeps (one per writer, not one per message).
    @inline(never)
    public static func sendDatagram(_ message: [UInt8], to path: String, through fd: Int32) throws(PosixError) {
        try withUnixAddress(path) { (address, length) throws(PosixError) in
            let sent = message.withUnsafeBytes { bytes in
                Glibc.sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), address, length)
            }
            if sent < 0 { throw PosixError("sendto(\(path))", errno: Glibc.errno) }
        }
    }

    @inline(never)
    public static func shutdownWrite(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    @inline(never)
    public static func peerCredentials(_ fd: Int32) throws(PosixError) -> PeerCredentials {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        _ = try retrying("getsockopt(SO_PEERCRED)") { CSigilLinux_peercred(fd, &pid, &uid, &gid) }
        return PeerCredentials(pid: pid, uid: uid, gid: gid, groups: peerGroups(fd))
    }

    /// SO_PEERGROUPS; empty if the kernel does not support it.
    private static func peerGroups(_ fd: Int32) -> [UInt32] {
        var groups = [gid_t](repeating: 0, count: 32)
        var count = groups.withUnsafeMutableBufferPointer { CSigilLinux_peergroups(fd, $0.baseAddress, Int32($0.count)) }
        if count > groups.count {
            groups = [gid_t](repeating: 0, count: Int(count))
            count = groups.withUnsafeMutableBufferPointer { CSigilLinux_peergroups(fd, $0.baseAddress, Int32($0.count)) }
        }
        guard count > 0 else { return [] }
        return Array(groups.prefix(Int(min(count, Int32(groups.count)))))
    }

    @inline(never)
    public static func setCloseOnExec(_ fd: Int32) throws(PosixError) {
        let flags = try retrying("fcntl(F_GETFD)") { fcntl(fd, F_GETFD) }
        _ = try retrying("fcntl(F_SETFD)") { fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }

    @inline(never)
    public static func setNonBlocking(_ fd: Int32, _ on: Bool = true) throws(PosixError) {
        let flags = try retrying("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        _ = try retrying("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) }
    }

    /// The socket type of a descriptor (SOCK_STREAM, …), to check inherited descriptors.
    @inline(never)
    public static func socketType(_ fd: Int32) throws(PosixError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try retrying("getsockopt(SO_TYPE)") { getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &length) }
        return value
    }

    @inline(never)
    public static func setReceiveTimeout(_ fd: Int32, seconds: Double) throws(PosixError) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        _ = try retrying("setsockopt(SO_RCVTIMEO)") { setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) }
    }

    // MARK: Process

    public static var uid: UInt32 { getuid() }
    public static var gid: UInt32 { getgid() }
    public static var effectiveUID: UInt32 { geteuid() }
    public static var effectiveGID: UInt32 { getegid() }
    public static var pid: Int32 { getpid() }

    /// Makes the process non-dumpable: no core files, and other processes of the same user
    /// cannot ptrace it or read its memory through /proc.
    @inline(never)
    public static func setNonDumpable() throws(PosixError) {
        _ = try retrying("prctl(PR_SET_DUMPABLE)") { CSigilLinux_set_nondumpable() }
    }

    public static var isDumpable: Bool { CSigilLinux_get_dumpable() == 1 }

    @inline(never)
    public static func disableCoreDumps() throws(PosixError) {
        _ = try retrying("setrlimit(RLIMIT_CORE)") { CSigilLinux_disable_core_dumps() }
    }

    /// The soft RLIMIT_MEMLOCK in bytes (`UInt64.max` for unlimited).
    public static func memlockLimit() -> UInt64? {
        var value: UInt64 = 0
        return CSigilLinux_memlock_limit(&value) == 0 ? value : nil
    }

    /// libuv writes with write(2), not send(MSG_NOSIGNAL): a peer that goes away must not kill us.
    public static func ignoreSIGPIPE() {
        _ = signal(SIGPIPE, SIG_IGN)
    }

    /// Unblocks signals in the calling thread. A blocked mask is inherited across exec (test
    /// runners and some supervisors block SIGTERM), and libuv's handlers never run while blocked.
    public static func unblockSignals(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    @inline(never)
    public static func kill(_ pid: Int32, _ signal: Int32) throws(PosixError) {
        _ = try retrying("kill") { Glibc.kill(pid, signal) }
    }

    /// The uid of a user name, from the passwd database.
    public static func userID(named name: String) -> UInt32? {
        getpwnam(name).map { $0.pointee.pw_uid }
    }

    /// The gid of a group name, from the group database.
    public static func groupID(named name: String) -> UInt32? {
        getgrnam(name).map { $0.pointee.gr_gid }
    }

    /// Sets the file-creation mask; returns the old one. Process-wide: call before threads start.
    @discardableResult
    public static func umask(_ mask: UInt32) -> UInt32 {
        UInt32(Glibc.umask(mode_t(mask)))
    }

    /// Whether a path names a Unix socket (without following a final symlink).
    public static func isSocket(_ path: String) -> Bool? {
        var st = Glibc.stat()
        guard lstat(path, &st) == 0 else { return nil }
        return st.st_mode & S_IFMT == S_IFSOCK
    }

    /// The CPUs a thread (`thread` 0: the calling one) may run on (its affinity mask), ascending.
    public static func allowedCPUs(thread: Int32 = 0) -> [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let count = cpus.withUnsafeMutableBufferPointer { CSigilLinux_allowed_cpus(thread, $0.baseAddress, Int32($0.count)) }
        guard count > 0 else { return Array(0..<cpuCount) }
        return cpus.prefix(Int(count)).map(Int.init)
    }

    /// Pins a thread (`thread` 0: the calling one) to `cpus`. Another process's threads can be
    /// pinned by a process of the same user.
    @inline(never)
    public static func setAffinity(thread: Int32, cpus: [Int]) throws(PosixError) {
        let list = cpus.map(Int32.init)
        _ = try retrying("sched_setaffinity(\(thread))") { list.withUnsafeBufferPointer { CSigilLinux_set_affinity(thread, $0.baseAddress, Int32($0.count)) } }
    }

    public static var cpuCount: Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// Replaces this process with a fresh run of the same program and arguments (same pid, so
    /// systemd's LISTEN_PID and notify socket still apply). Returns only on failure.
    public static func reexecuteSelf(setting name: String, to value: String) -> PosixError {
        setenv(name, value, 1)
        let argv = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", argv)
        let error = PosixError("execv(/proc/self/exe)", errno: Glibc.errno)
        for pointer in argv { free(pointer) }
        return error
    }

    public static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Not thread-safe (glibc): call before any thread starts.
    public static func unsetEnvironment(_ name: String) {
        unsetenv(name)
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// CPU time of the calling thread: the same scheduler clock as /proc/PID/task/*/schedstat,
    /// so it excludes time the thread was preempted or its vCPU was stolen by the host.
    public static func threadCPUNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Wall-clock milliseconds since the epoch (Matrix timestamps).
    public static func wallClockMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Reads a file the daemon trusts for its configuration: opened without blocking (a FIFO or
    /// device there must not hang a reload), and refused unless it is a regular file owned by
    /// root or by this process's user, writable by no one else (group write only for root's or
    /// our own group). Not for key files (`KeyFileIO`).
    public static func readTrustedFile(_ path: String, limit: Int) throws(PosixError) -> [UInt8] {
        let fd = try open(path, flags: O_RDONLY | O_NOCTTY | O_NONBLOCK)
        defer { close(fd) }
        let status = try fstat(fd)
        guard status.isRegularFile else { throw PosixError("\(path): not a regular file", errno: EINVAL) }
        try checkTrusted(status, path)
        guard status.size <= limit else { throw PosixError("\(path): larger than \(limit) bytes", errno: EFBIG) }
        var out = [UInt8](repeating: 0, count: status.size)
        var filled = 0
        while filled < out.count {
            let n = try out.withUnsafeMutableBytes { buffer in
                Result { () throws(PosixError) in try read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...])) }
            }.get()
            if n == 0 { break }
            filled += n
        }
        guard filled == out.count else { throw PosixError("\(path): the file changed size while being read", errno: EIO) }
        return out
    }

    /// Refuses a file or directory that someone other than root or us could change.
    public static func checkTrusted(_ status: FileStatus, _ path: String) throws(PosixError) {
        guard status.owner == 0 || status.owner == effectiveUID else {
            throw PosixError("\(path): owned by uid \(status.owner), not by root or by sigild's user (uid \(effectiveUID))", errno: EPERM)
        }
        if status.permissions & 0o002 != 0 {
            throw PosixError("\(path): writable by every user (mode \(String(status.permissions, radix: 8))); chmod o-w it", errno: EPERM)
        }
        if status.permissions & 0o020 != 0 && status.group != 0 && status.group != getegid() {
            throw PosixError("\(path): writable by group \(status.group) (mode \(String(status.permissions, radix: 8))); chmod g-w it", errno: EPERM)
        }
    }

    /// The status of a path, following symlinks.
    @inline(never)
    public static func stat(_ path: String) throws(PosixError) -> FileStatus {
        var st = Glibc.stat()
        _ = try retrying("stat(\(path))") { fstatat(AT_FDCWD, path, &st, 0) }
        return FileStatus(size: Int(st.st_size), mode: st.st_mode, owner: st.st_uid, group: st.st_gid)
    }

    /// Sets a freshly bound socket node's owner and group through a descriptor that does not
    /// follow a symlink at the path (see `CSigilLinux_chown_socket_node`); returns its mode.
    @inline(never)
    public static func chownSocketNode(_ path: String, owner: UInt32?, group: UInt32?) throws(PosixError) -> UInt32 {
        var mode: UInt32 = 0
        _ = try retrying("chown(\(path))") {
            CSigilLinux_chown_socket_node(path, owner ?? UInt32.max, group ?? UInt32.max, &mode)
        }
        return mode
    }

    /// Whole-file read of small public files (/proc), not configs or key files.
    public static func readSmallFile(_ path: String, limit: Int = 1 << 20) throws(PosixError) -> [UInt8] {
        let fd = try open(path, flags: O_RDONLY)
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count <= limit {
            let n = try chunk.withUnsafeMutableBytes { buffer in Result { () throws(PosixError) in try read(fd, into: buffer) } }.get()
            if n == 0 { return out }
            out.append(contentsOf: chunk[..<n])
        }
        throw PosixError("read(\(path)): larger than \(limit) bytes", errno: EFBIG)
    }

    public static func isatty(_ fd: Int32) -> Bool { Glibc.isatty(fd) == 1 }

    /// Starts a program (no shell); returns its pid. Standard output and error go to `logFD`
    /// when given.
    public static func spawn(_ path: String, _ arguments: [String], environment: [String: String] = [:], logFD: Int32? = nil) throws(PosixError) -> Int32 {
        try spawn(path, arguments, environment: environment, standardOutput: logFD, standardError: logFD)
    }

    /// Starts a program with its standard input, output and error on the given descriptors
    /// (nil: inherited), in `directory` (nil: ours), with `environment` added to ours.
    public static func spawn(
        _ path: String, _ arguments: [String], environment: [String: String] = [:], standardInput: Int32? = nil,
        standardOutput: Int32? = nil, standardError: Int32? = nil, directory: String? = nil
    ) throws(PosixError) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let standardInput { posix_spawn_file_actions_adddup2(&actions, standardInput, 0) }
        if let standardOutput { posix_spawn_file_actions_adddup2(&actions, standardOutput, 1) }
        if let standardError { posix_spawn_file_actions_adddup2(&actions, standardError, 2) }
        if let directory { _ = CSigilLinux_spawn_add_chdir(&actions, directory) }
        // Only the three standard descriptors cross: a daemon started from a test runner or a
        // benchmark must not inherit (and count against its limits) whatever they hold open.
        _ = CSigilLinux_spawn_add_closefrom(&actions, 3)
        var merged: [String: String] = [:]
        var index = 0
        while let entry = environ[index] {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") { merged[String(text[..<equals])] = String(text[text.index(after: equals)...]) }
            index += 1
        }
        for (key, value) in environment { merged[key] = value }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard rc == 0 else { throw PosixError("posix_spawn(\(path))", errno: rc) }
        return pid
    }

    /// A pipe, both ends close-on-exec: (read end, write end).
    public static func pipe() throws(PosixError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        _ = try retrying("pipe2") { CSigilLinux_pipe_cloexec(&fds) }
        return (fds[0], fds[1])
    }

    /// A child's exit status if it has exited (reaping it), nil while it runs.
    public static func tryWait(_ pid: Int32) -> Int32? {
        var status: Int32 = 0
        var result: pid_t
        repeat { result = waitpid(pid, &status, WNOHANG) } while result < 0 && Glibc.errno == EINTR
        guard result == pid else { return nil }
        if status & 0x7F == 0 { return (status >> 8) & 0xFF }
        return 128 + (status & 0x7F)
    }

    /// Waits for a child; returns its exit status (128 + signal if killed).
    public static func wait(_ pid: Int32) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && Glibc.errno == EINTR {}
        if status & 0x7F == 0 { return (status >> 8) & 0xFF }
        return 128 + (status & 0x7F)
    }

    /// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
    @discardableResult
    public static func raiseFileLimit() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        return UInt64(limit.rlim_cur)
    }

    @inline(never)
    public static func makeDirectory(_ path: String, mode: UInt32) throws(PosixError) {
        _ = try retrying("mkdir(\(path))") { mkdir(path, mode_t(mode)) }
    }

    /// Asks the kernel to drop this process's clean, file-backed pages (program text and
    /// read-only data) from memory; pages still in use fault straight back in from the page
    /// cache. After start-up this leaves the daemon's resident set at its working set, instead of
    /// carrying the argument parser, the YAML reader and their initialisers. Anonymous and locked
    /// memory (the keys) is never touched. Returns the bytes advised; best effort.
    @discardableResult
    public static func releaseFileBackedPages() -> Int {
        guard let maps = try? readSmallFile("/proc/self/maps", limit: 4 << 20) else { return 0 }
        var advised = 0
        for line in String(decoding: maps, as: UTF8.self).split(separator: "\n") {
            // "start-end perms offset dev inode   /path": only mappings of files.
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[5].hasPrefix("/"), fields[1] == "r-xp" || fields[1] == "r--p" else { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16),
                let address = UnsafeMutableRawPointer(bitPattern: start)
            else { continue }
            if madvise(address, Int(end - start), MADV_PAGEOUT) == 0 { advised += Int(end - start) }
        }
        return advised
    }

    /// Names in a directory, without `.` and `..`.
    public static func listDirectory(_ path: String) throws(PosixError) -> [String] {
        guard let dir = opendir(path) else { throw PosixError("opendir(\(path))", errno: Glibc.errno) }
        defer { closedir(dir) }
        var names: [String] = []
        // A dirent is only as long as its name (d_reclen): `entry.pointee.d_name` would copy all
        // 256 bytes of the declared array and read past the end of the last entry in the
        // buffer (AddressSanitizer caught it). Read the name in place, up to its NUL.
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        while let entry = readdir(dir) {
            let name = String(cString: (UnsafeRawPointer(entry) + nameOffset).assumingMemoryBound(to: CChar.self))
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Writes a line to standard error (no Foundation, no shared C `stderr` global).
    public static func printError(_ message: String) {
        let line = Array((message + "\n").utf8)
        line.withUnsafeBytes { _ = try? writeAll(2, $0) }
    }
}
