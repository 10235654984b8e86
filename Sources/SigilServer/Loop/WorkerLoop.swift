internal import CLibUV
import Logging
import SigilCore
import SigilPosix

/// One event loop on its own thread, serving the connections the acceptor hands it. Crypto
/// runs inline on the loop (one sign is ~20 µs; handing each to another thread would cost
/// 2–6 µs of CPU), with one loop per core; only large batches go to the thread pool.
final class WorkerLoop {
    let index: Int
    let loop: EventLoop
    let services: LoopServices
    let mailbox: WorkerMailbox
    /// The read buffer all this loop's connections share (reads are never concurrent).
    let readBuffer: uv_buf_t
    private let async: UnsafeMutablePointer<uv_async_t>
    private let waker: LoopWaker
    private let idle: UnsafeMutablePointer<uv_idle_t>
    private let sweep: UnsafeMutablePointer<uv_timer_t>
    private var connections: [ObjectIdentifier: ConnectionDriver] = [:]
    private var backlog: [ConnectionDriver] = []
    private var idleRunning = false
    private var drainDeadline: UInt64?
    private var stopped = false
    private let onStopped: @Sendable () -> Void
    private var batches = BatchQueue()

    static let readBufferSize = 65536
    /// Large batches this loop runs on libuv's thread pool at once (the pool is shared by every
    /// loop); the rest wait here, taken round-robin across connections.
    static let poolShare = 4

    var context: ServingContext { services.context }
    var logger: Logger { services.logger }

    init(index: Int, context: ServingContext, mailbox: WorkerMailbox, onStopped: @escaping @Sendable () -> Void) throws(UVError) {
        self.index = index
        self.mailbox = mailbox
        self.onStopped = onStopped
        var logger = context.logger
        logger[metadataKey: "loop"] = "\(index)"
        services = LoopServices(index: index, context: context, logger: logger)
        loop = try EventLoop()
        let memory = UnsafeMutableRawPointer.allocate(byteCount: WorkerLoop.readBufferSize, alignment: 16)
        readBuffer = uv_buf_init(memory.assumingMemoryBound(to: CChar.self), UInt32(WorkerLoop.readBufferSize))
        async = allocateUV(uv_async_t.self)
        idle = allocateUV(uv_idle_t.self)
        sweep = allocateUV(uv_timer_t.self)
        waker = LoopWaker(async)
        let me = Unmanaged.passUnretained(self).toOpaque()
        asHandle(async).pointee.data = me
        asHandle(idle).pointee.data = me
        asHandle(sweep).pointee.data = me
        do {
            try uvCheck(uv_async_init(loop.raw, async) { handle in WorkerLoop.from(asHandle(handle!))?.checkMailbox() }, "uv_async_init")
        } catch {
            // Nothing else is initialised yet: free the handles and the buffer; the loop closes empty.
            freeUV(async)
            freeUV(idle)
            freeUV(sweep)
            memory.deallocate()
            throw error
        }
        uv_idle_init(loop.raw, idle)
        uv_timer_init(loop.raw, sweep)
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
        var caller = Caller(credentials: incoming.credentials, listener: incoming.listener)
        caller.refresh(services.state)
        let engine = ConnectionEngine(services: services, caller: caller, limits: incoming.limits, now: loop.now)
        let driver: ConnectionDriver
        do {
            driver = try ConnectionDriver(worker: self, fd: incoming.fd, engine: engine)
        } catch {
            logger.error("cannot serve a connection from \(caller.identity): \(error)")
            context.connections.release(listener: incoming.listener.index, uid: incoming.credentials.uid)
            return
        }
        connections[ObjectIdentifier(driver)] = driver
        services.counters.update {
            $0.listeners[incoming.listener.index].connectionsOpen += 1
            $0.listeners[incoming.listener.index].connectionsTotal += 1
        }
        logger.debug("connection from \(caller.identity)")
        driver.apply([])
    }

    func connectionClosed(_ driver: ConnectionDriver) {
        connections.removeValue(forKey: ObjectIdentifier(driver))
        backlog.removeAll { $0 === driver }
        let forgotten = batches.forget(driver)
        releaseMemory(driver)
        context.connections.release(listener: driver.engine.caller.listener.index, uid: driver.engine.caller.credentials.uid)
        let listener = driver.engine.caller.listener.index
        services.counters.update {
            $0.listeners[listener].connectionsOpen -= 1
            $0.inFlight -= forgotten
            if case .closed(let reason) = driver.engine.phase {
                switch reason {
                case .memoryBudget: $0.closedForMemory += 1
                case .frameTimeout, .writeTimeout, .idle: $0.closedForTimeout += 1
                default: break
                }
            }
        }
        if drainDeadline != nil && connections.isEmpty { stop() }
    }

