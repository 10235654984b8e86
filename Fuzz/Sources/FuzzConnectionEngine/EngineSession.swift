import FuzzSupport
import SigilCore
import SigilPosix

@testable import SigilServer

/// One connection driven as `ConnectionDriver` drives it, with the input playing the client,
/// the kernel (how much of a write it takes at once), the clock and the thread pool (which
/// queued batch finishes when). Every response frame is checked as it is handed to the kernel.
final class EngineSession {
    let setup: EngineSetup
    let services: LoopServices
    let engine: ConnectionEngine
    var now: UInt64 = 1_000
    /// Bytes the kernel takes at once before a write has to be queued.
    var kernelSpace = Int.max
    /// Bytes in the queued write, not yet completed.
    var queued = 0
    var pendingJobs: [BatchJob] = []
    /// `continueLater` was asked for and the turn has not run yet.
    var turnScheduled = false
    var reading = false
    var writeShut = false
    var closed = false
    var ledger: RequestLedger
    /// Response frames handed to the kernel, and how they are split.
    private var responses: FrameDecoder
    private(set) var answered = 0
    /// Set when the engine meets a connection-fatal frame: how many answers it may give in all.
    private var answersAtFatal: Int?
    private var fatalAnswered = false
    /// The largest read the input can make (the daemon's read buffer is 64 KiB).
    static let maxRead = 65536

    init(setup: EngineSetup) {
        self.setup = setup
        let context = ServingContext(
            state: setup.state, stats: StatsRegistry(loopCount: 1, listenerNames: ["main"], startedAt: 0), daemonVersion: "fuzz",
            logger: QuietLog.logger)
        var clockSource: () -> UInt64 = { 0 }
        services = LoopServices(index: 0, context: context, logger: QuietLog.logger, clock: { clockSource() })
        var caller = Caller(credentials: setup.credentials, listener: ListenerID(index: 0, name: "main"))
        caller.refresh(setup.state)
        engine = ConnectionEngine(services: services, caller: caller, limits: setup.limits, now: now)
        ledger = RequestLedger(maxFrameLength: setup.limits.maxFrameLength)
        responses = FrameDecoder(maxLength: UInt32(Int32.max))
        clockSource = { [unowned self] in self.now &* 1_000_000 }
        syncReading()
    }

    // MARK: Events (each mirrors a call ConnectionDriver or WorkerLoop makes)

    /// A read of `bytes`; only while the driver would be reading.
    func read(_ bytes: ArraySlice<UInt8>) {
        guard reading, !closed, !bytes.isEmpty else { return }
        let lingering: Bool
        if case .lingering = engine.phase { lingering = true } else { lingering = false }
        if !lingering { ledger.received(bytes) }
        let actions = bytes.withUnsafeBytes { engine.received($0, now: now) }
        apply(actions)
    }

    func endOfInput() {
        guard reading, !closed else { return }
        reading = false
        apply(engine.receivedEOF(now: now))
    }

    func tick(_ milliseconds: UInt64, draining: Bool = false, pastDrainDeadline: Bool = false) {
        guard !closed else { return }
        now += milliseconds
        apply(engine.tick(now: now, draining: draining, pastDrainDeadline: pastDrainDeadline))
    }

    /// The client read everything: the queued write completes.
    func writeCompletes() {
        guard queued > 0, !closed else { return }
        let count = queued
        queued = 0
        apply(engine.wrote(count, now: now))
    }

    func runJob(_ index: Int) {
        guard !pendingJobs.isEmpty else { return }
        let job = pendingJobs.remove(at: index % pendingJobs.count)
        job.run(context: services.context, counters: services.counters, logger: services.logger, loop: 0)
        // WorkerLoop delivers a finished batch only to a connection it still has.
        guard !closed else { return }
        apply(engine.batchFinished(job, now: now))
    }

    func continueTurn() {
        guard turnScheduled, !closed else { return }
        turnScheduled = false
        apply(engine.continueTurn(now: now))
    }

    func ioError() {
        guard !closed else { return }
        apply(engine.failed("fuzz: connection reset"))
    }

