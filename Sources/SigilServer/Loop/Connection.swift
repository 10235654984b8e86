internal import CLibUV
import Logging
import SigilCore
import SigilPosix

/// One client connection, owned by one worker loop and touched only on that loop's thread.
///
/// Reads go into the frame decoder; each turn handles at most `framesPerTurn` frames so one
/// flooding client cannot starve the others; replies collect in `output` and go out in as few
/// writes as possible. A client that stops reading stops being read once its unsent replies
/// pass `maxPendingOutput`.
final class Connection {
    unowned let worker: WorkerLoop
    let pipe: UnsafeMutablePointer<uv_pipe_t>
    // Loop-thread-only state used on every frame: the dynamic exclusivity checks are skipped.
    @exclusivity(unchecked) var caller: Caller
    @exclusivity(unchecked) var decoder: FrameDecoder
    @exclusivity(unchecked) var output = WireWriter(capacity: 0)
    /// Bytes handed to uv_write and not yet completed.
    private var queuedBytes = 0
    /// Replies held back while a backlog of requests is worked through go out at this size
    /// (well below what `resetOutput` keeps, so the buffer is reused).
    static let deferredOutputLimit = 96 * 1024
    /// When a queued write last completed (or the queue last became non-empty): a client that
    /// reads nothing for `write_timeout` is cut off, freeing what it made us hold.
    private(set) var lastWriteProgress: UInt64 = 0
    var hasStalledOutput: Bool { queuedBytes > 0 }
    /// Batches running on the thread pool.
    var offloaded = 0
    private var reading = false
    private var pausedForBacklog = false
    private var pausedForBackpressure = false
    /// Waiting for a thread-pool place: the loop already has its share of batches running.
    var pausedForPool = false
    var inBacklog = false
    private(set) var closing = false
    /// Set after a fatal framing error or EOF: close once everything owed is written.
    private var closeWhenFlushed = false
    private var peerClosed = false
    var lastActivity: UInt64
    var partialSince: UInt64?

    init(worker: WorkerLoop, fd: Int32, caller: Caller, maxFrameLength: UInt32) throws(UVError) {
        self.worker = worker
        self.caller = caller
        decoder = FrameDecoder(maxLength: maxFrameLength, retainedCapacity: 2 * WorkerLoop.readBufferSize)
        lastActivity = worker.loop.now
        pipe = allocateUV(uv_pipe_t.self)
        let initialised = uv_pipe_init(worker.loop.raw, pipe, 0)
        if initialised < 0 {
            // deinit runs when this init throws: let it free the handle, once.
            closing = true
            Posix.close(fd)
            throw UVError(code: initialised, call: "uv_pipe_init")
        }
        let rc = uv_pipe_open(pipe, fd)
        asHandle(pipe).pointee.data = Unmanaged.passUnretained(self).toOpaque()
        if rc < 0 {
            // The handle is initialised: it must be closed, not just freed, and its close
            // callback frees the memory (deinit runs first, as this init throws).
            closing = true
            freeOnDeinit = false
            uv_close(asHandle(pipe)) { handle in
                UnsafeMutableRawPointer(handle!).deallocate()
            }
            Posix.close(fd)
            throw UVError(code: rc, call: "uv_pipe_open")
        }
    }

    private var freeOnDeinit = true

    deinit {
        // Reached only after the close callback, when libuv no longer uses the handle.
        if freeOnDeinit { freeUV(pipe) }
    }

    private var stream: UnsafeMutablePointer<uv_stream_t> { asStream(pipe) }

    static func from(_ handle: UnsafeMutablePointer<uv_handle_t>?) -> Connection? {
        guard let data = handle?.pointee.data else { return nil }
        return Unmanaged<Connection>.fromOpaque(data).takeUnretainedValue()
    }

    // MARK: Reading

    func startReading() {
        guard !closing, !reading, !pausedForBacklog, !pausedForBackpressure, !pausedForPool else { return }
        let rc = uv_read_start(
            stream,
            { handle, _, buffer in
                // One read buffer per loop, shared by all its connections: reads never overlap.
                guard let connection = Connection.from(handle) else { return }
                buffer!.pointee = connection.worker.readBuffer
            },
            { stream, count, _ in
                Connection.from(UnsafeMutablePointer<uv_handle_t>(OpaquePointer(stream)))?.didRead(count)
            })
        if rc < 0 {
            worker.logger.debug("uv_read_start failed for \(caller.identity): \(UVError(code: rc, call: "uv_read_start"))")
            close()
            return
        }
        reading = true
        // A frame left half-read while we paused starts its timeout afresh.
        if decoder.hasPartialFrame { partialSince = worker.loop.now }
    }

    private func stopReading() {
        guard reading else { return }
        uv_read_stop(stream)
        reading = false
    }

