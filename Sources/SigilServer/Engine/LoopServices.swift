import Logging
import SigilCore
import SigilPosix

/// What the connections of one loop share: the dispatcher (with its scratch buffers and batched
/// counters), the loop's counters, the shared serving context, the logger and the clock. Touched
/// only on the loop's thread. Tests build one with no loop at all.
final class LoopServices {
    let index: Int
    let context: ServingContext
    let counters: LoopCounters
    let logger: Logger
    @exclusivity(unchecked) var dispatcher: Dispatcher
    /// Monotonic nanoseconds (injectable for tests).
    let clock: () -> UInt64

    /// During a drain, a connection closes once nothing is owed and it has been quiet this long.
    static let drainQuietMilliseconds: UInt64 = 100
    /// A connection silent this long gives back its read and write buffers.
    static let quietMilliseconds: UInt64 = 1000

    init(index: Int, context: ServingContext, logger: Logger, clock: @escaping () -> UInt64 = Posix.monotonicNanoseconds) {
        self.index = index
        self.context = context
        self.counters = context.stats.loops[index]
        self.logger = logger
        self.clock = clock
        dispatcher = Dispatcher(context: context, counters: counters, logger: logger, loop: index)
    }

    var state: ServingState { context.state }

    func clockMilliseconds() -> UInt64 { clock() / 1_000_000 }
}

/// A large batch, run on the thread pool. It crosses threads exactly twice, each time handed
/// over by libuv (to a pool thread, then back to the loop), so nothing touches it concurrently.
final class BatchJob: @unchecked Sendable {
    let op: Opcode
    let frame: FrameHeader
    let body: [UInt8]
    let items: [Range<Int>]
    var caller: Caller
    let state: ServingState
    let limits: ConnectionLimits
    /// When the frame was taken up (monotonic nanoseconds), for its latency.
    let takenAt: UInt64
    private(set) var reply: [UInt8] = []

    init(
        op: Opcode, frame: FrameHeader, body: [UInt8], items: [Range<Int>], caller: Caller, state: ServingState, limits: ConnectionLimits,
        takenAt: UInt64
    ) {
        self.op = op
        self.frame = frame
        self.body = body
        self.items = items
        self.caller = caller
        self.state = state
        self.limits = limits
        self.takenAt = takenAt
    }

    /// Answers the batch with a dispatcher of its own (dispatchers own scratch buffers).
    func run(context: ServingContext, counters: LoopCounters, logger: Logger, loop: Int) {
        var dispatcher = Dispatcher(context: context, counters: counters, logger: logger, loop: loop)
        var out = WireWriter(capacity: 256 * items.count)
        body.withUnsafeBytes { raw in
            dispatcher.batch(op, frame: frame, body: raw, items: items, caller: &caller, state: state, limits: limits, out: &out)
        }
        dispatcher.flushCounters()
        reply = out.bytes
    }
}
