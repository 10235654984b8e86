import Logging
import SigilCore
import SigilPosix
import SigilTestSupport

@testable import SigilServer

/// A connection engine with no socket: the test plays the kernel (how much of each write is
/// taken), the clock and the thread pool (when queued batches run).
final class EngineHarness {
    let directory = TemporaryDirectory()
    let state: ServingState
    let context: ServingContext
    let services: LoopServices
    let engine: ConnectionEngine
    /// Milliseconds, as the loop's clock.
    var now: UInt64 = 1000
    /// Nanoseconds, for latency figures.
    var nanoseconds: UInt64 = 1_000_000_000
    /// Bytes the "kernel" took.
    var written: [UInt8] = []
    /// Whether writes are taken (a client that reads) or queued (one that does not).
    var clientReads = true
    /// Bytes in a queued write, not yet completed.
    var queued = 0
    /// Batches handed out and not yet run.
    var pendingJobs: [BatchJob] = []
    var lastActions: ConnectionEngine.Actions = []
    var wantsMoreTurns = false

    /// `yaml`: extra top-level configuration (limits, access); the server `domain` holds the
    /// spec key. Each of `servers` has a key of its own, `ed25519:k<n>` for the n-th (its seed is
    /// 32 bytes of n + 1: a test fixture).
    init(
        limits: String = "", access: String = "", uid: UInt32 = Posix.effectiveUID, listener: String = "main", servers: [String] = []
    ) throws {
        let key = directory.write("spec.key", TestKeys.specSynapseFile)
        let directory = directory
        let more = servers.enumerated().map { n, name in
            let file = directory.write(
                "test-fixture-\(n).key", "ed25519 k\(n) \(Base64.encode([UInt8](repeating: UInt8(n + 1), count: 32)))\n")
            return "  \(name):\n    keys: [\(file)]\n"
        }.joined()
        let text = """
            listen:
              - name: main
                path: \(directory.file("s.sock"))
            servers:
              domain:
                keys: [\(key)]
            \(more)memory_lock: warn
            \(access.isEmpty ? "" : "access:\n" + access)
            \(limits.isEmpty ? "" : "limits:\n" + limits)
            """
        let configuration = try ConfigLoader.parse(text, path: "test.yaml")
        state = try ServingState.load(configuration, generation: 1)
        let logger = Logger(label: "engine-test")
        context = ServingContext(
            state: state, stats: StatsRegistry(loopCount: 1, listenerNames: [listener], startedAt: 0), daemonVersion: "test", logger: logger
        )
        var clockSource: () -> UInt64 = { 0 }
        services = LoopServices(index: 0, context: context, logger: logger, clock: { clockSource() })
        var caller = Caller(credentials: PeerCredentials(pid: 4242, uid: uid, gid: uid), listener: ListenerID(index: 0, name: listener))
        caller.refresh(state)
        engine = ConnectionEngine(services: services, caller: caller, limits: ConnectionLimits(configuration.limits), now: now)
        clockSource = { [unowned self] in self.nanoseconds }
    }

    // MARK: Events

    @discardableResult
    func send(_ bytes: [UInt8]) -> ConnectionEngine.Actions {
        bytes.withUnsafeBytes { carryOut(engine.received($0, now: now)) }
    }

    @discardableResult
    func send(_ request: Request, id: UInt32) -> ConnectionEngine.Actions {
        send(frameBytes(request, id: id))
    }

    @discardableResult
    func endOfInput() -> ConnectionEngine.Actions {
        carryOut(engine.receivedEOF(now: now))
    }

    /// Lets time pass and runs the periodic check.
    @discardableResult
    func advance(_ milliseconds: UInt64, draining: Bool = false) -> ConnectionEngine.Actions {
        now += milliseconds
        nanoseconds += milliseconds * 1_000_000
        return carryOut(engine.tick(now: now, draining: draining, pastDrainDeadline: false))
    }

    /// Runs the next turn of a backlog (the loop does this after other connections' turns).
    @discardableResult
    func nextTurn() -> ConnectionEngine.Actions {
        wantsMoreTurns = false
        return carryOut(engine.continueTurn(now: now))
    }

    /// Runs the queued batches (as the thread pool would) and delivers their answers.
    func runJobs() {
        let jobs = pendingJobs
        pendingJobs = []
        for job in jobs {
            job.run(context: context, counters: services.counters, logger: services.logger, loop: 0)
            carryOut(engine.batchFinished(job, now: now))
        }
    }

    /// The client reads: a queued write completes.
    func clientDrains() {
        clientReads = true
        let count = queued
        queued = 0
        carryOut(engine.wrote(count, now: now))
    }

    @discardableResult
    private func carryOut(_ actions: ConnectionEngine.Actions) -> ConnectionEngine.Actions {
        lastActions = actions
        if actions.contains(.offload) { pendingJobs += engine.takeJobs() }
        if actions.contains(.continueLater) { wantsMoreTurns = true }
        if actions.contains(.flush) { flush() }
        return actions
    }

    private func flush() {
        let bytes = engine.output.bytes
        guard !bytes.isEmpty, engine.queuedBytes == 0 else { return }
        if clientReads {
            written += bytes
            carryOut(engine.flushed(sent: bytes.count, queued: 0, now: now))
        } else {
            queued = bytes.count
            written += bytes
            carryOut(engine.flushed(sent: 0, queued: bytes.count, now: now))
        }
    }

    // MARK: Reading what was written

    /// Every whole response frame written so far, taken out of `written`.
    func responses() throws -> [(header: FrameHeader, body: [UInt8])] {
        var decoder = FrameDecoder(maxLength: 16 << 20)
        decoder.append(written)
        var frames: [(FrameHeader, [UInt8])] = []
        var consumed = 0
        while case .frame(let header, let range) = try decoder.next() {
            frames.append((header, Array(decoder.buffer[range])))
            consumed = range.upperBound
        }
        written.removeFirst(consumed)
        return frames
    }

    /// The single response to a request, decoded.
    func answer(_ request: Request, id: UInt32) throws -> [Result<Response, WireFailure>] {
        send(request, id: id)
        runJobs()
        let frames = try responses()
        guard frames.count == 1, let frame = frames.first else { throw FixtureError("expected one response, got \(frames.count)") }
        guard frame.header.requestID == id else { throw FixtureError("response for \(frame.header.requestID), not \(id)") }
        return try frame.body.withUnsafeBytes { try decodeResponseFrame(frame.header, body: $0) }
    }
}

/// A SIGN_REQUEST for the spec key's server.
func signRequest(_ uri: String = "/_matrix/federation/v1/media/download/abc", origin: String = "domain", method: String = "GET") -> Request
{
    .signRequest(SignRequestParams(origin: origin, destination: "example.org", method: method, uri: uri))
}

/// A batch frame of `count` copies of `request`.
func batchFrame(_ request: Request, count: Int, id: UInt32) -> [UInt8] {
    var writer = WireWriter()
    Request.encodeBatch(Array(repeating: request, count: count), requestID: id, into: &writer)
    return writer.bytes
}
