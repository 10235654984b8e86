import Logging
import SigilCore
import SigilPosix

/// What every loop shares: the current serving state (swapped whole on reload), statistics,
/// the budgets that span connections (refusal logging, rate limits, buffered memory,
/// connection caps), the audit trail and the logger.
final class ServingContext: Sendable {
    private let current: Locked<ServingState>
    let stats: StatsRegistry
    let daemonVersion: String
    let logger: Logger
    let refusals: RefusalLog
    let rateLimiter = RateLimiter()
    let memory = MemoryLedger()
    let connections: ConnectionLedger
    let audit: AuditTrail?

    init(state: ServingState, stats: StatsRegistry, daemonVersion: String, logger: Logger, audit: AuditTrail? = nil) {
        current = Locked(state)
        self.stats = stats
        self.daemonVersion = daemonVersion
        self.logger = logger
        refusals = RefusalLog(listenerCount: stats.listenerNames.count, logger: logger)
        connections = ConnectionLedger(listenerCount: stats.listenerNames.count)
        self.audit = audit
    }

    var state: ServingState { current.withLock { $0 } }

    /// Swaps in a new state; returns the old one so the caller decides when to let it go.
    @discardableResult
    func replace(_ state: ServingState) -> ServingState {
        current.withLock { old in
            defer { old = state }
            return old
        }
    }
}
