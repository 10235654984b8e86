import Synchronization
import SigilCore

/// Counters of one event loop. Each loop writes its own under an uncontended lock; STATS reads
/// them all.
final class LoopCounters: Sendable {
    struct Values {
        var requests = [UInt64](repeating: 0, count: 256)
        var errors = [UInt64](repeating: 0, count: 256)
        var denied: UInt64 = 0
        var busy: UInt64 = 0
        var connectionsOpen = 0
        var connectionsTotal: UInt64 = 0
        var connectionsClosedByLimit: UInt64 = 0
        var inFlight = 0
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0

        var allRequests: UInt64 { requests.reduce(0, +) }

        mutating func add(_ other: Values) {
            for i in 0..<requests.count {
                requests[i] += other.requests[i]
                errors[i] += other.errors[i]
            }
            denied += other.denied
            busy += other.busy
            connectionsOpen += other.connectionsOpen
            connectionsTotal += other.connectionsTotal
            connectionsClosedByLimit += other.connectionsClosedByLimit
            inFlight += other.inFlight
            bytesIn += other.bytesIn
            bytesOut += other.bytesOut
        }
    }

    let values = Mutex(Values())

    func update(_ body: (inout Values) -> Void) {
        values.withLock { body(&$0) }
    }
}

/// Process-wide figures STATS reports, summed over loops.
public final class StatsRegistry: Sendable {
    let loops: [LoopCounters]
    let startedAt: UInt64
    private let daemon = Mutex(DaemonCounters())

    struct DaemonCounters {
        var reloadsOK: UInt64 = 0
        var reloadsFailed: UInt64 = 0
        var lastReloadError: String?
        var refusedConnections: UInt64 = 0
    }

    init(loopCount: Int, startedAt: UInt64) {
        loops = (0..<loopCount).map { _ in LoopCounters() }
        self.startedAt = startedAt
    }

    func recordReload(error: String?) {
        daemon.withLock {
            if let error {
                $0.reloadsFailed += 1
                $0.lastReloadError = error
            } else {
                $0.reloadsOK += 1
            }
        }
    }

    func recordRefusedConnection() {
        daemon.withLock { $0.refusedConnections += 1 }
    }

    func totals() -> LoopCounters.Values {
        var totals = LoopCounters.Values()
        for loop in loops {
            loop.values.withLock { totals.add($0) }
        }
        return totals
    }

    /// The STATS body: a JSON object an operator can read or scrape.
    func json(state: ServingState, now: UInt64, rssBytes: Int?) -> [UInt8] {
        let totals = totals()
        let daemonCounters = daemon.withLock { $0 }
        var requests = JSONObject()
        for op in Opcode.allCases {
            let count = totals.requests[Int(op.rawValue)]
            let errors = totals.errors[Int(op.rawValue)]
            requests[op.name] = ["count": .integer(Int64(count)), "errors": .integer(Int64(errors))]
        }
        var keys = JSONObject()
        for server in state.keyring.servers {
            keys[server.serverName] = [
                "active": .array(server.activeKeys.map { .string($0.id.description) }),
                "retired": .array(server.retiredKeys.map { .string($0.id.description) }),
            ]
        }
        var root = JSONObject()
        root["uptime_ms"] = .integer(Int64((now - startedAt) / 1_000_000))
        root["connections"] = [
            "open": .integer(Int64(totals.connectionsOpen)),
            "total": .integer(Int64(totals.connectionsTotal)),
            "refused": .integer(Int64(daemonCounters.refusedConnections)),
        ]
        root["in_flight"] = .integer(Int64(totals.inFlight))
        root["requests"] = .object(requests)
        root["requests_total"] = .integer(Int64(totals.allRequests))
        root["denied"] = .integer(Int64(totals.denied))
        root["busy"] = .integer(Int64(totals.busy))
        root["bytes_in"] = .integer(Int64(totals.bytesIn))
        root["bytes_out"] = .integer(Int64(totals.bytesOut))
        root["keys"] = .object(keys)
        root["key_count"] = .integer(Int64(state.keyring.keyCount))
        root["memory_locked"] = .bool(state.keyring.isLocked)
        root["config_generation"] = .integer(Int64(state.generation))
        var reloads = JSONObject()
        reloads["ok"] = .integer(Int64(daemonCounters.reloadsOK))
        reloads["failed"] = .integer(Int64(daemonCounters.reloadsFailed))
        if let last = daemonCounters.lastReloadError { reloads["last_error"] = .string(last) }
        root["reloads"] = .object(reloads)
        root["event_loops"] = .integer(Int64(loops.count))
        if let rssBytes { root["rss_bytes"] = .integer(Int64(rssBytes)) }
        return JSONValue.object(root).canonicalBytes
    }
}
