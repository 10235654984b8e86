internal import CLibUV
import SigilPosix

/// Wakes a loop from another thread. `uv_async_send` is the one libuv call that is safe from any
/// thread; the lock makes sure nobody sends after the owning loop has closed the handle.
final class LoopWaker: Sendable {
    // The address of the uv_async_t, or 0 once closed. Stored as an integer so the type stays
    // Sendable; it is only dereferenced by libuv, under the lock.
    private let handle: Locked<UInt>

    init(_ async: UnsafeMutablePointer<uv_async_t>) {
        handle = Locked(UInt(bitPattern: async))
    }

    /// Returns false if the loop has already gone.
    @discardableResult
    func wake() -> Bool {
        handle.withLock { address in
            guard address != 0, let async = UnsafeMutablePointer<uv_async_t>(bitPattern: address) else { return false }
            uv_async_send(async)
            return true
        }
    }

    /// Called by the owning loop before it closes the handle.
    func invalidate() {
        handle.withLock { $0 = 0 }
    }
}
