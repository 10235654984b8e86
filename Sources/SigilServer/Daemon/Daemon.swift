internal import CLibUV
public import Logging
import SigilCore
import SigilPosix

#if canImport(Glibc)
import Glibc
#endif

/// `sigild`: loads keys, opens listeners, runs one worker loop per core and an acceptor on the
/// calling thread's main loop, and lives until SIGTERM or SIGINT drains it. Accepting
/// (`Acceptor`), reloading (`Reloader`) and what systemd is told (`StatusReporter`) live in
/// their own files; this one holds the life cycle.
public final class Daemon {
    public struct Options: Sendable {
        public var configuration: Configuration
        /// Re-read on SIGHUP; nil when the configuration came from flags (then only keys are re-read).
        public var configPath: String?
        public var version: String

        public init(configuration: Configuration, configPath: String?, version: String) {
            self.configuration = configuration
            self.configPath = configPath
            self.version = version
        }
    }

    public enum Phase: String, Sendable {
        case initial, starting, running, draining, stopped
    }

    /// Everything a running daemon holds. The state's cases carry it, so no part of it exists
    /// before it is made or after it is let go.
    private final class Running {
        let loop: EventLoop
        let context: ServingContext
        let acceptor: Acceptor
        let workers: [(mailbox: WorkerMailbox, thread: PosixThread)]
        let handles: MainHandles
        let reloader: Reloader
        let listenerNames: [String]
        /// `name=where` for each listener, for the log.
        let listenerOrigins: [String]
        var status: StatusReporter
        /// States replaced by a reload, freed (their key memory zeroed) on the main loop once
        /// nothing else refers to them.
        var retiring: [ServingState] = []
        var ticks: UInt64 = 0

        init(
            loop: EventLoop, context: ServingContext, acceptor: Acceptor, workers: [(mailbox: WorkerMailbox, thread: PosixThread)],
            handles: MainHandles, reloader: Reloader, listenerNames: [String], listenerOrigins: [String], status: StatusReporter
        ) {
            self.loop = loop
            self.context = context
            self.acceptor = acceptor
            self.workers = workers
            self.handles = handles
            self.reloader = reloader
            self.listenerNames = listenerNames
            self.listenerOrigins = listenerOrigins
            self.status = status
        }
    }

    private enum State {
        case initial
        case starting
        case running(Running)
        case draining(Running)
        case stopped
    }

    private let options: Options
    private let logger: Logger
    private var exitCode: Int32 = 0
    private var state: State = .initial {
        didSet { logger.debug("state \(phase.rawValue)") }
    }

    public var phase: Phase {
        switch state {
        case .initial: return .initial
        case .starting: return .starting
        case .running: return .running
        case .draining: return .draining
        case .stopped: return .stopped
        }
    }

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until drained. Returns the process exit status.
    public func run() -> Int32 {
        guard case .initial = state else { preconditionFailure("a daemon runs once") }
        state = .starting
        let startedAt = Posix.monotonicNanoseconds()
        ProcessHardening.apply(logger: logger)
        let files = Posix.raiseFileLimit()
        let running: Running
        do {
            running = try start(startedAt: startedAt)
        } catch {
            logger.critical("\(error)")
            state = .stopped
            return 1
        }
        state = .running(running)
        logReady(running, startedAt: startedAt, files: files)
        running.status.ready(running.status.line(running.context))
        Posix.releaseFileBackedPages()
        running.loop.run()
        for worker in running.workers { worker.thread.join() }
        running.reloader.finish()
        running.context.audit?.stop()
        state = .stopped
        logger.info("stopped")
        return exitCode
    }

    /// In a function of its own so that the serving state it reads is let go when it returns:
    /// a reference kept for the daemon's whole life would keep the first keys in memory after
    /// a rotation.
    private func logReady(_ running: Running, startedAt: UInt64, files: UInt64) {
        let elapsed = Double(Posix.monotonicNanoseconds() - startedAt) / 1e6
        let keyring = running.context.state.keyring
        logger.info(
            "ready in \(String(format2: elapsed)) ms: \(keyring.keyCount) key(s) for \(keyring.servers.count) server(s) (\(StatusReporter.serverSummary(keyring))); \(running.workers.count) event loop(s); up to \(files) descriptors; listening on \(running.listenerOrigins.joined(separator: ", "))"
        )
    }

