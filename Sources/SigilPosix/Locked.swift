import Glibc

/// A value behind a lock: a `pthread_mutex_t`.
///
/// Not `Synchronization.Mutex`. On Linux that lock is built on a bare futex, which
/// ThreadSanitizer cannot see, so TSan reports every access made under it as a race; a
/// suppression for those would also hide the real races next to them. TSan intercepts
/// `pthread_mutex_lock`, so with this lock `scripts/sanitize thread` checks the locking itself.
/// Uncontended, both cost an atomic exchange; no lock here is on the per-request path of a
/// pipelined connection.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let status = pthread_mutex_init(mutex, nil)
        precondition(status == 0, "pthread_mutex_init failed: \(status)")
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock. `body` must not take this lock again.
    @inline(__always)
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
