import Logging
import SigilCore
import SigilPosix

/// One client connection as a state machine, with no I/O: bytes and a clock go in, and what to do
/// comes out (write the output, read or stop reading, run a batch elsewhere, close, and why).
/// `ConnectionDriver` carries that out with libuv; tests drive it directly.
///
/// Input is split into frames, each checked once (`FrameCheck`) and answered by the loop's
/// dispatcher, at most `framesPerTurn` per turn so one flooding client cannot starve the others.
/// Large batches are handed out to run on the thread pool; small requests are answered inline.
/// Replies collect in `output`; the connection is not read, and frames already read are not
/// answered, while more than `maxPendingOutput` bytes wait for a client that does not read them
/// (so one read full of small requests for large replies cannot pile up more than the cap, the
/// reply that crossed it, a connection-fatal reply and the batches in flight).
final class ConnectionEngine {
    enum Phase: Equatable {
        /// Reading and answering.
        case open
        /// The client has finished sending (EOF): answer every whole frame that arrived, then close.
        case halfClosed
        /// Nothing more is read or answered; what is owed is written, then the connection closes.
        case closing(CloseReason)
        /// After a fatal framing error's answer has gone out: our side is shut for writing, and
        /// what the client still sends is read and dropped for a moment before closing. Closing
        /// with unread input would reset the connection, and the client could lose the answer
        /// that says why.
        case lingering(CloseReason)
        /// Done: the driver closes the socket (anything unsent is dropped).
        case closed(CloseReason)

        /// Whether frames that arrived are still answered.
        var answers: Bool { self == .open || self == .halfClosed }
    }

    enum CloseReason: Equatable, Sendable, CustomStringConvertible {
        case peerClosed
        case framing(String)
        case frameTimeout(UInt64)
        case writeTimeout(UInt64)
        case idle
        case drained
        case drainDeadline
        case memoryBudget
        case ioError(String)

        var description: String {
            switch self {
            case .peerClosed: return "the client closed the connection"
            case .framing(let why): return why
            case .frameTimeout(let limit): return "a frame took over \(limit) ms to arrive"
            case .writeTimeout(let limit): return "it has read none of its replies for \(limit) ms"
            case .idle: return "idle"
            case .drained: return "draining, and the connection is quiet"
            case .drainDeadline: return "the drain deadline passed with work pending"
            case .memoryBudget: return "the daemon's buffered-memory budget is exceeded and this connection holds the most unread replies"
            case .ioError(let why): return why
            }
        }
    }

    /// What the driver must do after an event.
    struct Actions: OptionSet {
        let rawValue: UInt8
        /// Write `output` (only set when no earlier write is still queued).
        static let flush = Actions(rawValue: 1)
        /// Whole frames wait: call `continueTurn` after every other connection has had a turn.
        static let continueLater = Actions(rawValue: 2)
        /// Take `takeJobs()` and run them on the thread pool.
        static let offload = Actions(rawValue: 4)
        /// The phase is now `.closed`: close the socket.
        static let close = Actions(rawValue: 8)
        /// The phase is now `.lingering`: shut the socket for writing (and go on reading).
        static let shutdownWrite = Actions(rawValue: 16)
    }

    /// Strong: the services hold no engine, so there is no cycle, and an `unowned` reference
    /// cost an atomic retain and release on every use, several per frame.
    let services: LoopServices
    let limits: ConnectionLimits
    @exclusivity(unchecked) var caller: Caller
    @exclusivity(unchecked) private(set) var decoder: FrameDecoder
    @exclusivity(unchecked) private(set) var output = WireWriter(capacity: 0)
    private(set) var phase: Phase = .open
    /// Bytes handed to an asynchronous write that has not completed.
    private(set) var queuedBytes = 0
    /// Large batches accepted and not yet answered, and the bytes they hold.
    private(set) var inFlight = 0
    private var inFlightBytes = 0
    /// Whole frames wait for this connection's next turn.
    private(set) var backlogged = false
    /// Unsent replies are over `maxPendingOutput`.
    private(set) var backpressured = false
    /// Whole frames wait until the client reads its replies: answering stopped at the
    /// output cap, and resumes (on a scheduled turn) once backpressure lifts.
    private(set) var stalled = false
    private(set) var lastActivity: UInt64
    /// When the current partial frame started to arrive (while we read).
    private(set) var partialSince: UInt64?
    /// When an asynchronous write last made progress (or was queued).
    private(set) var lastWriteProgress: UInt64
    private var jobs: [BatchJob] = []
    /// Bytes reported to the memory ledger (a multiple of its quantum).
    var chargedBytes = 0
    /// Batch item ranges of the frame being handled (reused). Unchecked: only `handle` passes it
    /// inout, and a dynamic exclusivity check on every frame cost more than the rest of it.
    @exclusivity(unchecked) private var items: [Range<Int>] = []
    /// While lingering: since when, and how much was dropped.
    private var lingerSince: UInt64 = 0
    private var discarded = 0
    /// How long, and how much, a lingering connection may still send before it is closed.
    static let lingerMilliseconds: UInt64 = 1000
    static let lingerBytes = 4 << 20

