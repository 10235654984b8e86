internal import CLibUV
import Logging
import SigilCore
import SigilPosix
import Synchronization

/// One event loop on its own thread, serving the connections the acceptor hands it. Crypto
/// runs inline on the loop (one sign is ~20 µs; handing each to another thread would cost
/// 2–6 µs of CPU), with one loop per core; only large batches go to the thread pool.
final class WorkerLoop {
    let index: Int
    let loop: EventLoop
    let context: ServingContext
    let counters: LoopCounters
    let logger: Logger
    let mailbox: WorkerMailbox
    @exclusivity(unchecked) var dispatcher: Dispatcher
    /// The read buffer all this loop's connections share (reads are never concurrent).
    let readBuffer: uv_buf_t
    private let async: UnsafeMutablePointer<uv_async_t>
    private let waker: LoopWaker
    private let idle: UnsafeMutablePointer<uv_idle_t>
    private let sweep: UnsafeMutablePointer<uv_timer_t>
    private var connections: [ObjectIdentifier: Connection] = [:]
    private var backlog: [Connection] = []
    private var idleRunning = false
    private var drainDeadline: UInt64?
    private var stopped = false
    private var lastRefusalSummary: UInt64 = 0
    private let onStopped: @Sendable () -> Void

    static let readBufferSize = 65536
    /// During a drain, a connection closes once nothing is owed and it has been quiet this long.
    static let drainQuietMilliseconds: UInt64 = 100
    /// A connection silent this long gives back its read and write buffers.
    static let quietMilliseconds: UInt64 = 1000

    init(index: Int, context: ServingContext, mailbox: WorkerMailbox, onStopped: @escaping @Sendable () -> Void) throws(UVError) {
        self.index = index
        self.context = context
        self.counters = context.stats.loops[index]
        self.mailbox = mailbox
        self.onStopped = onStopped
        var logger = context.logger
        logger[metadataKey: "loop"] = "\(index)"
        self.logger = logger
        dispatcher = Dispatcher(logger: logger, stats: context.stats, counters: counters, daemonVersion: context.daemonVersion)
        loop = try EventLoop()
        let memory = UnsafeMutableRawPointer.allocate(byteCount: WorkerLoop.readBufferSize, alignment: 16)
        readBuffer = uv_buf_init(memory.assumingMemoryBound(to: CChar.self), UInt32(WorkerLoop.readBufferSize))
        async = allocateUV(uv_async_t.self)
        idle = allocateUV(uv_idle_t.self)
        sweep = allocateUV(uv_timer_t.self)
        waker = LoopWaker(async)
        // These only fail on programming errors or descriptor exhaustion (the async handle's
        // eventfd); then the loop cannot work at all, so stop rather than limp on.
        let rc = uv_async_init(loop.raw, async) { handle in
            WorkerLoop.from(asHandle(handle!))?.checkMailbox()
        }
        precondition(rc == 0, "uv_async_init failed: \(UVError(code: rc, call: "uv_async_init"))")
        uv_idle_init(loop.raw, idle)
        uv_timer_init(loop.raw, sweep)
        let me = Unmanaged.passUnretained(self).toOpaque()
        asHandle(async).pointee.data = me
        asHandle(idle).pointee.data = me
        asHandle(sweep).pointee.data = me
        uv_timer_start(sweep, { handle in WorkerLoop.from(asHandle(handle!))?.sweepConnections() }, 1000, 1000)
        mailbox.attach(waker)
    }

    deinit {
        UnsafeMutableRawPointer(readBuffer.base).deallocate()
    }

    static func from(_ handle: UnsafeMutablePointer<uv_handle_t>) -> WorkerLoop? {
        guard let data = handle.pointee.data else { return nil }
        return Unmanaged<WorkerLoop>.fromOpaque(data).takeUnretainedValue()
    }

    /// Runs until drained. Call on the loop's own thread.
    func run() {
        loop.run()
    }

    // MARK: Connections

    private func checkMailbox() {
        let (incoming, deadline) = mailbox.take()
        for connection in incoming { adopt(connection) }
        if let deadline, drainDeadline == nil {
            drainDeadline = deadline
            // Check often while draining, so idle connections close promptly.
            uv_timer_start(sweep, { handle in WorkerLoop.from(asHandle(handle!))?.sweepConnections() }, 20, 20)
            sweepConnections()
        }
    }

