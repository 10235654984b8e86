internal import CLibUV
public import Logging
import SigilCore
import SigilPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `sigild`: loads keys, opens listeners, runs one worker loop per core and an acceptor loop on
/// the calling thread, and lives until SIGTERM or SIGINT drains it.
public final class Daemon {
    public enum State: String, Sendable {
        case initial, starting, running, draining, stopped
    }

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

    public private(set) var state: State = .initial {
        didSet { logger.debug("state \(oldValue.rawValue) -> \(state.rawValue)") }
    }

    private let options: Options
    private let logger: Logger
    private let notifier = SystemdNotifier()
    private var context: ServingContext!
    private var loop: EventLoop!
    private var listeners: [Listener] = []
    private var workers: [(mailbox: WorkerMailbox, thread: PosixThread)] = []
    private let stoppedWorkers = Atomic<Int>(0)
    private var handles: [UnsafeMutablePointer<uv_handle_t>] = []
    private var workerAsync: UnsafeMutablePointer<uv_async_t>!
    private var workerWaker: LoopWaker!
    private var statusTimer: UnsafeMutablePointer<uv_timer_t>!
    private var reserveFD: Int32 = -1
    private var nextWorker = 0
    private var lastRefusalLog: UInt64 = 0
    private var lastStatusRequests: UInt64 = 0
    private var lastStatusAt: UInt64 = 0
    private var exitCode: Int32 = 0
    /// Set while the latest SIGHUP failed: systemd's status line says so until a reload works.
    private var reloadFailure: String?
    private var roundRobin: Int { defer { nextWorker += 1 }; return nextWorker % workers.count }

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until drained. Returns the process exit status.
    public func run() -> Int32 {
        precondition(state == .initial, "a daemon runs once")
        state = .starting
        let startedAt = Posix.monotonicNanoseconds()
        ProcessHardening.apply(logger: logger)
        let inherited: [SystemdActivation.InheritedSocket]
        do {
            inherited = try SystemdActivation.takeListenSockets()
        } catch {
            return fail("cannot take systemd's sockets: \(error)")
        }
        let configuration = options.configuration
        let serving: ServingState
        do {
            serving = try ServingState.load(configuration, generation: 1)
        } catch {
            return fail("cannot load keys: \(error)")
        }
        for warning in serving.warnings { logger.warning("\(warning)") }
        do {
            listeners = try Listener.open(configuration, inherited: inherited, logger: logger)
        } catch {
            return fail("\(error)")
        }
        let workerCount = configuration.workers > 0 ? configuration.workers : Posix.cpuCount
        context = ServingContext(
            state: serving, stats: StatsRegistry(loopCount: workerCount, startedAt: startedAt), daemonVersion: options.version,
            logger: logger)
        do {
            loop = try EventLoop()
            try setUpMainLoop()
            try startWorkers(workerCount)
        } catch {
            closeMainHandles()
            loop.run()
            return fail("cannot start: \(error)")
        }
        reserveFD = (try? Posix.open("/dev/null", flags: O_RDONLY)) ?? -1
        for listener in listeners { startAccepting(listener) }
        state = .running
        let elapsed = Double(Posix.monotonicNanoseconds() - startedAt) / 1e6
        logger.info(
            "ready in \(String(format2: elapsed)) ms: \(serving.keyring.keyCount) key(s) for \(serving.keyring.serverNames.joined(separator: ", ")); \(workerCount) event loop(s); listening on \(listeners.map { "\($0.name)=\($0.origin)" }.joined(separator: ", "))"
        )
        notifier.ready(status: statusLine())
        Posix.releaseFileBackedPages()
        loop.run()
        for worker in workers { worker.thread.join() }
        loop = nil
        if reserveFD >= 0 { Posix.close(reserveFD) }
        state = .stopped
        logger.info("stopped")
        return exitCode
    }

    private func fail(_ message: String) -> Int32 {
        logger.critical("\(message)")
        for listener in listeners { listener.close() }
        listeners = []
        state = .stopped
        return 1
    }

