import SigilPosix
import Synchronization

/// A connection accepted by the acceptor, on its way to a worker loop.
struct IncomingConnection: Sendable {
    let fd: Int32
    let credentials: PeerCredentials
    let listener: ListenerID
    /// The limits it lives under, fixed at accept.
    let limits: ConnectionLimits
}

/// How the acceptor talks to a worker loop.
final class WorkerMailbox: Sendable {
    private struct Inbox {
        var connections: [IncomingConnection] = []
        var drainDeadline: UInt64?
        var closed = false
    }

    private let inbox = Locked(Inbox())
    private let waker = Locked<LoopWaker?>(nil)
    /// Monotonic nanoseconds of the worker's last timer tick: proof its loop is turning.
    private let heartbeat = Atomic<UInt64>(Posix.monotonicNanoseconds())
    private let stopped = Atomic<Bool>(false)

    func beat() {
        heartbeat.store(Posix.monotonicNanoseconds(), ordering: .relaxed)
    }

    func isResponsive(within nanoseconds: UInt64) -> Bool {
        // The beat is read first: a worker beating in between makes it newer than `now`, never older.
        let beat = heartbeat.load(ordering: .relaxed)
        let now = Posix.monotonicNanoseconds()
        return now < beat || now - beat <= nanoseconds
    }

    var isStopped: Bool { stopped.load(ordering: .acquiring) }

    func markStopped() {
        stopped.store(true, ordering: .releasing)
    }

    func attach(_ waker: LoopWaker) {
        self.waker.withLock { $0 = waker }
    }

    /// Hands over a connection. If the worker is gone the descriptor is closed here, and false
    /// returned (the caller releases what it counted for it).
    @discardableResult
    func deliver(_ connection: IncomingConnection) -> Bool {
        let accepted = inbox.withLock { inbox -> Bool in
            guard !inbox.closed else { return false }
            inbox.connections.append(connection)
            return true
        }
        if accepted {
            _ = waker.withLock { $0?.wake() }
        } else {
            Posix.close(connection.fd)
        }
        return accepted
    }

    /// Asks the worker to finish in-flight work and close its connections by `deadline`
    /// (monotonic nanoseconds).
    func drain(deadline: UInt64) {
        inbox.withLock { $0.drainDeadline = deadline }
        _ = waker.withLock { $0?.wake() }
    }

    /// The worker's side: what arrived since last time.
    func take() -> (connections: [IncomingConnection], drainDeadline: UInt64?) {
        inbox.withLock { inbox in
            defer { inbox.connections.removeAll() }
            return (inbox.connections, inbox.drainDeadline)
        }
    }

    /// The worker's side, when it stops: later deliveries are closed by the sender.
    func close() -> [IncomingConnection] {
        inbox.withLock { inbox in
            inbox.closed = true
            defer { inbox.connections.removeAll() }
            return inbox.connections
        }
    }
}