    /// Gives back what a closing connection counted against the memory budget.
    private func releaseMemory(_ driver: ConnectionDriver) {
        let caller = driver.engine.caller
        if driver.engine.chargedBytes != 0 {
            context.memory.adjust(uid: caller.credentials.uid, by: -driver.engine.chargedBytes)
            driver.engine.chargedBytes = 0
        }
    }

    // MARK: Fairness

    func scheduleBacklog(_ driver: ConnectionDriver) {
        guard !driver.inBacklog else { return }
        driver.inBacklog = true
        backlog.append(driver)
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
        for driver in turn {
            driver.inBacklog = false
            driver.apply(driver.engine.continueTurn(now: loop.now))
        }
        if backlog.isEmpty {
            uv_idle_stop(idle)
            idleRunning = false
        }
    }

    // MARK: Thread pool

    /// Queues a large batch; it runs when this loop has a pool place, connections taking turns.
    func schedule(_ job: BatchJob, for driver: ConnectionDriver) {
        services.counters.update { $0.inFlight += 1 }
        batches.append(job, for: driver)
        startBatches()
    }

    private func startBatches() {
        while batches.running < WorkerLoop.poolShare, let (job, driver) = batches.next() {
            run(job, for: driver)
        }
    }

    private func run(_ job: BatchJob, for driver: ConnectionDriver) {
        let work = PoolWork(job: job, driver: driver, worker: self)
        let request = allocateUV(uv_work_t.self)
        request.pointee.data = Unmanaged.passRetained(work).toOpaque()
        let rc = uv_queue_work(
            loop.raw, request,
            { request in
                Unmanaged<PoolWork>.fromOpaque(request!.pointee.data).takeUnretainedValue().runOnPool()
            },
            { request, _ in
                let work = Unmanaged<PoolWork>.fromOpaque(request!.pointee.data).takeRetainedValue()
                freeUV(request!)
                work.worker.batchFinished(work)
            })
        if rc < 0 {
            // No pool: run it here rather than drop it.
            let work = Unmanaged<PoolWork>.fromOpaque(request.pointee.data).takeRetainedValue()
            freeUV(request)
            work.runOnPool()
            batchFinished(work)
        }
    }

    private func batchFinished(_ work: PoolWork) {
        batches.finished()
        services.counters.update { $0.inFlight -= 1 }
        if connections[ObjectIdentifier(work.driver)] != nil {
            work.driver.apply(work.driver.engine.batchFinished(work.job, now: loop.now))
        }
        startBatches()
    }

    // MARK: Memory budget

    /// Reports a connection's buffered bytes to the shared ledger (in quanta), and closes the
    /// connections that hold the most unread replies when the daemon or the caller's uid is over
    /// its budget.
    func accountMemory(_ driver: ConnectionDriver) {
        let engine = driver.engine
        let buffered = engine.bufferedBytes
        let quantum = MemoryLedger.quantum
        let charge = buffered < quantum ? 0 : (buffered + quantum - 1) / quantum * quantum
        guard charge != engine.chargedBytes else { return }
        let grew = charge > engine.chargedBytes
        let uid = engine.caller.credentials.uid
        let (total, forUID) = context.memory.adjust(uid: uid, by: charge - engine.chargedBytes)
        engine.chargedBytes = charge
        guard grew else { return }
        let limits = services.state.configuration.limits
        if forUID > limits.maxBufferedPerUID {
            shed(uid: uid, limits: limits)
        } else if total > limits.maxBuffered {
            shed(uid: nil, limits: limits)
        }
    }