    // MARK: Main loop

    private func setUpMainLoop() throws(UVError) {
        let me = Unmanaged.passUnretained(self).toOpaque()
        for signal in [SIGTERM, SIGINT, SIGHUP] {
            let handle = allocateUV(uv_signal_t.self)
            try uvCheck(uv_signal_init(loop.raw, handle), "uv_signal_init")
            asHandle(handle).pointee.data = me
            try uvCheck(
                uv_signal_start(
                    handle,
                    { handle, signal in
                        Daemon.from(asHandle(handle!)).handleSignal(signal)
                    }, signal), "uv_signal_start")
            handles.append(asHandle(handle))
        }
        workerAsync = allocateUV(uv_async_t.self)
        try uvCheck(
            uv_async_init(loop.raw, workerAsync) { handle in
                Daemon.from(asHandle(handle!)).checkWorkers()
            }, "uv_async_init")
        asHandle(workerAsync).pointee.data = me
        handles.append(asHandle(workerAsync))
        workerWaker = LoopWaker(workerAsync)
        statusTimer = allocateUV(uv_timer_t.self)
        try uvCheck(uv_timer_init(loop.raw, statusTimer), "uv_timer_init")
        asHandle(statusTimer).pointee.data = me
        handles.append(asHandle(statusTimer))
        // Status every 10 s; keep-alives at half the watchdog period when systemd asks for them.
        let interval = min(10_000, notifier.watchdogInterval.map { max(1, $0 / 1000) } ?? 10_000)
        lastStatusAt = Posix.monotonicNanoseconds()
        uv_timer_start(statusTimer, { handle in Daemon.from(asHandle(handle!)).tick() }, interval, interval)
    }

    private static func from(_ handle: UnsafeMutablePointer<uv_handle_t>) -> Daemon {
        Unmanaged<Daemon>.fromOpaque(handle.pointee.data!).takeUnretainedValue()
    }

    private func closeMainHandles() {
        workerWaker?.invalidate()
        for handle in handles where uv_is_closing(handle) == 0 {
            uv_close(handle) { UnsafeMutableRawPointer($0!).deallocate() }
        }
        handles = []
        for listener in listeners {
            if let poll = listener.poll { closeAndFree(poll) }
            listener.poll = nil
            listener.close()
        }
        listeners = []
    }

    private func startWorkers(_ count: Int) throws {
        let context = self.context!
        let waker = workerWaker!
        for index in 0..<count {
            let mailbox = WorkerMailbox()
            let ready = Mutex<Result<Void, LoadError>?>(nil)
            let thread = try PosixThread(name: "sigild-loop-\(index)") {
                let worker: WorkerLoop
                do {
                    worker = try WorkerLoop(index: index, context: context, mailbox: mailbox) { waker.wake() }
                } catch {
                    let failure = LoadError("event loop \(index): \(error)")
                    ready.withLock { $0 = .failure(failure) }
                    return
                }
                ready.withLock { $0 = .success(()) }
                worker.run()
            }
            // Wait for the loop to exist (microseconds), so a failure stops the start cleanly.
            while true {
                if let result = ready.withLock({ $0 }) {
                    try result.get()
                    break
                }
                sched_yield()
            }
            workers.append((mailbox, thread))
        }
    }

    // MARK: Accepting

    private func startAccepting(_ listener: Listener) {
        let poll = allocateUV(uv_poll_t.self)
        let rc = uv_poll_init(loop.raw, poll, listener.fd)
        guard rc == 0 else {
            freeUV(poll)
            logger.error("cannot watch listener \(listener.name): \(UVError(code: rc, call: "uv_poll_init"))")
            return
        }
        asHandle(poll).pointee.data = Unmanaged.passUnretained(listener).toOpaque()
        listener.poll = poll
        listener.onReadable = { [unowned self] listener, status in self.acceptPending(on: listener, status: status) }
        uv_poll_start(poll, Int32(UV_READABLE.rawValue)) { poll, status, _ in
            let listener = Unmanaged<Listener>.fromOpaque(asHandle(poll!).pointee.data!).takeUnretainedValue()
            listener.onReadable?(listener, status)
        }
    }

