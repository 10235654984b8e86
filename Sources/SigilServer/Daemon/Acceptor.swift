internal import CLibUV
import Logging
import SigilCore
import SigilPosix

#if canImport(Glibc)
import Glibc
#endif

/// Accepts connections on the main loop and hands them to the worker loops, after the checks
/// that cost a hostile caller its connection before it costs us anything: a caller no rule of
/// the listener can match is refused at once, and the caps (daemon, listener, uid on the
/// listener, with each listener's reserve) are checked before a worker sees the connection.
final class Acceptor {
    private let loop: EventLoop
    private let context: ServingContext
    private let listeners: [Listener]
    private let mailboxes: [WorkerMailbox]
    private let logger: Logger
    private var nextWorker = 0
    /// A descriptor kept open so that, out of descriptors, one can be freed to accept and drop
    /// a waiting connection (otherwise the listener stays readable and the loop spins).
    private var reserveFD: Int32 = -1
    /// Set while accepting is paused because descriptors ran out and the reserve could not be
    /// had back: a timer retries, backing off.
    private var retryTimer: UnsafeMutablePointer<uv_timer_t>?
    private var retryDelay: UInt64 = 0
    private var stopped = false
    private var lastDescriptorWarning: UInt64?
    private var capsGeneration: UInt64 = .max
    private var caps = ConnectionLedger.Caps(total: 0, perListener: [], perUID: [], reserved: [])

    init(loop: EventLoop, context: ServingContext, listeners: [Listener], mailboxes: [WorkerMailbox], logger: Logger) {
        self.loop = loop
        self.context = context
        self.listeners = listeners
        self.mailboxes = mailboxes
        self.logger = logger
        reserveFD = (try? Posix.open("/dev/null", flags: O_RDONLY)) ?? -1
        if reserveFD < 0 {
            logger.warning("no spare descriptor could be opened (RLIMIT_NOFILE is too low): out of descriptors, accepting will pause on a timer")
        }
    }

    func start() {
        for listener in listeners { watch(listener) }
    }

    /// Stops accepting for good and closes the listening sockets.
    func stop() {
        stopped = true
        for listener in listeners {
            unwatch(listener)
            listener.close()
        }
        if let retryTimer {
            closeAndFree(retryTimer)
            self.retryTimer = nil
        }
        if reserveFD >= 0 {
            Posix.close(reserveFD)
            reserveFD = -1
        }
    }

    private func watch(_ listener: Listener) {
        guard listener.poll == nil else { return }
        let poll = allocateUV(uv_poll_t.self)
        let rc = uv_poll_init(loop.raw, poll, listener.fd)
        guard rc == 0 else {
            freeUV(poll)
            logger.error("cannot watch listener \(listener.name): \(UVError(code: rc, call: "uv_poll_init"))")
            return
        }
        listener.poll = poll
        // The callback needs both the acceptor and which listener fired.
        asHandle(poll).pointee.data = Unmanaged.passRetained(PollContext(acceptor: self, listener: listener.id.index)).toOpaque()
        uv_poll_start(poll, Int32(UV_READABLE.rawValue)) { poll, _, _ in
            let context = Unmanaged<PollContext>.fromOpaque(asHandle(poll!).pointee.data!).takeUnretainedValue()
            context.acceptor.acceptPending(on: context.acceptor.listeners[context.listener])
        }
    }

    private func unwatch(_ listener: Listener) {
        guard let poll = listener.poll else { return }
        if let data = asHandle(poll).pointee.data { Unmanaged<PollContext>.fromOpaque(data).release() }
        asHandle(poll).pointee.data = nil
        closeAndFree(poll)
        listener.poll = nil
    }

    private func acceptPending(on listener: Listener) {
        guard !stopped else { return }
        let state = context.state
        refreshCaps(state)
        let now = loop.now
        // Bounded per wakeup, so the loop stays responsive to signals under a connection storm.
        for _ in 0..<128 {
            let fd: Int32
            do {
                guard let accepted = try Posix.accept(listener.fd) else { return }
                fd = accepted
            } catch {
                acceptFailed(error, listener: listener)
                return
            }
            let credentials: PeerCredentials
            do {
                credentials = try Posix.peerCredentials(fd)
            } catch {
                Posix.close(fd)
                continue
            }
            guard state.rules(forListener: listener.name).contains(where: { $0.matches(credentials) }) else {
                refuse(fd, .denied, "no access rule of listener \(listener.name) matches uid \(credentials.uid) gid \(credentials.gid)")
                context.stats.recordRefusedConnection(listener: listener.id.index)
                context.refusals.refuse(
                    listener: listener.id.index, uid: credentials.uid, kind: "connection", now: now,
                    "refused a connection on listener \(listener.name) from uid \(credentials.uid) gid \(credentials.gid) pid \(credentials.pid): no access rule of the listener matches it")
                continue
            }
            if let refusal = context.connections.admit(listener: listener.id.index, uid: credentials.uid, caps: caps) {
                refuse(fd, .busy, "connection refused: \(refusal)")
                context.stats.recordRefusedConnection(listener: listener.id.index)
                context.refusals.refuse(
                    listener: listener.id.index, uid: credentials.uid, kind: "connection", now: now,
                    "refused a connection on listener \(listener.name) from uid \(credentials.uid) pid \(credentials.pid): \(refusal)")
                continue
            }
            let incoming = IncomingConnection(fd: fd, credentials: credentials, listener: listener.id, limits: ConnectionLimits(state.configuration.limits))
            let worker = mailboxes[nextWorker % mailboxes.count]
            nextWorker &+= 1
            if !worker.deliver(incoming) {
                context.connections.release(listener: listener.id.index, uid: credentials.uid)
            }
        }
    }