    private func didRead(_ count: Int) {
        if count > 0 {
            lastActivity = worker.loop.now
            worker.readBuffer.base.withMemoryRebound(to: UInt8.self, capacity: count) { base in
                decoder.append(UnsafeRawBufferPointer(start: base, count: count))
            }
            worker.counters.update { $0.bytesIn += UInt64(count) }
            process()
        } else if count < 0 {
            // EOF (the client may have half-closed and still want its replies) or an error.
            stopReading()
            peerClosed = true
            if count == Int(UV_EOF.rawValue) {
                closeWhenFlushed = true
                process()
                closeIfDone()
            } else {
                close()
            }
        }
    }

    // MARK: Frames

    /// Handles up to `framesPerTurn` frames, then yields to other connections.
    func process() {
        guard !closing else { return }
        let state = worker.context.state
        let limits = state.configuration.limits
        var handled = 0
        while handled < limits.framesPerTurn {
            let next: FrameDecoder.Next
            do {
                next = try decoder.next()
            } catch {
                fatalFramingError(error)
                break
            }
            guard case .frame(let header, let bodyRange) = next else { break }
            if offloaded >= limits.maxInFlight {
                Dispatcher.writeFailure(
                    .busy, "\(offloaded) requests already in flight on this connection (limit \(limits.maxInFlight))",
                    opcode: header.opcode, flags: header.flags & Wire.flagBatch, requestID: header.requestID, out: &output)
                worker.counters.update { $0.busy += 1 }
                handled += 1
                continue
            }
            // Large batches of an operation this caller may use run on the thread pool, so they
            // never hold up the loop's other connections. (Refused ones are answered here: cheap.)
            if header.isBatch, header.version == Wire.version, header.bodyLength >= 2,
                let op = Opcode(rawValue: header.opcode), op.acceptsBatch, caller.allows(op)
            {
                let items = decoder.buffer.withUnsafeBytes { Int($0[bodyRange.lowerBound]) << 8 | Int($0[bodyRange.lowerBound + 1]) }
                if items >= limits.offloadBatchItems && items <= limits.maxBatchItems {
                    guard worker.hasPoolPlace else {
                        // The loop's share of the pool is taken: wait in line for a place
                        // (first come, first served across connections), reading nothing new.
                        decoder.unread(header)
                        pausedForPool = true
                        stopReading()
                        worker.waitForPool(self)
                        break
                    }
                    handled += 1
                    worker.offload(header: header, body: Array(decoder.buffer[bodyRange]), from: self, state: state)
                    continue
                }
            }
            handled += 1
            decoder.buffer.withUnsafeBytes { raw in
                let body = UnsafeRawBufferPointer(rebasing: raw[bodyRange])
                worker.dispatcher.handle(header, body: body, caller: &caller, state: state, out: &output)
            }
        }
        worker.dispatcher.flushCounters()
        if decoder.hasPartialFrame && reading {
            if partialSince == nil { partialSince = worker.loop.now }
        } else {
            // Not arriving, or not being read by us (paused): nothing for the frame timeout to time.
            partialSince = nil
        }
        if handled == limits.framesPerTurn && !closeWhenFlushed && decoder.hasCompleteFrame {
            // More whole frames are waiting: finish them on a later turn, after everyone else
            // has had one. (Only then: pausing costs two epoll_ctl calls.)
            pausedForBacklog = true
            stopReading()
            worker.scheduleBacklog(self)
            // The client is still busy sending, so its replies can wait for the rest of the
            // backlog: each write wakes the client, and a wake-up costs us more than signing a
            // few requests. They go out once the input runs dry, or once they fill a buffer.
            if output.bytes.count < Connection.deferredOutputLimit { return }
        }
        flush()
        // After a fatal framing error the answer usually goes out in the flush above, with no
        // write callback to follow: close now, not when the sweep finds a stale partial frame.
        closeIfDone()
    }

    /// Called by the loop's idle handle on the next turn (also after waiting for the pool).
    func resumeBacklog() {
        pausedForBacklog = false
        pausedForPool = false
        process()
        if !pausedForBacklog && !pausedForPool && !peerClosed { startReading() }
        closeIfDone()
    }

    /// Whether we, not the client, stopped reading this connection.
    var isPausedByUs: Bool { pausedForBacklog || pausedForBackpressure || pausedForPool }

    private func fatalFramingError(_ error: FrameDecoder.Failure) {
        switch error {
        case .tooLarge(_, _, let requestID):
            Dispatcher.writeFailure(.frameTooLarge, error.description, opcode: 0, flags: 0, requestID: requestID ?? 0, out: &output)
        case .lengthTooSmall:
            Dispatcher.writeFailure(.badFrame, error.description, opcode: 0, flags: 0, requestID: 0, out: &output)
        }
        worker.logger.notice("closing connection of \(caller.identity): \(error)")
        worker.counters.update { $0.errors[0] += 1 }
        closeWhenFlushed = true
        stopReading()
    }

