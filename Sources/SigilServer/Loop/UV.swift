internal import CLibUV

/// A libuv call that failed.
struct UVError: Error, CustomStringConvertible {
    let code: Int32
    let call: String
    var description: String { "\(call): \(String(cString: uv_strerror(code)))" }
}

@inline(__always)
func uvCheck(_ result: Int32, _ call: String) throws(UVError) {
    if result < 0 { throw UVError(code: result, call: call) }
}

/// libuv's handle "subclasses" share a common prefix; C casts between them, and so do we,
/// through OpaquePointer.
@inline(__always)
func asHandle<T>(_ pointer: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
    UnsafeMutablePointer<uv_handle_t>(OpaquePointer(pointer))
}

@inline(__always)
func asStream(_ pipe: UnsafeMutablePointer<uv_pipe_t>) -> UnsafeMutablePointer<uv_stream_t> {
    UnsafeMutablePointer<uv_stream_t>(OpaquePointer(pipe))
}

/// Allocates a zeroed handle or request of type T; freed with `freeUV`.
func allocateUV<T>(_ type: T.Type) -> UnsafeMutablePointer<T> {
    let pointer = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
    pointer.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
    return pointer.bindMemory(to: T.self, capacity: 1)
}

func freeUV<T>(_ pointer: UnsafeMutablePointer<T>) {
    UnsafeMutableRawPointer(pointer).deallocate()
}

/// Closes a handle whose memory we own, freeing it in the close callback (libuv touches the
/// handle until then).
func closeAndFree<T>(_ pointer: UnsafeMutablePointer<T>) {
    let handle = asHandle(pointer)
    if uv_is_closing(handle) != 0 { return }
    uv_close(handle) { handle in
        UnsafeMutableRawPointer(handle!).deallocate()
    }
}

/// An event loop we own. Its deinit checks that every handle was closed, as libuv's own tests
/// do after each case: a leaked handle is a bug, not something to paper over.
final class EventLoop {
    let raw: UnsafeMutablePointer<uv_loop_t>

    init() throws(UVError) {
        // Initialised before `raw` is set: an init that throws once every property is set runs
        // deinit, which would close and free a loop that never was.
        let loop = allocateUV(uv_loop_t.self)
        let rc = uv_loop_init(loop)
        if rc < 0 {
            freeUV(loop)
            throw UVError(code: rc, call: "uv_loop_init")
        }
        raw = loop
    }

    func run() {
        uv_run(raw, UV_RUN_DEFAULT)
    }

    /// Milliseconds of the loop's cached clock.
    var now: UInt64 { uv_now(raw) }

    deinit {
        // Run once more so pending close callbacks complete, then close.
        uv_run(raw, UV_RUN_NOWAIT)
        let rc = uv_loop_close(raw)
        assert(rc == 0, "event loop closed with live handles")
        freeUV(raw)
    }
}