    private func acceptPending(on listener: Listener, status: Int32) {
        guard state == .running else { return }
        let limits = context.state.configuration.limits
        // Bounded per wakeup, so the loop stays responsive to signals under a connection storm.
        for _ in 0..<128 {
            let fd: Int32
            do {
                guard let accepted = try Posix.accept(listener.fd) else { return }
                fd = accepted
            } catch {
                handleAcceptError(error, listener: listener)
                return
            }
            let credentials: PeerCredentials
            do {
                credentials = try Posix.peerCredentials(fd)
            } catch {
                Posix.close(fd)
                continue
            }
            if context.openConnections.load(ordering: .relaxed) >= limits.maxConnections {
                Posix.close(fd)
                context.stats.recordRefusedConnection()
                let now = loop.now
                if now - lastRefusalLog > 10_000 || lastRefusalLog == 0 {
                    lastRefusalLog = now
                    logger.warning("refusing connections: \(limits.maxConnections) already open (limits.max_connections); latest from uid \(credentials.uid) pid \(credentials.pid)")
                }
                continue
            }
            context.openConnections.add(1, ordering: .relaxed)
            workers[roundRobin].mailbox.deliver(IncomingConnection(fd: fd, credentials: credentials, listener: listener.name))
        }
    }

    /// Out of descriptors: accept and drop one connection using the reserve descriptor, so the
    /// listener does not stay readable and spin the loop, and so the client is told at once.
    private func handleAcceptError(_ error: PosixError, listener: Listener) {
        if error.errno == EMFILE || error.errno == ENFILE {
            if reserveFD >= 0 {
                Posix.close(reserveFD)
                reserveFD = -1
                if let fd = try? Posix.accept(listener.fd) { Posix.close(fd) }
                reserveFD = (try? Posix.open("/dev/null", flags: O_RDONLY)) ?? -1
            }
            context.stats.recordRefusedConnection()
            let now = loop.now
            if now - lastRefusalLog > 10_000 || lastRefusalLog == 0 {
                lastRefusalLog = now
                logger.error("out of file descriptors (\(error)); dropping new connections (raise LimitNOFILE= or lower limits.max_connections)")
            }
        } else {
            logger.error("accept on \(listener.name) failed: \(error)")
        }
    }

    // MARK: Signals

    private func handleSignal(_ signal: Int32) {
        switch signal {
        case SIGHUP: reload()
        case SIGTERM: drain(because: "SIGTERM")
        case SIGINT: drain(because: "SIGINT")
        default: break
        }
    }

    /// Re-reads the configuration (if it came from a file) and every key file, and swaps the new
    /// keyring in only if all of it loads. A bad file leaves the running keys serving.
    func reload() {
        guard state == .running else { return }
        notifier.reloading()
        let current = context.state
        logger.info("SIGHUP: reloading \(options.configPath ?? "key files")")
        do {
            var configuration = options.configuration
            if let path = options.configPath {
                do {
                    configuration = try ConfigLoader.load(path: path)
                } catch {
                    throw LoadError(error.description)
                }
                try checkReloadable(configuration, against: current.configuration, path: path)
            }
            let next = try ServingState.load(configuration, generation: current.generation + 1)
            for warning in next.warnings { logger.warning("\(warning)") }
            context.replace(next)
            context.stats.recordReload(error: nil)
            reloadFailure = nil
            let ids = next.keyring.servers.map { "\($0.serverName): \($0.activeKeys.map(\.id.description).joined(separator: ", "))" }
            logger.info("reloaded: \(ids.joined(separator: "; "))")
        } catch {
            context.stats.recordReload(error: "\(error)")
            reloadFailure = "\(error)"
            logger.error("reload failed; still serving the previous keys and rules: \(error)")
        }
        notifier.ready(status: statusLine())
        Posix.releaseFileBackedPages()
    }