    init(services: LoopServices, caller: Caller, limits: ConnectionLimits, now: UInt64) {
        self.services = services
        self.caller = caller
        self.limits = limits
        decoder = FrameDecoder(maxLength: limits.maxFrameLength, retainedCapacity: ConnectionLimits.retainedBuffer)
        lastActivity = now
        lastWriteProgress = now
    }

    // MARK: Questions the driver asks

    /// Whether the socket should be read now.
    var wantsInput: Bool {
        if case .lingering = phase { return true }
        return phase == .open && !backlogged && !stalled && !backpressured
    }

    var isClosed: Bool { if case .closed = phase { return true } else { return false } }

    var closeReason: CloseReason? {
        switch phase {
        case .closed(let reason), .closing(let reason), .lingering(let reason): return reason
        default: return nil
        }
    }

    /// Nothing owed and nothing arriving.
    var isIdle: Bool {
        inFlight == 0 && queuedBytes == 0 && output.bytes.isEmpty && !decoder.hasPartialFrame && !backlogged && !stalled
    }

    /// Bytes this connection makes the daemon hold: the buffers' capacity (what they occupy,
    /// not just what they hold now), the replies in a queued write and the queued batches.
    var bufferedBytes: Int { decoder.buffer.capacity + output.bytes.capacity + queuedBytes + inFlightBytes }

    /// The client reads nothing: replies are queued in the kernel, or over the cap.
    var isNotReading: Bool { queuedBytes > 0 || backpressured }

    // MARK: Events

    /// Bytes arrived from the client.
    func received(_ bytes: UnsafeRawBufferPointer, now: UInt64) -> Actions {
        if case .lingering(let reason) = phase {
            discarded += bytes.count
            guard discarded > ConnectionEngine.lingerBytes else { return [] }
            phase = .closed(reason)
            return .close
        }
        guard phase == .open else { return [] }
        lastActivity = now
        decoder.append(bytes)
        services.dispatcher.countBytes(in: bytes.count)
        return process(now: now)
    }

    /// The driver started reading again after we paused: a frame left half-read meanwhile starts
    /// its timeout afresh (the time we did not read is not the client's).
    func readingResumed(now: UInt64) {
        if decoder.hasPartialFrame { partialSince = now }
    }

    /// The client will send nothing more.
    func receivedEOF(now: UInt64) -> Actions {
        if case .lingering(let reason) = phase {
            phase = .closed(reason)
            return .close
        }
        guard phase == .open else { return [] }
        phase = .halfClosed
        // The rest of this turn's frames were already handled; a backlog continues on its turns.
        return backlogged || stalled ? [] : finishIfDone(now: now)
    }

    /// The scheduled next turn for a backlog.
    func continueTurn(now: UInt64) -> Actions {
        guard backlogged else { return [] }
        backlogged = false
        switch phase {
        case .open, .halfClosed: return process(now: now)
        default: return finishIfDone(now: now)
        }
    }

    /// The driver wrote `sent` bytes of `output` at once and queued `queued` more (the rest).
    func flushed(sent: Int, queued: Int, now: UInt64) -> Actions {
        precondition(sent + queued == output.bytes.count, "a flush hands over the whole output")
        services.dispatcher.countBytes(out: sent)
        if queued > 0 {
            if queuedBytes == 0 { lastWriteProgress = now }
            queuedBytes += queued
        }
        resetOutput()
        updateBackpressure()
        return resumeIfCaughtUp().union(finishIfDone(now: now))
    }