    /// Loads keys, opens the listeners, starts the loops. On failure, closes what it opened.
    private func start(startedAt: UInt64) throws -> Running {
        let inherited: [SystemdActivation.InheritedSocket]
        do {
            inherited = try SystemdActivation.takeListenSockets()
        } catch {
            throw LoadError("cannot take systemd's sockets: \(error)")
        }
        let configuration = options.configuration
        let first: ServingState
        do {
            first = try ServingState.load(configuration, generation: 1)
        } catch {
            throw LoadError("cannot load keys: \(error)")
        }
        for warning in first.warnings { logger.warning("\(warning)") }
        let listeners = try Listener.open(configuration, inherited: inherited, logger: logger)
        var ready = false
        defer { if !ready { for listener in listeners { listener.close() } } }
        let workerCount = configuration.workers > 0 ? configuration.workers : Posix.cpuCount
        let names = listeners.map(\.name)
        let audit = try configuration.audit.map { (settings) throws(LoadError) in
            try AuditTrail(configuration: settings, loops: workerCount, listenerNames: names, logger: logger)
        }
        defer { if !ready { audit?.stop() } }
        let context = ServingContext(
            state: first, stats: StatsRegistry(loopCount: workerCount, listenerNames: names, startedAt: startedAt), daemonVersion: options.version,
            logger: logger, audit: audit)
        let loop = try EventLoop()
        let handles = try MainHandles(loop: loop, owner: self)
        var workers: [(mailbox: WorkerMailbox, thread: PosixThread)] = []
        do {
            for index in 0..<workerCount { workers.append(try startWorker(index, context: context, waker: handles.waker)) }
        } catch {
            // The loops that did start have no connections: asked to drain, they stop at once.
            for worker in workers { worker.mailbox.drain(deadline: 0) }
            for worker in workers { worker.thread.join() }
            handles.close()
            loop.run()
            throw LoadError("cannot start: \(error)")
        }
        let acceptor = Acceptor(loop: loop, context: context, listeners: listeners, mailboxes: workers.map(\.mailbox), logger: logger)
        acceptor.start()
        var status = StatusReporter()
        handles.startTimer(period: min(1000, status.interval))
        status.reloadFailure = nil
        ready = true
        return Running(
            loop: loop, context: context, acceptor: acceptor, workers: workers, handles: handles,
            reloader: Reloader(configPath: options.configPath, flagConfiguration: configuration), listenerNames: names,
            listenerOrigins: listeners.map { "\($0.name)=\($0.origin)" }, status: status)
    }

    private func startWorker(_ index: Int, context: ServingContext, waker: LoopWaker) throws -> (mailbox: WorkerMailbox, thread: PosixThread) {
        let mailbox = WorkerMailbox()
        let started = Locked<Result<Void, LoadError>?>(nil)
        let thread = try PosixThread(name: "sigild-loop-\(index)") {
            let worker: WorkerLoop
            do {
                worker = try WorkerLoop(index: index, context: context, mailbox: mailbox) { waker.wake() }
            } catch {
                started.withLock { $0 = .failure(LoadError("event loop \(index): \(error)")) }
                return
            }
            started.withLock { $0 = .success(()) }
            worker.run()
        }
        // Wait for the loop to exist (microseconds), so a failure stops the start cleanly.
        while true {
            if let result = started.withLock({ $0 }) {
                if case .failure(let error) = result {
                    thread.join()
                    throw error
                }
                return (mailbox, thread)
            }
            Posix.yield()
        }
    }

    // MARK: Events on the main loop

    fileprivate func handleSignal(_ signal: Int32) {
        switch signal {
        case SIGHUP: reload()
        case SIGTERM: drain(because: "SIGTERM")
        case SIGINT: drain(because: "SIGINT")
        default: break
        }
    }

    /// Woken by a worker that stopped, or by a finished reload.
    fileprivate func wake() {
        switch state {
        case .running(let running): finishReload(running)
        case .draining(let running):
            finishReload(running)
            if running.workers.allSatisfy({ $0.mailbox.isStopped }) { running.handles.close() }
        default: break
        }
    }

    fileprivate func tick() {
        guard case .running(let running) = state else { return }
        running.ticks &+= 1
        retire(running)
        let period = max(1, running.handles.timerPeriod)
        if running.ticks % max(1, 10_000 / period) == 0 {
            running.status.status(running.status.line(running.context))
            running.context.refusals.summarise(now: running.loop.now)
        }
        running.status.watchdog(workers: running.workers.map(\.mailbox))
    }

    /// Frees replaced states nothing refers to any more (their keys are zeroed as they go).
    private func retire(_ running: Running) {
        var index = running.retiring.count - 1
        while index >= 0 {
            if isKnownUniquelyReferenced(&running.retiring[index]) {
                running.retiring.remove(at: index)
                logger.debug("a replaced keyring is no longer used: its key memory is zeroed and freed")
            }
            index -= 1
        }
    }

    // MARK: Reload

    /// Re-reads the configuration (if it came from a file) and every key file on the reload
    /// thread; the new state is swapped in when it is all there. A bad file leaves the running
    /// keys serving. The audit file is reopened (for logrotate) whatever happens.
    func reload() {
        guard case .running(let running) = state else { return }
        running.context.audit?.reopen()
        running.status.reloading()
        logger.info("SIGHUP: reloading \(options.configPath ?? "key files")")
        running.reloader.start(from: running.context.state, listeners: running.listenerNames, waker: running.handles.waker)
    }

