internal import CLibUV
import Logging
import SigilCore
import SigilPosix

/// Carries out what a connection's `ConnectionEngine` decides, with a libuv pipe: reads into the
/// loop's shared buffer, writes (`uv_try_write` first, the rest through one `uv_write`), starts
/// and stops reading, and closes. No protocol logic lives here.
final class ConnectionDriver {
    unowned let worker: WorkerLoop
    let engine: ConnectionEngine
    let pipe: UnsafeMutablePointer<uv_pipe_t>
    private var reading = false
    private var handleClosing = false
    /// Whether the handle was initialised (and so must be closed rather than just freed).
    private var freeOnDeinit = true
    /// In the loop's backlog queue.
    var inBacklog = false

    init(worker: WorkerLoop, fd: Int32, engine: ConnectionEngine) throws(UVError) {
        self.worker = worker
        self.engine = engine
        pipe = allocateUV(uv_pipe_t.self)
        let initialised = uv_pipe_init(worker.loop.raw, pipe, 0)
        if initialised < 0 {
            Posix.close(fd)
            throw UVError(code: initialised, call: "uv_pipe_init")
        }
        asHandle(pipe).pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let rc = uv_pipe_open(pipe, fd)
        if rc < 0 {
            // The handle is initialised: it must be closed, and its close callback frees the memory.
            handleClosing = true
            freeOnDeinit = false
            asHandle(pipe).pointee.data = nil
            uv_close(asHandle(pipe)) { handle in UnsafeMutableRawPointer(handle!).deallocate() }
            Posix.close(fd)
            throw UVError(code: rc, call: "uv_pipe_open")
        }
    }

    deinit {
        // Reached only after the close callback, when libuv no longer uses the handle.
        if freeOnDeinit { freeUV(pipe) }
    }

    private var stream: UnsafeMutablePointer<uv_stream_t> { asStream(pipe) }

    static func from(_ handle: UnsafeMutablePointer<uv_handle_t>?) -> ConnectionDriver? {
        guard let data = handle?.pointee.data else { return nil }
        return Unmanaged<ConnectionDriver>.fromOpaque(data).takeUnretainedValue()
    }

    // MARK: Carrying out actions

    /// Does what the engine asked, then brings reading in line with what it wants.
    func apply(_ actions: ConnectionEngine.Actions) {
        guard !handleClosing else { return }
        if actions.contains(.offload) {
            for job in engine.takeJobs() { worker.schedule(job, for: self) }
        }
        if actions.contains(.flush) { flush() }
        if actions.contains(.continueLater) { worker.scheduleBacklog(self) }
        if actions.contains(.shutdownWrite) { shutdownWrite() }
        if engine.isClosed {
            close()
            return
        }
        syncReading()
        worker.accountMemory(self)
    }

    private func syncReading() {
        if engine.wantsInput && !reading {
            let rc = uv_read_start(
                stream,
                { handle, _, buffer in
                    // One read buffer per loop, shared by all its connections: reads never overlap.
                    guard let driver = ConnectionDriver.from(handle) else { return }
                    buffer!.pointee = driver.worker.readBuffer
                },
                { stream, count, _ in
                    ConnectionDriver.from(UnsafeMutablePointer<uv_handle_t>(OpaquePointer(stream)))?.didRead(count)
                })
            if rc < 0 {
                apply(engine.failed("uv_read_start: \(UVError(code: rc, call: "uv_read_start"))"))
                return
            }
            reading = true
            engine.readingResumed(now: worker.loop.now)
        } else if !engine.wantsInput && reading {
            uv_read_stop(stream)
            reading = false
        }
    }

    private func didRead(_ count: Int) {
        let now = worker.loop.now
        if count > 0 {
            let actions = worker.readBuffer.base.withMemoryRebound(to: UInt8.self, capacity: count) { base in
                engine.received(UnsafeRawBufferPointer(start: base, count: count), now: now)
            }
            apply(actions)
        } else if count == Int(UV_EOF.rawValue) {
            // The client may have half-closed and still want its replies.
            uv_read_stop(stream)
            reading = false
            apply(engine.receivedEOF(now: now))
        } else if count < 0 {
            apply(engine.failed("read: \(UVError(code: Int32(count), call: "read"))"))
        }
    }