    /// The memory budget sheds connections that do not read (WorkerLoop.shed).
    func shedForMemory() {
        guard !closed, engine.isNotReading else { return }
        engine.abort(.memoryBudget)
        close()
    }

    // MARK: Carrying out actions (ConnectionDriver.apply)

    private func apply(_ actions: ConnectionEngine.Actions) {
        guard !closed else { return }
        // Before the flush that may carry its reply.
        noteFatal()
        if actions.contains(.offload) { pendingJobs += engine.takeJobs() }
        if actions.contains(.flush) { flush() }
        if actions.contains(.continueLater) { turnScheduled = true }
        if actions.contains(.shutdownWrite) { writeShut = true }
        if engine.isClosed {
            close()
            return
        }
        syncReading()
        checkBuffers()
    }

    private func syncReading() {
        if engine.wantsInput && !reading {
            reading = true
            engine.readingResumed(now: now)
        } else if !engine.wantsInput && reading {
            reading = false
        }
    }

    private func flush() {
        let total = engine.output.bytes.count
        guard total > 0, engine.queuedBytes == 0, !closed else { return }
        fuzzCheck(queued == 0, "a flush with \(queued) bytes still queued")
        fuzzCheck(!writeShut, "\(total) bytes written after the write side was shut")
        let sent = min(total, kernelSpace)
        kernelSpace -= sent
        noteFatal()
        handOver(engine.output.bytes)
        queued = total - sent
        let after = engine.flushed(sent: sent, queued: total - sent, now: now)
        if after.contains(.continueLater) { turnScheduled = true }
        if after.contains(.shutdownWrite) { writeShut = true }
        if after.contains(.close) { close() }
    }

    private func close() {
        guard !closed else { return }
        closed = true
        reading = false
        if !engine.isClosed { engine.abort(.ioError("closed by the daemon")) }
    }

    // MARK: Checks

    /// Every byte the engine hands over is whole response frames that decode, each answering a
    /// request that was sent and not yet answered.
    private func handOver(_ bytes: [UInt8]) {
        responses.append(bytes)
        while true {
            let next: FrameDecoder.Next
            do {
                next = try responses.next()
            } catch {
                fuzzCheck(false, "the engine wrote a response with a bad length: \(error)")
                return
            }
            guard case .frame(let header, let range) = next else { break }
            responses.buffer.withUnsafeBytes { raw in
                checkResponse(header, body: UnsafeRawBufferPointer(rebasing: raw[range]))
            }
        }
        fuzzCheck(!responses.hasPartialFrame, "a write ends inside a response frame (\(responses.bufferedCount) bytes over)")
    }

    private func checkResponse(_ header: FrameHeader, body: UnsafeRawBufferPointer) {
        answered += 1
        fuzzCheck(!fatalAnswered, "response \(header) after the connection-fatal error's")
        if let limit = answersAtFatal { fuzzCheck(answered <= limit, "response \(header) after a connection-fatal error") }
        fuzzCheck(header.version == Wire.version && header.isResponse, "not a response: \(header)")
        fuzzCheck(header.flags & ~(Wire.flagResponse | Wire.flagBatch) == 0, "response flags 0x\(String(header.flags, radix: 16))")
        fuzzCheck(Int(header.length) <= setup.maxReplyLength, "a reply of length \(header.length), over 4 x max_frame + 1 KiB x max_batch")
        let small = header.status != 0 || [Opcode.hello, .ping, .listKeys, .stats].contains(Opcode(rawValue: header.opcode))
        if small {
            fuzzCheck(header.length <= setup.limits.maxFrameLength, "\(header) is over max_frame \(setup.limits.maxFrameLength)")
        }
        do {
            _ = try decodeResponseFrame(header, body: body)
        } catch {
            fuzzCheck(false, "the response \(header) does not decode: \(error); body \(printable(Array(body)))")
        }
        let key = RequestLedger.Key(id: header.requestID, opcode: header.opcode, batch: header.isBatch)
        if let fatal = ledger.fatal, answersAtFatal != nil, answered == answersAtFatal {
            fuzzCheck(key == fatal, "the connection-fatal reply \(header) does not answer \(fatal)")
            let status = WireStatus(rawValue: header.status)
            fuzzCheck(status == .frameTooLarge || status == .badFrame, "the connection-fatal reply has status \(header.status)")
            fatalAnswered = true
            return
        }
        fuzzCheck(ledger.answer(key), "\(header) answers no outstanding request (id \(header.requestID), opcode \(header.opcode))")
    }