    /// A queued write completed.
    func wrote(_ count: Int, now: UInt64) -> Actions {
        queuedBytes -= count
        lastWriteProgress = now
        services.dispatcher.countBytes(out: count)
        guard !isClosed else { return [] }
        updateBackpressure()
        var actions = resumeIfCaughtUp().union(finishIfDone(now: now))
        if !isClosed && queuedBytes == 0 && !output.bytes.isEmpty { actions.insert(.flush) }
        return actions
    }

    /// The socket failed (read or write error): close at once.
    func failed(_ why: String) -> Actions {
        abort(.ioError(why))
    }

    /// A batch handed out with `.offload` has been answered.
    func batchFinished(_ job: BatchJob, now: UInt64) -> Actions {
        inFlight -= 1
        inFlightBytes -= job.body.count
        services.dispatcher.recordLatency(job.op, nanoseconds: services.clock() &- job.takenAt)
        guard !isClosed else { return [] }
        if case .closing = phase {
            // Closing for a framing error: nothing more is answered, but the batch is no longer owed.
            return finishIfDone(now: now)
        }
        output.bytes.append(contentsOf: job.reply)
        updateBackpressure()
        var actions = finishIfDone(now: now)
        if !isClosed && queuedBytes == 0 && !output.bytes.isEmpty { actions.insert(.flush) }
        return actions
    }

    /// Hands over the batches to run; the driver calls this after `.offload`.
    func takeJobs() -> [BatchJob] {
        defer { jobs.removeAll(keepingCapacity: true) }
        return jobs
    }

    /// Periodic check (about once a second): timeouts, the drain, and giving back the buffers of
    /// a connection gone quiet.
    func tick(now: UInt64, draining: Bool, pastDrainDeadline: Bool) -> Actions {
        guard !isClosed else { return [] }
        if case .lingering(let reason) = phase {
            guard now >= lingerSince && now - lingerSince >= ConnectionEngine.lingerMilliseconds || draining else { return [] }
            phase = .closed(reason)
            return .close
        }
        if wantsInput, let since = partialSince, now >= since, now - since > limits.frameTimeout {
            return abort(.frameTimeout(limits.frameTimeout))
        }
        if queuedBytes > 0, now >= lastWriteProgress, now - lastWriteProgress > limits.writeTimeout {
            return abort(.writeTimeout(limits.writeTimeout))
        }
        if draining {
            if pastDrainDeadline { return abort(isIdle ? .drained : .drainDeadline) }
            if isIdle && now >= lastActivity && now - lastActivity >= LoopServices.drainQuietMilliseconds { return abort(.drained) }
        }
        if limits.idleTimeout > 0, isIdle, now >= lastActivity, now - lastActivity > limits.idleTimeout {
            return abort(.idle)
        }
        if isIdle, now >= lastActivity, now - lastActivity >= LoopServices.quietMilliseconds {
            // Most of a thousand connections are quiet: they keep no buffers.
            decoder.releaseIdleMemory()
            if output.bytes.capacity > 0 { output = WireWriter(capacity: 0) }
        }
        return []
    }

    /// Closes at once, dropping whatever is unsent.
    @discardableResult
    func abort(_ reason: CloseReason) -> Actions {
        guard !isClosed else { return [] }
        phase = .closed(reason)
        partialSince = nil
        return .close
    }

    // MARK: Frames