    /// Closes this loop's non-reading connections (of `uid`, when that uid is over its share),
    /// largest first, until the budget holds or none is left.
    private func shed(uid: UInt32?, limits: Configuration.Limits) {
        let candidates = connections.values
            .filter { $0.engine.isNotReading && !$0.engine.isClosed && (uid == nil || $0.engine.caller.credentials.uid == uid) }
            .sorted { $0.engine.bufferedBytes > $1.engine.bufferedBytes }
        for driver in candidates {
            let over = uid.map { context.memory.held(by: $0) > limits.maxBufferedPerUID } ?? (context.memory.total > limits.maxBuffered)
            guard over else { return }
            let caller = driver.engine.caller
            context.refusals.refuse(
                listener: caller.listener.index, uid: caller.credentials.uid, kind: "memory", now: loop.now, level: .notice,
                "closing connection of \(caller.identity): it holds \(driver.engine.bufferedBytes) bytes of replies it does not read, and "
                    + (uid == nil ? "the daemon is over limits.max_buffered (\(limits.maxBuffered))" : "its uid is over limits.max_buffered_per_uid (\(limits.maxBufferedPerUID))"))
            driver.engine.abort(.memoryBudget)
            releaseMemory(driver)
            driver.close()
        }
    }

    // MARK: Timeouts and drain

    private func sweepConnections() {
        mailbox.beat()
        uv_update_time(loop.raw)
        let now = loop.now
        let draining = drainDeadline != nil
        let pastDeadline = drainDeadline.map { Posix.monotonicNanoseconds() >= $0 } ?? false
        for driver in Array(connections.values) where !driver.engine.isClosed {
            driver.apply(driver.engine.tick(now: now, draining: draining, pastDrainDeadline: pastDeadline))
        }
        let limits = services.state.configuration.limits
        if context.memory.total > limits.maxBuffered { shed(uid: nil, limits: limits) }
        if draining && connections.isEmpty { stop() }
    }

    /// Closes this loop's own handles; `uv_run` then returns.
    private func stop() {
        guard !stopped else { return }
        stopped = true
        for late in mailbox.close() {
            Posix.close(late.fd)
            context.connections.release(listener: late.listener.index, uid: late.credentials.uid)
        }
        waker.invalidate()
        for driver in connections.values { driver.close() }
        uv_timer_stop(sweep)
        uv_idle_stop(idle)
        closeAndFree(sweep)
        closeAndFree(idle)
        closeAndFree(async)
        mailbox.markStopped()
        onStopped()
    }
}

/// A batch on its way to and from the thread pool, with what it needs there.
private final class PoolWork: @unchecked Sendable {
    let job: BatchJob
    /// Touched only on the loop thread (after the pool hands the work back).
    let driver: ConnectionDriver
    let worker: WorkerLoop
    private let context: ServingContext
    private let counters: LoopCounters
    private let logger: Logger
    private let loopIndex: Int

    init(job: BatchJob, driver: ConnectionDriver, worker: WorkerLoop) {
        self.job = job
        self.driver = driver
        self.worker = worker
        context = worker.context
        counters = worker.services.counters
        logger = worker.logger
        loopIndex = worker.index
    }

    /// On a pool thread: touches only the job and thread-safe shared state.
    func runOnPool() {
        job.run(context: context, counters: counters, logger: logger, loop: loopIndex)
    }
}

/// Large batches waiting for a pool place, taken round-robin across connections so that one
/// client's many batches queue behind other clients' rather than in front of them.
struct BatchQueue {
    private var waiting: [ObjectIdentifier: [BatchJob]] = [:]
    private var turns: [ConnectionDriver] = []
    private(set) var running = 0

    mutating func append(_ job: BatchJob, for driver: ConnectionDriver) {
        let key = ObjectIdentifier(driver)
        if waiting[key] == nil {
            waiting[key] = []
            turns.append(driver)
        }
        waiting[key]!.append(job)
    }

    /// The next batch to run (and counts it as running).
    mutating func next() -> (BatchJob, ConnectionDriver)? {
        guard !turns.isEmpty else { return nil }
        let driver = turns.removeFirst()
        let key = ObjectIdentifier(driver)
        var jobs = waiting[key]!
        let job = jobs.removeFirst()
        if jobs.isEmpty {
            waiting[key] = nil
        } else {
            waiting[key] = jobs
            turns.append(driver)
        }
        running += 1
        return (job, driver)
    }

    mutating func finished() {
        running -= 1
    }

    /// A connection closed: its waiting batches will never run. Returns how many there were.
    mutating func forget(_ driver: ConnectionDriver) -> Int {
        let dropped = waiting.removeValue(forKey: ObjectIdentifier(driver))?.count ?? 0
        if dropped > 0 { turns.removeAll { $0 === driver } }
        return dropped
    }
}