    /// An offloaded batch has finished: its reply joins the output.
    func deliverOffloaded(_ bytes: [UInt8], refusals: Caller.Refusals) {
        offloaded -= 1
        caller.merge(refusals)
        guard !closing else { return }
        output.bytes.append(contentsOf: bytes)
        flush()
        closeIfDone()
    }

    // MARK: Writing

    /// Sends what has collected: `uv_try_write` first (no allocation, usually everything), the
    /// rest through one `uv_write`. While a write is queued, replies keep collecting and go out
    /// together when it completes.
    func flush() {
        guard !closing, !output.bytes.isEmpty, queuedBytes == 0 else {
            checkBackpressure()
            return
        }
        let total = output.bytes.count
        var written = 0
        let rc: Int32 = output.bytes.withUnsafeMutableBytes { raw in
            var buffer = uv_buf_init(raw.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(raw.count))
            return uv_try_write(stream, &buffer, 1)
        }
        if rc > 0 {
            written = Int(rc)
        } else if rc < 0 && rc != UV_EAGAIN.rawValue {
            worker.logger.debug("write to \(caller.identity) failed: \(UVError(code: rc, call: "uv_try_write"))")
            close()
            return
        }
        worker.counters.update { $0.bytesOut += UInt64(written) }
        if written < total {
            queueWrite(from: written)
        }
        resetOutput()
        checkBackpressure()
    }

    private func resetOutput() {
        // Keep the buffer for the next replies (a quiet connection gives it back in the sweep);
        // give back one that grew past a busy connection's usual size.
        if output.bytes.capacity > 2 * WorkerLoop.readBufferSize {
            output = WireWriter(capacity: 0)
        } else {
            output.bytes.removeAll(keepingCapacity: true)
        }
    }

    /// Copies the unsent tail into one allocation laid out as [uv_write_t | count | bytes].
    private func queueWrite(from offset: Int) {
        let count = output.bytes.count - offset
        let requestSize = (MemoryLayout<uv_write_t>.size + 15) & ~15
        let memory = UnsafeMutableRawPointer.allocate(byteCount: requestSize + count, alignment: 16)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: requestSize)
        output.bytes.withUnsafeBytes { raw in
            (memory + requestSize).copyMemory(from: raw.baseAddress! + offset, byteCount: count)
        }
        let request = memory.bindMemory(to: uv_write_t.self, capacity: 1)
        request.pointee.data = UnsafeMutableRawPointer(bitPattern: count)
        var buffer = uv_buf_init((memory + requestSize).assumingMemoryBound(to: CChar.self), UInt32(count))
        let rc = uv_write(request, stream, &buffer, 1) { request, status in
            let count = Int(bitPattern: request!.pointee.data)
            let connection = Connection.from(UnsafeMutablePointer<uv_handle_t>(OpaquePointer(request!.pointee.handle)))
            UnsafeMutableRawPointer(request!).deallocate()
            connection?.didWrite(count: count, status: status)
        }
        if rc < 0 {
            memory.deallocate()
            close()
            return
        }
        if queuedBytes == 0 { lastWriteProgress = worker.loop.now }
        queuedBytes += count
    }

    private func didWrite(count: Int, status: Int32) {
        queuedBytes -= count
        lastWriteProgress = worker.loop.now
        if status < 0 {
            if !closing { close() }
            return
        }
        worker.counters.update { $0.bytesOut += UInt64(count) }
        flush()
        closeIfDone()
    }

    private func checkBackpressure() {
        guard !closing else { return }
        let limit = worker.context.state.configuration.limits.maxPendingOutput
        let pending = queuedBytes + output.bytes.count
        if !pausedForBackpressure && pending > limit {
            pausedForBackpressure = true
            stopReading()
        } else if pausedForBackpressure && pending <= limit / 2 {
            pausedForBackpressure = false
            if !pausedForBacklog && !peerClosed { startReading() }
        }
    }

    // MARK: Closing

    /// Nothing owed and nothing arriving.
    var isIdle: Bool { offloaded == 0 && queuedBytes == 0 && output.bytes.isEmpty && !decoder.hasPartialFrame && !pausedForBacklog }

    /// A quiet connection keeps no buffers: most of a thousand connections are quiet.
    func releaseIdleMemory() {
        guard isIdle else { return }
        decoder.releaseIdleMemory()
        if output.bytes.capacity > 0 { output = WireWriter(capacity: 0) }
    }

    func closeIfDone() {
        if closeWhenFlushed && offloaded == 0 && queuedBytes == 0 && output.bytes.isEmpty && !pausedForBacklog { close() }
    }

    /// Logs refusals that were only counted (see `Caller.unloggedRefusals`).
    func logRefusalSummary() {
        if let summary = caller.takeRefusalSummary() { worker.logger.warning("\(summary)") }
    }

    func close() {
        guard !closing else { return }
        closing = true
        logRefusalSummary()
        stopReading()
        uv_close(asHandle(pipe)) { handle in
            guard let connection = Connection.from(handle) else { return }
            connection.worker.connectionClosed(connection)
        }
    }
}