    private func process(now: UInt64) -> Actions {
        var actions: Actions = []
        let state = services.state
        caller.refresh(state)
        var handled = 0
        // One clock reading per frame: a frame's end is the next one's start.
        var mark = services.clock()
        // Re-judged on every turn: a turn that finds the replies under the cap answers.
        stalled = false
        var overCap = false
        // Nothing is written during a turn, so only `output` grows.
        let room = limits.maxPendingOutput - queuedBytes
        let keyring = state.keyring
        // Only for a caller that may sign requests: the look-ahead runs before the frame checks,
        // and a caller refused SIGN_REQUEST must not make the daemon look names up.
        let looksAhead = keyring.looksUpByTable && caller.operations.contains(.signRequest)
        while handled < limits.framesPerTurn {
            // Replies past the cap wait for the client to read, and so do the frames that ask
            // for more (a small request can have a large reply).
            if output.bytes.count > room {
                overCap = true
                break
            }
            let next: FrameDecoder.Next
            do {
                next = try decoder.next()
            } catch {
                fatal(error)
                break
            }
            guard case .frame(let header, let bodyRange) = next else { break }
            handled += 1
            if looksAhead { lookAhead(keyring) }
            handle(header, bodyRange, state: state, since: &mark, actions: &actions)
        }
        services.dispatcher.flushCounters()
        if decoder.hasPartialFrame && phase == .open {
            if partialSince == nil { partialSince = now }
        } else {
            partialSince = nil
        }
        if overCap && decoder.hasCompleteFrame && phase.answers {
            stalled = true
        } else if handled == limits.framesPerTurn && decoder.hasCompleteFrame {
            if case .closing = phase {
            } else {
                // More whole frames wait: finish them on a later turn, after every other
                // connection has had one. The client is busy sending, so its replies wait for the
                // rest of the backlog (each write wakes the client, which costs more than a few
                // signatures) until they fill a buffer.
                backlogged = true
                actions.insert(.continueLater)
                if output.bytes.count < ConnectionLimits.deferredOutput {
                    updateBackpressure()
                    return actions
                }
            }
        }
        updateBackpressure()
        actions.formUnion(finishIfDone(now: now))
        if !isClosed && queuedBytes == 0 && !output.bytes.isEmpty { actions.insert(.flush) }
        return actions
    }

    /// With many servers, a SIGN_REQUEST's origin costs two cache misses, the second waiting on
    /// the first: the name's table slot, then the key the slot points to. Pipelined requests are
    /// already here, so while this frame is answered the next two start loading: the key of the
    /// next one and the slot of the one after it. The next one's slot was, as a rule, hinted while
    /// the previous frame was answered; at the start of a read it was not, and the lookup waits
    /// for it here instead of in its own turn. Hints only: nothing is kept, a frame that turns out
    /// malformed is refused when its turn comes, and an origin longer than every server name is
    /// not even hashed (docs/BENCHMARKS.md, "2026-12-04, late").
    private func lookAhead(_ keyring: Keyring) {
        decoder.buffer.withUnsafeBytes { raw in
            for ahead in 0..<2 {
                guard let (header, bodyRange) = decoder.peek(skipping: ahead) else { return }
                guard header.opcode == Opcode.signRequest.rawValue, !header.isBatch,
                    let origin = SignRequestFields.origin(peeking: UnsafeRawBufferPointer(rebasing: raw[bodyRange]))
                else { continue }
                if ahead == 0 { keyring.prefetchKey(forName: origin) } else { keyring.prefetchSlot(forName: origin) }
            }
        }
    }

    /// `since`: when this frame's handling started (the previous frame's end); moved to this
    /// frame's end when its latency is recorded.
    private func handle(_ header: FrameHeader, _ bodyRange: Range<Int>, state: ServingState, since: inout UInt64, actions: inout Actions) {
        let takenAt = since
        decoder.buffer.withUnsafeBytes { raw in
            let body = UnsafeRawBufferPointer(rebasing: raw[bodyRange])
            // The operations as a bit mask and the identity only when refused: passing the whole
            // Caller would copy it (and retain its rules) for every frame.
            let verdict = FrameCheck.check(
                header, body: body, operations: caller.operations, identity: self.caller.identity, maxBatchItems: limits.maxBatchItems,
                items: &items)
            switch verdict {
            case .refused(let status, let message):
                if status == .denied, let op = Opcode(rawValue: header.opcode) {
                    services.dispatcher.refuse(op, message, caller: caller)
                }
                services.dispatcher.fail(status, message, frame: header, listener: caller.listener.index, out: &output)
            case .single(let op):
                if op.isSigning, !takeRateTokens(1, header: header, op: op, state: state) { return }
                services.dispatcher.single(op, frame: header, body: body, caller: &caller, state: state, limits: limits, out: &output)
                since = services.clock()
                services.dispatcher.recordLatency(op, nanoseconds: since &- takenAt)
            case .batch(let op, let count):
                let large = count >= limits.offloadBatchItems
                if large && inFlight >= limits.maxInFlight {
                    services.dispatcher.busy(
                        "\(inFlight) large batches already queued or running on this connection (max_in_flight \(limits.maxInFlight))",
                        frame: header, listener: caller.listener.index, rateLimited: false, out: &output)
                    return
                }
                if op.isSigning, !takeRateTokens(count, header: header, op: op, state: state) { return }
                if large {
                    let job = BatchJob(
                        op: op, frame: header, body: Array(body), items: items, caller: caller, state: state, limits: limits,
                        takenAt: takenAt)
                    inFlight += 1
                    inFlightBytes += job.body.count
                    jobs.append(job)
                    actions.insert(.offload)
                } else {
                    services.dispatcher.batch(
                        op, frame: header, body: body, items: items, caller: &caller, state: state, limits: limits, out: &output)
                    since = services.clock()
                    services.dispatcher.recordLatency(op, nanoseconds: since &- takenAt)
                }
            }
        }
    }