    private func finishReload(_ running: Running) {
        guard let (outcome, again) = running.reloader.take() else { return }
        let milliseconds = Double(Posix.monotonicNanoseconds() - outcome.startedAt) / 1e6
        switch outcome.result {
        case .success(let next):
            for warning in next.warnings { logger.warning("\(warning)") }
            running.retiring.append(running.context.replace(next))
            running.context.stats.recordReload(ok: true, location: nil, at: Posix.wallClockMilliseconds())
            running.status.reloadFailure = nil
            logger.info("reloaded: \(StatusReporter.keySummary(next.keyring)) (configuration generation \(next.generation), \(String(format2: milliseconds)) ms)")
        case .failure(let error):
            running.context.stats.recordReload(ok: false, location: error.location, at: Posix.wallClockMilliseconds())
            running.status.reloadFailure = error.location
            logger.error("reload failed; still serving the previous keys and rules: \(error)")
        }
        retire(running)
        if again, case .running = state {
            reload()
        } else {
            running.status.ready(running.status.line(running.context))
            Posix.releaseFileBackedPages()
        }
    }

    // MARK: Drain

    /// Stops accepting, lets every worker answer what it has, then stops.
    func drain(because reason: String) {
        guard case .running(let running) = state else {
            if case .draining = state { logger.notice("\(reason) again while draining; still waiting for in-flight work") }
            return
        }
        state = .draining(running)
        let timeout = running.context.state.configuration.limits.drainTimeout
        logger.info("\(reason): draining: no new connections; answering requests in flight (at most \(timeout) ms)")
        running.status.stopping()
        running.acceptor.stop()
        let deadline = Posix.monotonicNanoseconds() + UInt64(timeout) * 1_000_000
        for worker in running.workers { worker.mailbox.drain(deadline: deadline) }
        // A safety net: workers close everything at the deadline; if one cannot, give up.
        running.handles.startTimer(period: UInt64(timeout) + 5000, repeating: false) { daemon in daemon.drainOverdue() }
        wake()
    }

    private func drainOverdue() {
        logger.critical("drain did not finish in time; exiting with workers still busy")
        Posix.exitImmediately(1)
    }
}

/// The main loop's own handles: SIGTERM, SIGINT and SIGHUP, one async handle the workers and
/// the reloader wake, and one timer.
private final class MainHandles {
    private unowned let owner: Daemon
    private let loop: EventLoop
    private var signals: [UnsafeMutablePointer<uv_signal_t>] = []
    private let async: UnsafeMutablePointer<uv_async_t>
    private let timer: UnsafeMutablePointer<uv_timer_t>
    let waker: LoopWaker
    private(set) var timerPeriod: UInt64 = 1000
    private var timerAction: (Daemon) -> Void = { $0.tick() }
    private var closed = false

    init(loop: EventLoop, owner: Daemon) throws(UVError) {
        self.loop = loop
        self.owner = owner
        async = allocateUV(uv_async_t.self)
        timer = allocateUV(uv_timer_t.self)
        waker = LoopWaker(async)
        let me = Unmanaged.passUnretained(self).toOpaque()
        asHandle(async).pointee.data = me
        asHandle(timer).pointee.data = me
        do {
            try uvCheck(uv_async_init(loop.raw, async) { handle in MainHandles.from(asHandle(handle!)).owner.wake() }, "uv_async_init")
        } catch {
            freeUV(async)
            freeUV(timer)
            throw error
        }
        uv_timer_init(loop.raw, timer)
        for signal in [SIGTERM, SIGINT, SIGHUP] {
            let handle = allocateUV(uv_signal_t.self)
            asHandle(handle).pointee.data = me
            let rc = uv_signal_init(loop.raw, handle)
            guard rc == 0 else {
                freeUV(handle)
                close()
                throw UVError(code: rc, call: "uv_signal_init")
            }
            signals.append(handle)
            let started = uv_signal_start(handle, { handle, signal in MainHandles.from(asHandle(handle!)).owner.handleSignal(signal) }, signal)
            guard started == 0 else {
                close()
                throw UVError(code: started, call: "uv_signal_start")
            }
        }
    }

    private static func from(_ handle: UnsafeMutablePointer<uv_handle_t>) -> MainHandles {
        Unmanaged<MainHandles>.fromOpaque(handle.pointee.data!).takeUnretainedValue()
    }

    func startTimer(period: UInt64, repeating: Bool = true, action: @escaping (Daemon) -> Void = { $0.tick() }) {
        timerPeriod = period
        timerAction = action
        uv_timer_start(timer, { handle in
            let handles = MainHandles.from(asHandle(handle!))
            handles.timerAction(handles.owner)
        }, period, repeating ? period : 0)
    }

    /// Closes every handle; the loop's `uv_run` then returns.
    func close() {
        guard !closed else { return }
        closed = true
        waker.invalidate()
        for handle in signals { closeAndFree(handle) }
        closeAndFree(async)
        closeAndFree(timer)
    }
}