    /// Sends what has collected: `uv_try_write` first (no allocation, usually everything), the
    /// rest through one `uv_write` of a copy. While that write is queued, replies keep collecting.
    private func flush() {
        let total = engine.output.bytes.count
        guard total > 0, engine.queuedBytes == 0 else { return }
        var written = 0
        let rc: Int32 = engine.output.bytes.withUnsafeBytes { raw in
            var buffer = uv_buf_init(
                UnsafeMutablePointer(mutating: raw.baseAddress!.assumingMemoryBound(to: CChar.self)), UInt32(raw.count))
            return uv_try_write(stream, &buffer, 1)
        }
        if rc > 0 {
            written = Int(rc)
        } else if rc < 0 && rc != UV_EAGAIN.rawValue {
            apply(engine.failed("write: \(UVError(code: rc, call: "uv_try_write"))"))
            return
        }
        if written < total && !queueWrite(from: written) { return }
        let after = engine.flushed(sent: written, queued: total - written, now: worker.loop.now)
        // The kernel took it all: a connection stalled at its output cap resumes on a turn.
        if after.contains(.continueLater) { worker.scheduleBacklog(self) }
        if after.contains(.shutdownWrite) { shutdownWrite() }
        if after.contains(.close) { close() }
    }

    /// Copies the unsent tail into one allocation laid out as [uv_write_t | bytes].
    private func queueWrite(from offset: Int) -> Bool {
        let count = engine.output.bytes.count - offset
        let requestSize = (MemoryLayout<uv_write_t>.size + 15) & ~15
        let memory = UnsafeMutableRawPointer.allocate(byteCount: requestSize + count, alignment: 16)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: requestSize)
        engine.output.bytes.withUnsafeBytes { raw in
            (memory + requestSize).copyMemory(from: raw.baseAddress! + offset, byteCount: count)
        }
        let request = memory.bindMemory(to: uv_write_t.self, capacity: 1)
        request.pointee.data = UnsafeMutableRawPointer(bitPattern: count)
        var buffer = uv_buf_init((memory + requestSize).assumingMemoryBound(to: CChar.self), UInt32(count))
        let rc = uv_write(request, stream, &buffer, 1) { request, status in
            let count = Int(bitPattern: request!.pointee.data)
            let driver = ConnectionDriver.from(UnsafeMutablePointer<uv_handle_t>(OpaquePointer(request!.pointee.handle)))
            UnsafeMutableRawPointer(request!).deallocate()
            driver?.didWrite(count: count, status: status)
        }
        if rc < 0 {
            memory.deallocate()
            apply(engine.failed("write: \(UVError(code: rc, call: "uv_write"))"))
            return false
        }
        return true
    }

    private func didWrite(count: Int, status: Int32) {
        let actions = engine.wrote(count, now: worker.loop.now)
        if status < 0 {
            apply(engine.failed("write: \(UVError(code: status, call: "uv_write"))"))
            return
        }
        apply(actions)
    }

    // MARK: Closing

    /// Half-closes: the client sees EOF after everything written so far.
    private func shutdownWrite() {
        let request = allocateUV(uv_shutdown_t.self)
        let rc = uv_shutdown(request, stream) { request, _ in freeUV(request!) }
        if rc < 0 { freeUV(request) }
    }

    func close() {
        guard !handleClosing else { return }
        handleClosing = true
        if !engine.isClosed { engine.abort(.ioError("closed by the daemon")) }
        if reading { uv_read_stop(stream) }
        reading = false
        if let reason = engine.closeReason {
            switch reason {
            case .peerClosed, .idle, .drained: worker.logger.debug("closing connection of \(engine.caller.identity): \(reason)")
            case .framing: break  // logged by the engine, with the frame
            default: worker.logger.notice("closing connection of \(engine.caller.identity): \(reason)")
            }
        }
        uv_close(asHandle(pipe)) { handle in
            guard let driver = ConnectionDriver.from(handle) else { return }
            driver.worker.connectionClosed(driver)
        }
    }
}
