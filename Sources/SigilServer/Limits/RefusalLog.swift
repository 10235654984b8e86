import Logging
import SigilPosix

/// Logging of refusals (denied requests, refused connections) on a budget, per caller uid and
/// for the whole daemon, so a caller that is refused over and over (reconnecting as often as it
/// likes) cannot flood the journal and push real lines past journald's rate limit. Within a
/// window each uid gets a few lines and the daemon a few dozen; the rest are counted and logged as
/// one summary line per uid when the window ends. Every refusal is still counted: STATS reports
/// them per listener and uid.
final class RefusalLog: Sendable {
    struct Budget: Sendable {
        /// Lines per uid per window.
        var perUID = 5
        /// Lines for all uids together per window.
        var total = 30
        /// Milliseconds.
        var window: UInt64 = 10_000
        /// Distinct uids tracked per listener for STATS; the rest count under "other".
        var tableSize = 64
    }

    private struct Suppressed {
        var count: UInt64 = 0
        var kinds: [String: UInt64] = [:]
    }

    private struct State {
        var windowStart: UInt64 = 0
        var loggedTotal = 0
        var loggedPerUID: [UInt32: Int] = [:]
        var suppressed: [UInt32: Suppressed] = [:]
        var suppressedUIDsDropped: UInt64 = 0
        /// Per listener: refusals per uid, and those not in the table.
        var byListener: [[UInt32: UInt64]]
        var otherByListener: [UInt64]
    }

    let budget: Budget
    private let state: Locked<State>
    private let logger: Logger
    /// Summaries queued for the main loop to log (it owns the timer that ends windows).
    private static let maxSuppressedUIDs = 1024

    init(listenerCount: Int, logger: Logger, budget: Budget = Budget()) {
        self.budget = budget
        self.logger = logger
        state = Locked(State(byListener: Array(repeating: [:], count: listenerCount), otherByListener: Array(repeating: 0, count: listenerCount)))
    }

    /// Records one refusal and logs `message` if the budget allows; `kind` (an operation name,
    /// or "connection") is what the summary counts it as.
    func refuse(listener: Int, uid: UInt32, kind: String, now: UInt64, level: Logger.Level = .warning, _ message: @autoclosure () -> String) {
        let log: Bool = state.withLock { state in
            if listener < state.byListener.count {
                if let count = state.byListener[listener][uid] {
                    state.byListener[listener][uid] = count &+ 1
                } else if state.byListener[listener].count < budget.tableSize {
                    state.byListener[listener][uid] = 1
                } else {
                    state.otherByListener[listener] &+= 1
                }
            }
            if now &- state.windowStart >= budget.window || now < state.windowStart {
                // The main loop's timer normally ends windows; this keeps budgets fresh without it.
                state.windowStart = now
                state.loggedTotal = 0
                state.loggedPerUID = [:]
            }
            let used = state.loggedPerUID[uid, default: 0]
            if used < budget.perUID && state.loggedTotal < budget.total {
                state.loggedPerUID[uid] = used + 1
                state.loggedTotal += 1
                return true
            }
            if state.suppressed[uid] == nil && state.suppressed.count >= RefusalLog.maxSuppressedUIDs {
                state.suppressedUIDsDropped &+= 1
            } else {
                state.suppressed[uid, default: Suppressed()].count &+= 1
                state.suppressed[uid]!.kinds[kind, default: 0] &+= 1
            }
            return false
        }
        if log { logger.log(level: level, "\(message())") }
    }

    /// Ends the window: logs one summary line per uid whose refusals were not logged one by one.
    func summarise(now: UInt64) {
        let (suppressed, dropped): ([UInt32: Suppressed], UInt64) = state.withLock { state in
            defer {
                state.suppressed = [:]
                state.suppressedUIDsDropped = 0
                state.windowStart = now
                state.loggedTotal = 0
                state.loggedPerUID = [:]
            }
            return (state.suppressed, state.suppressedUIDsDropped)
        }
        for (uid, entry) in suppressed.sorted(by: { $0.key < $1.key }) {
            let detail = entry.kinds.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            logger.warning("refused \(entry.count) more time(s) for uid \(uid) in the last \(budget.window / 1000) s, not logged one by one: \(detail)")
        }
        if dropped > 0 {
            logger.warning("refused \(dropped) more time(s) for further uids in the last \(budget.window / 1000) s")
        }
    }

    /// STATS: refusals per listener, per uid (at most `tableSize` uids, the rest as "other").
    func table() -> [(uids: [UInt32: UInt64], other: UInt64)] {
        state.withLock { state in zip(state.byListener, state.otherByListener).map { ($0, $1) } }
    }
}
