internal import CSodium

#if canImport(Glibc)
    import Glibc
#endif

/// What to do when the kernel refuses to lock key memory into RAM.
///
/// `sodium_malloc` tries `mlock` but carries on silently when it fails (RLIMIT_MEMLOCK too low
/// and no CAP_IPC_LOCK), so we lock explicitly and let the operator choose.
public enum MemoryLockPolicy: String, Sendable, CaseIterable {
    /// Refuse to load keys into memory that could be swapped out.
    case require
    /// Load them anyway and report a warning.
    case warn
}

/// Why guarded memory could not be had. Never carries key bytes.
public enum GuardedMemoryError: Error, Equatable, Sendable, CustomStringConvertible {
    case allocationFailed(bytes: Int)
    case lockFailed(bytes: Int, memlockLimit: UInt64?)

    public var description: String {
        switch self {
        case .allocationFailed(let bytes):
            return "could not allocate \(bytes) bytes of guarded memory (sodium_malloc failed)"
        case .lockFailed(let bytes, let limit):
            let limitText = limit.map { $0 == .max ? "unlimited" : "\($0) bytes" } ?? "unknown"
            return "could not lock \(bytes) bytes of key memory into RAM (RLIMIT_MEMLOCK is \(limitText)); "
                + "raise it (systemd: LimitMEMLOCK=, shell: ulimit -l) or grant CAP_IPC_LOCK, "
                + "or set memory_lock: warn to run with swappable keys"
        }
    }
}

/// A region of libsodium guarded memory: guard pages on both sides, a canary, locked into RAM when
/// the kernel allows it, excluded from core dumps, and zeroed when freed.
///
/// The only place key bytes ever live. Access goes through closures so no Swift `Array`, `String`
/// or `Data` copy is made along the way. Not thread-safe for writing; once `makeReadOnly()` has
/// been called, concurrent reads from any thread are safe.
public final class GuardedBuffer: @unchecked Sendable {
    // @unchecked: the pointer is written only before `makeReadOnly()`, by the creating thread.
    private let base: UnsafeMutableRawPointer
    /// Usable size in bytes.
    public let count: Int
    /// Whether the explicit `sodium_mlock` succeeded.
    public let isLocked: Bool

    /// Allocates `count` bytes (at least 1) and tries to lock them.
    ///
    /// - Throws: `.lockFailed` when locking fails and `lockPolicy` is `.require`.
    public init(count: Int, lockPolicy: MemoryLockPolicy) throws(GuardedMemoryError) {
        ensureSodium()
        let size = max(count, 1)
        guard let raw = sodium_malloc(size) else { throw .allocationFailed(bytes: size) }
        if sodium_mlock(raw, size) == 0 {
            isLocked = true
        } else if lockPolicy == .require {
            sodium_free(raw)
            throw .lockFailed(bytes: size, memlockLimit: currentMemlockLimit())
        } else {
            isLocked = false
        }
        base = raw
        self.count = count
        sodium_memzero(raw, size)
    }

    deinit {
        // sodium_free zeroes, unlocks and unmaps, whatever the protection state.
        sodium_free(base)
    }

    /// Reads the bytes. Valid only inside `body`.
    @inline(__always)
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Writes the bytes. Only before `makeReadOnly()`.
    @inline(__always)
    public func withUnsafeMutableBytes<R, E: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(start: base, count: count))
    }

    /// Pages become read-only: a stray write faults instead of corrupting a key.
    public func makeReadOnly() {
        let rc = sodium_mprotect_readonly(base)
        precondition(rc == 0, "sodium_mprotect_readonly failed")
    }

    /// Pages become writable again (only while (re)building a store).
    public func makeReadWrite() {
        let rc = sodium_mprotect_readwrite(base)
        precondition(rc == 0, "sodium_mprotect_readwrite failed")
    }

    /// Zeroes the usable region (needs write access).
    public func wipe() {
        sodium_memzero(base, count)
    }
}

/// The soft RLIMIT_MEMLOCK, for the error message; nil when it cannot be read.
func currentMemlockLimit() -> UInt64? {
    #if canImport(Glibc)
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0 else { return nil }
        return limit.rlim_cur == rlim_t.max ? .max : UInt64(limit.rlim_cur)
    #else
        return nil
    #endif
}