    private func adopt(_ incoming: IncomingConnection) {
        let state = context.state
        var caller = Caller(credentials: incoming.credentials, listener: incoming.listener)
        caller.refresh(state)
        let connection: Connection
        do {
            connection = try Connection(worker: self, fd: incoming.fd, caller: caller, maxFrameLength: state.configuration.limits.maxFrameLength)
        } catch {
            logger.error("cannot serve a connection from \(caller.identity): \(error)")
            context.openConnections.subtract(1, ordering: .relaxed)
            return
        }
        connections[ObjectIdentifier(connection)] = connection
        counters.update {
            $0.connectionsOpen += 1
            $0.connectionsTotal += 1
        }
        if caller.rules.isEmpty {
            logger.notice("connection from \(caller.identity) matches no access rule: every request will be refused")
        } else {
            logger.debug("connection from \(caller.identity)")
        }
        connection.startReading()
    }

    func connectionClosed(_ connection: Connection) {
        connections.removeValue(forKey: ObjectIdentifier(connection))
        backlog.removeAll { $0 === connection }
        poolWaiters.removeAll { $0 === connection }
        counters.update { $0.connectionsOpen -= 1 }
        context.openConnections.subtract(1, ordering: .relaxed)
        if drainDeadline != nil && connections.isEmpty { stop() }
    }

    // MARK: Fairness

    func scheduleBacklog(_ connection: Connection) {
        guard !connection.inBacklog else { return }
        connection.inBacklog = true
        backlog.append(connection)
        if !idleRunning {
            idleRunning = true
            // An active idle handle makes the next poll non-blocking, so backlogged work
            // resumes right after every other ready connection has been served once.
            uv_idle_start(idle) { handle in WorkerLoop.from(asHandle(handle!))?.runBacklog() }
        }
    }

    private func runBacklog() {
        let turn = backlog
        backlog.removeAll(keepingCapacity: true)
        for connection in turn {
            connection.inBacklog = false
            connection.resumeBacklog()
        }
        if backlog.isEmpty {
            uv_idle_stop(idle)
            idleRunning = false
        }
    }

    // MARK: Thread pool

    /// Batches this loop has on libuv's thread pool, shared by every loop: each loop keeps at
    /// most `poolShare` there, so one client's flood of batches queues behind the others'
    /// instead of in front of them.
    private(set) var offloadedCount = 0
    private var poolWaiters: [Connection] = []
    static let poolShare = 4

    var hasPoolPlace: Bool { offloadedCount < WorkerLoop.poolShare }

    func waitForPool(_ connection: Connection) {
        poolWaiters.append(connection)
    }

    /// A batch finished: the connection that has waited longest for a place goes next.
    func offloadFinished() {
        offloadedCount -= 1
        while !poolWaiters.isEmpty {
            let next = poolWaiters.removeFirst()
            guard !next.closing, next.pausedForPool else { continue }
            scheduleBacklog(next)
            break
        }
    }

    /// Runs a large batch on libuv's thread pool; the reply comes back on this loop.
    func offload(header: FrameHeader, body: [UInt8], from connection: Connection, state: ServingState) {
        connection.offloaded += 1
        offloadedCount += 1
        counters.update { $0.inFlight += 1 }
        let job = OffloadedBatch(
            header: header, body: body, caller: connection.caller.forBatch(), state: state, logger: logger, stats: context.stats,
            counters: counters, daemonVersion: context.daemonVersion, connection: connection)
        let request = allocateUV(uv_work_t.self)
        request.pointee.data = Unmanaged.passRetained(job).toOpaque()
        let rc = uv_queue_work(
            loop.raw, request,
            { request in
                Unmanaged<OffloadedBatch>.fromOpaque(request!.pointee.data).takeUnretainedValue().run()
            },
            { request, _ in
                let job = Unmanaged<OffloadedBatch>.fromOpaque(request!.pointee.data).takeRetainedValue()
                freeUV(request!)
                job.finish()
            })
        if rc < 0 {
            // No pool: run it here rather than drop it.
            let job = Unmanaged<OffloadedBatch>.fromOpaque(request.pointee.data).takeRetainedValue()
            freeUV(request)
            job.run()
            job.finish()
        }
    }