    /// The moment the engine meets a connection-fatal frame, its reply is the last one in its
    /// output: count the answers it may give in all.
    private func noteFatal() {
        guard answersAtFatal == nil, case .framing = engine.closeReason else { return }
        fuzzCheck(ledger.fatal != nil, "closing for \(engine.closeReason!) though no bad length prefix arrived")
        var pending = FrameDecoder(maxLength: UInt32(Int32.max))
        pending.append(engine.output.bytes)
        var frames = 0
        while case .frame = try? pending.next() { frames += 1 }
        answersAtFatal = answered + frames
        fuzzCheck(frames >= 1, "no reply for the connection-fatal frame")
    }

    /// Buffered output stays within max_pending_output: past it the connection is not read, and
    /// only the frames of the last read (and the batches in flight) can still add replies.
    private func checkBuffers() {
        guard !closed else { return }
        let pending = engine.queuedBytes + engine.output.bytes.count
        fuzzCheck(engine.queuedBytes == queued, "the engine counts \(engine.queuedBytes) queued bytes, the kernel holds \(queued)")
        if engine.phase == .open {
            if pending > setup.limits.maxPendingOutput {
                fuzzCheck(
                    !engine.wantsInput,
                    "still reading with \(pending) bytes of replies pending (max_pending_output \(setup.limits.maxPendingOutput))")
            }
            if engine.wantsInput {
                fuzzCheck(!engine.decoder.hasCompleteFrame, "reading more while whole frames wait")
            }
        }
        fuzzCheck(
            engine.decoder.bufferedCount <= 4 + Int(setup.limits.maxFrameLength) + EngineSession.maxRead,
            "\(engine.decoder.bufferedCount) bytes of input buffered")
        // The cap, the reply that crossed it, the connection-fatal reply, and the batches in flight
        // (they finish whether or not the client reads).
        let bound = setup.limits.maxPendingOutput + (4 + setup.maxReplyLength) * (2 + setup.limits.maxInFlight)
        fuzzCheck(pending <= bound, "\(pending) bytes of replies pending, over \(bound)")
        fuzzCheck(engine.inFlight == pendingJobs.count, "in flight \(engine.inFlight), queued batches \(pendingJobs.count)")
        fuzzCheck(
            engine.inFlight <= setup.limits.maxInFlight, "\(engine.inFlight) batches in flight (max_in_flight \(setup.limits.maxInFlight))")
    }

    // MARK: The end

    /// The client now reads everything and sends the rest of its bytes, then EOF; the pool
    /// runs every batch. A connection that ends this way answers every request exactly once.
    func finish(rest: ArraySlice<UInt8>, chunk: Int) {
        var rest = rest
        kernelSpace = Int.max
        var rounds = 0
        while !closed {
            rounds += 1
            fuzzCheck(rounds < 1_000_000, "the connection never finishes (phase \(engine.phase))")
            if queued > 0 {
                writeCompletes()
            } else if !pendingJobs.isEmpty {
                runJob(0)
            } else if turnScheduled {
                continueTurn()
            } else if reading && !rest.isEmpty {
                let count = min(chunk, rest.count)
                read(rest.prefix(count))
                rest = rest.dropFirst(count)
            } else if reading {
                endOfInput()
            } else {
                fuzzCheck(
                    false, "stuck: phase \(engine.phase), nothing to read, write, run or turn; \(engine.output.bytes.count) bytes unsent")
            }
        }
        guard let reason = engine.closeReason else { return }
        switch reason {
        case .peerClosed:
            fuzzCheck(ledger.fatal == nil, "closed as if cleanly though a bad length prefix arrived")
            fuzzCheck(ledger.isEmpty, "closed cleanly with requests unanswered: \(ledger.outstanding.filter { $0.value > 0 })")
        case .framing:
            fuzzCheck(fatalAnswered, "closed for a framing error without answering it")
        default:
            break
        }
    }
}
