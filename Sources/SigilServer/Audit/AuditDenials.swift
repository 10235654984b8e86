import SigilPosix

/// The budget refused signing requests have in the audit trail, so that one caller refused over
/// and over cannot fill the trail (or the disk) and push other callers' signatures out of it.
/// Within a window each uid gets `perUID` records and all uids together `total`; the rest are
/// counted per uid and written as one summary record per uid when the window ends. Successful
/// signatures never pass through here.
final class AuditDenials: Sendable {
    struct Budget: Sendable {
        var perUID = 100
        var total = 1000
        /// Milliseconds.
        var window: UInt64 = 10_000
        /// Uids with a summary of their own per window; further uids share one.
        var tableSize = 1024
    }

    /// The refusals of one window that were counted instead of recorded.
    struct Unrecorded {
        var perUID: [UInt32: UInt64] = [:]
        var otherUIDs: UInt64 = 0
        var isEmpty: Bool { perUID.isEmpty && otherUIDs == 0 }
    }

    private struct State {
        var windowStart: UInt64
        var recordedTotal = 0
        var recordedPerUID: [UInt32: Int] = [:]
        var unrecorded = Unrecorded()
        var unrecordedEver: UInt64 = 0
    }

    let budget: Budget
    private let state: Locked<State>

    init(budget: Budget = Budget(), now: UInt64) {
        self.budget = budget
        state = Locked(State(windowStart: now))
    }

    /// Whether a refusal of `uid` may be recorded one by one; if not, it is counted.
    func admit(uid: UInt32) -> Bool {
        state.withLock { state in
            let used = state.recordedPerUID[uid, default: 0]
            if used < budget.perUID && state.recordedTotal < budget.total {
                state.recordedPerUID[uid] = used + 1
                state.recordedTotal += 1
                return true
            }
            Self.count(uid, in: &state, tableSize: budget.tableSize)
            return false
        }
    }

    /// Counts a refusal that was admitted but found no room in its queue.
    func countUnrecorded(uid: UInt32) {
        state.withLock { Self.count(uid, in: &$0, tableSize: budget.tableSize) }
    }

    private static func count(_ uid: UInt32, in state: inout State, tableSize: Int) {
        state.unrecordedEver &+= 1
        if state.unrecorded.perUID[uid] != nil || state.unrecorded.perUID.count < tableSize {
            state.unrecorded.perUID[uid, default: 0] &+= 1
        } else {
            state.unrecorded.otherUIDs &+= 1
        }
    }

    /// Refusals counted instead of recorded since the start (STATS).
    var unrecordedTotal: UInt64 { state.withLock { $0.unrecordedEver } }

    /// If the window has ended at `now` (ms, monotonic): starts the next one and returns what
    /// the ended one counted, for its summary records.
    func endWindow(now: UInt64, force: Bool = false) -> Unrecorded? {
        state.withLock { state in
            guard force || now &- state.windowStart >= budget.window || now < state.windowStart else { return nil }
            defer {
                state.windowStart = now
                state.recordedTotal = 0
                state.recordedPerUID = [:]
                state.unrecorded = Unrecorded()
            }
            return state.unrecorded
        }
    }
}