    /// Tells a refused caller why, then closes: one frame (request ID 0, opcode 0) it can read
    /// before EOF, so that "sigild said no" is not mistaken for "sigild is not there". Best
    /// effort and never blocking; whatever the caller already sent is drained first, so the
    /// close does not reset the connection and lose the frame.
    private func refuse(_ fd: Int32, _ status: WireStatus, _ message: String) {
        var frame = WireWriter(capacity: 64 + message.utf8.count)
        Dispatcher.writeFailure(status, message, opcode: 0, flags: 0, requestID: 0, out: &frame)
        _ = frame.bytes.withUnsafeBytes { try? Posix.send(fd, $0) }
        Posix.shutdownWrite(fd)
        var scratch = [UInt8](repeating: 0, count: 4096)
        _ = scratch.withUnsafeMutableBytes { try? Posix.recv(fd, into: $0) }
        Posix.close(fd)
    }

    /// The caps as the current configuration sets them (recomputed when it changes).
    private func refreshCaps(_ state: ServingState) {
        guard state.generation != capsGeneration else { return }
        capsGeneration = state.generation
        let limits = state.configuration.limits
        caps = ConnectionLedger.Caps(
            total: limits.maxConnections,
            perListener: listeners.map { listener in
                state.configuration.listeners.first { $0.name == listener.name }?.maxConnections ?? limits.maxConnections
            },
            perUID: listeners.map { listener in
                state.configuration.listeners.first { $0.name == listener.name }?.maxConnectionsPerUID ?? limits.maxConnectionsPerUID
            },
            reserved: listeners.map { state.configuration.reservedConnections(for: $0.name) })
    }

    /// Out of descriptors: use the reserve descriptor to accept and drop one connection, so the
    /// client is told at once and the listener does not stay readable. If the reserve cannot be
    /// had back, stop watching the listeners and retry on a timer, backing off, instead of
    /// spinning.
    private func acceptFailed(_ error: PosixError, listener: Listener) {
        guard error.errno == EMFILE || error.errno == ENFILE else {
            logger.error("accept on \(listener.name) failed: \(error)")
            return
        }
        context.stats.recordRefusedConnection(listener: listener.id.index)
        let now = loop.now
        if lastDescriptorWarning == nil || now - lastDescriptorWarning! >= 10_000 {
            lastDescriptorWarning = now
            logger.error("out of file descriptors (\(error)); dropping new connections (raise LimitNOFILE= or lower limits.max_connections)")
        }
        if reserveFD >= 0 {
            Posix.close(reserveFD)
            reserveFD = -1
            if let fd = try? Posix.accept(listener.fd) { Posix.close(fd) }
            reserveFD = (try? Posix.open("/dev/null", flags: O_RDONLY)) ?? -1
        }
        if reserveFD < 0 { pauseAccepting() }
    }

    private func pauseAccepting() {
        for listener in listeners { unwatch(listener) }
        retryDelay = min(max(retryDelay * 2, 50), 1000)
        if retryTimer == nil {
            let timer = allocateUV(uv_timer_t.self)
            uv_timer_init(loop.raw, timer)
            asHandle(timer).pointee.data = Unmanaged.passUnretained(self).toOpaque()
            retryTimer = timer
        }
        logger.warning("out of file descriptors: not accepting for \(retryDelay) ms")
        uv_timer_start(retryTimer!, { timer in
            Unmanaged<Acceptor>.fromOpaque(asHandle(timer!).pointee.data!).takeUnretainedValue().retryAccepting()
        }, retryDelay, 0)
    }

    private func retryAccepting() {
        guard !stopped else { return }
        if reserveFD < 0 { reserveFD = (try? Posix.open("/dev/null", flags: O_RDONLY)) ?? -1 }
        guard reserveFD >= 0 else {
            pauseAccepting()
            return
        }
        retryDelay = 0
        logger.notice("file descriptors available again: accepting")
        for listener in listeners { watch(listener) }
    }
}

/// What a listener's poll callback needs.
private final class PollContext {
    unowned let acceptor: Acceptor
    let listener: Int

    init(acceptor: Acceptor, listener: Int) {
        self.acceptor = acceptor
        self.listener = listener
    }
}
