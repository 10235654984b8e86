public import Logging
public import SigilCore
public import SigilPosix

/// The daemon's connection engine with no socket and no loop: bytes in, the bytes a connection
/// would write out. Large batches run inline instead of on the thread pool. For tests, fuzzing
/// and benchmarks of everything between the socket and the keys.
public final class DirectServer {
    private let services: LoopServices
    private let engine: ConnectionEngine
    private var now: UInt64 = 0
    private var written: [UInt8] = []

    /// `credentials` stand in for SO_PEERCRED (by default, this process's own).
    public init(
        state: ServingState, credentials: PeerCredentials = PeerCredentials(pid: Posix.pid, uid: Posix.effectiveUID, gid: Posix.gid),
        listener: String = "direct", logger: Logger = Logger(label: "sigild.direct")
    ) {
        let stats = StatsRegistry(loopCount: 1, listenerNames: [listener], startedAt: Posix.monotonicNanoseconds())
        let context = ServingContext(state: state, stats: stats, daemonVersion: "direct", logger: logger)
        services = LoopServices(index: 0, context: context, logger: logger)
        var caller = Caller(credentials: credentials, listener: ListenerID(index: 0, name: listener))
        caller.refresh(state)
        engine = ConnectionEngine(services: services, caller: caller, limits: ConnectionLimits(state.configuration.limits), now: 0)
    }

    /// Whether the connection would now be closed, or answer nothing more (after a fatal framing
    /// error it lingers, dropping input, before it closes).
    public var isClosed: Bool {
        switch engine.phase {
        case .closed, .lingering: return true
        default: return false
        }
    }

    /// Feeds bytes as one read; returns everything the connection writes in answer (including
    /// replies to frames left for later turns, which run here at once).
    public func handle(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        written.removeAll(keepingCapacity: true)
        carryOut(engine.received(bytes, now: now))
        return written
    }

    /// The allocation-light form for benchmarks: replies are appended to `out`.
    public func handle(_ bytes: UnsafeRawBufferPointer, into out: inout WireWriter) {
        carryOut(engine.received(bytes, now: now))
        out.bytes.append(contentsOf: written)
        written.removeAll(keepingCapacity: true)
    }

    /// The client closed its side; returns what is still written.
    public func finish() -> [UInt8] {
        written.removeAll(keepingCapacity: true)
        carryOut(engine.receivedEOF(now: now))
        return written
    }

    /// Moves the clock on (milliseconds) and runs the periodic checks.
    public func advance(milliseconds: UInt64) {
        now += milliseconds
        carryOut(engine.tick(now: now, draining: false, pastDrainDeadline: false))
    }

    private func carryOut(_ first: ConnectionEngine.Actions) {
        var actions = first
        while !engine.isClosed {
            if actions.contains(.offload) {
                for job in engine.takeJobs() {
                    job.run(context: services.context, counters: services.counters, logger: services.logger, loop: 0)
                    actions.formUnion(engine.batchFinished(job, now: now))
                }
                actions.remove(.offload)
            }
            if !engine.output.bytes.isEmpty && engine.queuedBytes == 0 {
                written.append(contentsOf: engine.output.bytes)
                actions = actions.union(engine.flushed(sent: engine.output.bytes.count, queued: 0, now: now))
            }
            if actions.contains(.continueLater) {
                actions.remove(.continueLater)
                actions.formUnion(engine.continueTurn(now: now))
                continue
            }
            if !actions.contains(.offload) && (engine.output.bytes.isEmpty || engine.queuedBytes > 0) { break }
        }
        if engine.isClosed && !engine.output.bytes.isEmpty {
            // A fatal framing error's answer goes out before the close.
            written.append(contentsOf: engine.output.bytes)
        }
    }
}
