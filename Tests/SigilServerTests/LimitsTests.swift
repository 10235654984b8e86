import Logging
@testable import SigilServer
import SigilPosix
import Testing

/// The budgets that span connections: connection caps with per-listener reserves, refusal
/// logging, and the rate limiter's buckets.
@Suite("Cross-connection limits")
struct LimitsTests {
    @Test("caps per listener and per uid; each listener keeps its reserve from the others")
    func connectionCaps() {
        let ledger = ConnectionLedger(listenerCount: 2)
        let caps = ConnectionLedger.Caps(total: 10, perListener: [10, 10], perUID: [6, 10], reserved: [2, 3])
        // One uid on listener 0: stopped by its per-uid cap.
        for _ in 0..<6 { #expect(ledger.admit(listener: 0, uid: 1000, caps: caps) == nil) }
        #expect(ledger.admit(listener: 0, uid: 1000, caps: caps) == .uid(6))
        // Other uids on listener 0 fill what is not reserved for listener 1: 10 - 3 = 7.
        #expect(ledger.admit(listener: 0, uid: 1001, caps: caps) == nil)
        #expect(ledger.admit(listener: 0, uid: 1002, caps: caps) == .total(10))
        // Listener 1 still has its 3.
        for uid in 0..<3 { #expect(ledger.admit(listener: 1, uid: UInt32(uid), caps: caps) == nil) }
        #expect(ledger.admit(listener: 1, uid: 9, caps: caps) == .total(10))
        ledger.release(listener: 0, uid: 1000)
        #expect(ledger.admit(listener: 1, uid: 9, caps: caps) == nil)
        #expect(ledger.open == 10)
    }

    /// Collects log lines.
    final class Lines: LogHandler, @unchecked Sendable {
        let lines = Locked<[String]>([])
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { lines.withLock { $0.append("\(event.message)") } }
    }

    @Test("refusal lines are budgeted per uid and in all; the rest are summarised, and all are counted")
    func refusalBudget() {
        let handler = Lines()
        let log = RefusalLog(listenerCount: 1, logger: Logger(label: "t") { _ in handler })
        for round in 0..<1000 {
            log.refuse(listener: 0, uid: UInt32(round % 50), kind: "connection", now: 100, "refused \(round)")
        }
        let individual = handler.lines.withLock { $0.count }
        #expect(individual == log.budget.total, "\(individual) lines for 1000 refusals")
        log.summarise(now: 200)
        let lines = handler.lines.withLock { $0 }
        let summaries = lines.dropFirst(individual)
        #expect(summaries.count <= 50)
        let summarised = summaries.compactMap { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } }.reduce(0, +)
        #expect(summarised + individual == 1000, "\(summaries.prefix(3))")
        let table = log.table()[0]
        #expect(table.uids.values.reduce(0, +) + table.other == 1000)
        #expect(table.uids.count <= log.budget.tableSize)
    }

    @Test("a token bucket per listener and uid")
    func rateLimiter() {
        let limiter = RateLimiter()
        let limit = RateLimit(perSecond: 100, burst: 5)
        #expect(limiter.take(5, listener: 0, uid: 1, limit: limit, now: 0))
        #expect(!limiter.take(1, listener: 0, uid: 1, limit: limit, now: 0))
        #expect(limiter.take(1, listener: 0, uid: 2, limit: limit, now: 0), "another uid has its own bucket")
        #expect(limiter.take(1, listener: 1, uid: 1, limit: limit, now: 0), "another listener too")
        #expect(limiter.take(1, listener: 0, uid: 1, limit: limit, now: 10), "1 token back after 10 ms at 100/s")
        #expect(!limiter.take(6, listener: 0, uid: 1, limit: limit, now: 10_000), "never more than the burst")
    }
}