    // MARK: Timeouts and drain

    private func sweepConnections() {
        mailbox.beat()
        uv_update_time(loop.raw)
        let now = loop.now
        let limits = context.state.configuration.limits
        let draining = drainDeadline != nil
        let pastDeadline = drainDeadline.map { Posix.monotonicNanoseconds() >= $0 } ?? false
        if now - lastRefusalSummary >= 10_000 {
            lastRefusalSummary = now
            for connection in connections.values { connection.logRefusalSummary() }
        }
        for connection in connections.values where !connection.closing {
            if !connection.isPausedByUs, let since = connection.partialSince, now >= since, now - since > UInt64(limits.frameTimeout) {
                logger.notice("closing connection of \(connection.caller.identity): a frame took over \(limits.frameTimeout) ms to arrive")
                connection.close()
            } else if connection.hasStalledOutput, now >= connection.lastWriteProgress, now - connection.lastWriteProgress > UInt64(limits.writeTimeout) {
                logger.notice("closing connection of \(connection.caller.identity): it has read none of its replies for \(limits.writeTimeout) ms")
                connection.close()
            } else if draining && (pastDeadline || (connection.isIdle && now >= connection.lastActivity && now - connection.lastActivity >= WorkerLoop.drainQuietMilliseconds)) {
                if pastDeadline && !connection.isIdle {
                    logger.warning("drain deadline passed: closing connection of \(connection.caller.identity) with work pending")
                }
                connection.close()
            } else if limits.idleTimeout > 0, connection.isIdle, now >= connection.lastActivity, now - connection.lastActivity > UInt64(limits.idleTimeout) {
                logger.debug("closing idle connection of \(connection.caller.identity)")
                connection.close()
            } else if now >= connection.lastActivity, now - connection.lastActivity >= WorkerLoop.quietMilliseconds {
                connection.releaseIdleMemory()
            }
        }
        if draining && connections.isEmpty { stop() }
    }

    /// Closes this loop's own handles; `uv_run` then returns.
    private func stop() {
        guard !stopped else { return }
        stopped = true
        for late in mailbox.close() {
            Posix.close(late.fd)
            context.openConnections.subtract(1, ordering: .relaxed)
        }
        waker.invalidate()
        for connection in connections.values { connection.close() }
        uv_timer_stop(sweep)
        uv_idle_stop(idle)
        closeAndFree(sweep)
        closeAndFree(idle)
        closeAndFree(async)
        mailbox.markStopped()
        onStopped()
    }
}

/// A batch on the thread pool. It crosses threads exactly twice, each time handed over by
/// libuv (work callback on a pool thread, then completion on the loop), so nothing touches it
/// concurrently.
final class OffloadedBatch: @unchecked Sendable {
    let header: FrameHeader
    let body: [UInt8]
    var caller: Caller
    let state: ServingState
    let logger: Logger
    let stats: StatsRegistry
    let counters: LoopCounters
    let daemonVersion: String
    /// Touched only in `finish`, on the loop thread.
    private let connection: Connection
    private var reply = WireWriter(capacity: 0)

    init(
        header: FrameHeader, body: [UInt8], caller: Caller, state: ServingState, logger: Logger, stats: StatsRegistry,
        counters: LoopCounters, daemonVersion: String, connection: Connection
    ) {
        self.header = header
        self.body = body
        self.caller = caller
        self.state = state
        self.logger = logger
        self.stats = stats
        self.counters = counters
        self.daemonVersion = daemonVersion
        self.connection = connection
    }

    func run() {
        var dispatcher = Dispatcher(logger: logger, stats: stats, counters: counters, daemonVersion: daemonVersion)
        _ = body.withUnsafeBytes { raw in
            dispatcher.handle(header, body: raw, caller: &caller, state: state, out: &reply)
        }
        dispatcher.flushCounters()
    }

    func finish() {
        counters.update { $0.inFlight -= 1 }
        connection.worker.offloadFinished()
        connection.deliverOffloaded(reply.bytes, refusals: caller.refusals)
    }
}