    /// What a reload cannot change, since the sockets and loops stay. A listener that serves a
    /// socket must keep an entry (its rules would otherwise silently fall back to the top-level
    /// ones): removing or renaming one refuses the whole reload. Other listener, `workers` and
    /// `log_level` changes are reported as waiting for a restart.
    private func checkReloadable(_ next: Configuration, against current: Configuration, path: String) throws(LoadError) {
        let configured = Set(current.listeners.map(\.name))
        let kept = Set(next.listeners.map(\.name))
        for name in listeners.map(\.name) where configured.contains(name) && !kept.contains(name) {
            throw LoadError("\(path): listener '\(name)' serves a socket but is not in the new configuration; removing or renaming a listener needs a restart")
        }
        let addressesChanged = next.listeners.contains { listener in
            current.listeners.first { $0.name == listener.name }.map { $0.path != listener.path || $0.fd != listener.fd || $0.mode != listener.mode } ?? true
        }
        if addressesChanged {
            logger.warning("\(path): new listeners or socket addresses take effect after a restart; the current sockets stay")
        }
        if next.workers != current.workers { logger.warning("\(path): 'workers' takes effect after a restart") }
        if next.logLevel != current.logLevel { logger.warning("\(path): 'log_level' takes effect after a restart") }
    }

    /// Stops accepting, lets every worker answer what it has, then stops.
    func drain(because reason: String) {
        guard state == .running || state == .starting else {
            if state == .draining { logger.notice("\(reason) again while draining; still waiting for in-flight work") }
            return
        }
        state = .draining
        let timeout = context.state.configuration.limits.drainTimeout
        logger.info("\(reason): draining: no new connections; answering requests in flight (at most \(timeout) ms)")
        notifier.stopping()
        for listener in listeners {
            if let poll = listener.poll { closeAndFree(poll) }
            listener.poll = nil
            listener.onReadable = nil
            listener.close()
        }
        listeners = []
        let deadline = Posix.monotonicNanoseconds() + UInt64(timeout) * 1_000_000
        for worker in workers { worker.mailbox.drain(deadline: deadline) }
        // A safety net: workers close everything at the deadline; if one cannot, give up.
        uv_timer_start(statusTimer, { handle in Daemon.from(asHandle(handle!)).drainOverdue() }, UInt64(timeout) + 5000, 0)
        checkWorkers()
    }

    private func drainOverdue() {
        logger.critical("drain did not finish in time; exiting with workers still busy")
        exit(1)
    }

    private func checkWorkers() {
        guard state == .draining else { return }
        if workers.allSatisfy({ $0.mailbox.isStopped }) { closeMainHandles() }
    }

    // MARK: Status and watchdog

    private func tick() {
        guard state == .running else { return }
        notifier.status(statusLine())
        if notifier.watchdogInterval != nil && workers.allSatisfy({ $0.mailbox.isResponsive(within: 5_000_000_000) }) {
            notifier.watchdog()
        }
    }

    private func statusLine() -> String {
        let state = context.state
        let totals = context.stats.totals()
        let now = Posix.monotonicNanoseconds()
        let seconds = Double(now - lastStatusAt) / 1e9
        let rate = seconds > 0 ? Double(totals.allRequests - lastStatusRequests) / seconds : 0
        lastStatusAt = now
        lastStatusRequests = totals.allRequests
        let summary = "\(state.keyring.keyCount) key(s) for \(state.keyring.serverNames.joined(separator: ", ")); \(totals.connectionsOpen) connection(s); \(String(format2: rate)) requests/s"
        guard let reloadFailure else { return summary }
        // One line: systemd shows STATUS= in `systemctl status`; keep it short.
        return "RELOAD FAILED, serving the previous keys (\(reloadFailure.prefix(120))); " + summary
    }
}

extension String {
    /// Two decimals, without Foundation.
    init(format2 value: Double) {
        let scaled = Int((value * 100).rounded())
        let whole = scaled / 100
        let fraction = abs(scaled % 100)
        self = "\(whole).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