    /// The listener's per-uid limit on signing, checked from the header alone.
    private func takeRateTokens(_ cost: Int, header: FrameHeader, op: Opcode, state: ServingState) -> Bool {
        guard let limit = caller.rateLimit else { return true }
        if services.context.rateLimiter.take(
            cost, listener: caller.listener.index, uid: caller.credentials.uid, limit: limit, now: services.clockMilliseconds())
        {
            return true
        }
        services.dispatcher.busy(
            "rate limit for uid \(caller.credentials.uid) on listener \(caller.listener.name): \(limit.burst) signatures at most, refilled at \(limit.perSecond)/s",
            frame: header, listener: caller.listener.index, rateLimited: true, out: &output)
        return false
    }

    /// A frame whose length cannot be honoured: answer, then close once the answer is out.
    private func fatal(_ error: FrameDecoder.Failure) {
        switch error {
        case .tooLarge(_, _, let header):
            services.dispatcher.fail(
                .frameTooLarge, error.description, opcode: header?.opcode ?? 0, flags: (header?.flags ?? 0) & Wire.flagBatch,
                requestID: header?.requestID ?? 0, listener: caller.listener.index, out: &output)
        case .lengthTooSmall:
            services.dispatcher.fail(
                .badFrame, error.description, opcode: 0, flags: 0, requestID: 0, listener: caller.listener.index, out: &output)
        }
        services.logger.notice("closing connection of \(caller.identity): \(error)")
        phase = .closing(.framing(error.description))
    }

    // MARK: Output and closing

    /// A stalled connection whose client has caught up gets its turns again.
    private func resumeIfCaughtUp() -> Actions {
        guard stalled && !backpressured && !isClosed else { return [] }
        stalled = false
        backlogged = true
        return .continueLater
    }

    private func updateBackpressure() {
        let pending = queuedBytes + output.bytes.count
        if !backpressured && pending > limits.maxPendingOutput {
            backpressured = true
        } else if backpressured && pending <= limits.maxPendingOutput / 2 {
            backpressured = false
        }
    }

    private func resetOutput() {
        // Keep the buffer for the next replies; give back one that grew past a busy
        // connection's usual size.
        if output.bytes.capacity > ConnectionLimits.retainedBuffer {
            output = WireWriter(capacity: 0)
        } else {
            output.bytes.removeAll(keepingCapacity: true)
        }
    }

    /// Closes when a closing or half-closed connection owes nothing more (after a framing error,
    /// lingers first).
    private func finishIfDone(now: UInt64) -> Actions {
        let owesNothing = inFlight == 0 && queuedBytes == 0 && output.bytes.isEmpty && !backlogged && !stalled
        switch phase {
        case .halfClosed where owesNothing && !decoder.hasCompleteFrame:
            phase = .closed(.peerClosed)
            return .close
        case .closing(let reason) where owesNothing:
            if case .framing = reason {
                phase = .lingering(reason)
                lingerSince = now
                discarded = 0
                decoder.releaseAll()
                return .shutdownWrite
            }
            phase = .closed(reason)
            return .close
        default:
            return []
        }
    }
}

extension Opcode {
    /// Operations a rate limit applies to: the ones that produce signatures.
    var isSigning: Bool { self == .signRequest || self == .signJSON || self == .signRaw }
}
