import SigilCore
import SigilPosix

/// The STATS body: one JSON object (docs/PROTOCOL.md, STATS) that always fits in the reply.
/// When the whole object would not, the optional parts are left out in this order, and
/// `"truncated": true` says so: the per-uid refusal tables, the per-server key lists, the
/// per-listener sections, the latency histograms.
enum StatsReport {
    /// Above this many servers STATS does not list keys per server (LIST_KEYS pages them).
    static let keyListingServerLimit = 100

    static func json(context: ServingContext, state: ServingState, budget: Int) -> [UInt8] {
        let stats = context.stats
        let totals = stats.totals()
        let daemon = stats.daemonCounters
        let refusals = context.refusals.table()
        let now = Posix.monotonicNanoseconds()

        var requests = JSONObject()
        var busy: UInt64 = 0
        var rateLimited: UInt64 = 0
        var denied: UInt64 = 0
        for op in Opcode.allCases {
            var count: UInt64 = 0
            var errors: UInt64 = 0
            for listener in totals.listeners {
                count &+= listener.requests[Int(op.rawValue)]
                errors &+= listener.errors[Int(op.rawValue)]
            }
            requests[op.name] = ["count": integer(count), "errors": integer(errors)]
        }
        var openConnections = 0
        var totalConnections: UInt64 = 0
        for listener in totals.listeners {
            busy &+= listener.busy
            rateLimited &+= listener.rateLimited
            denied &+= listener.denied
            openConnections += listener.connectionsOpen
            totalConnections &+= listener.connectionsTotal
        }
        var root = JSONObject()
        root["uptime_ms"] = integer((now &- stats.startedAt) / 1_000_000)
        root["connections"] = [
            "open": .integer(Int64(openConnections)), "total": integer(totalConnections),
            "refused": integer(daemon.refusedConnections.reduce(0, &+)),
            "closed_for_memory": integer(totals.closedForMemory), "closed_for_timeout": integer(totals.closedForTimeout),
        ]
        root["in_flight"] = .integer(Int64(totals.inFlight))
        root["requests"] = .object(requests)
        root["requests_total"] = integer(totals.allRequests)
        root["denied"] = integer(denied)
        root["busy"] = integer(busy)
        root["rate_limited"] = integer(rateLimited)
        root["bytes_in"] = integer(totals.bytesIn)
        root["bytes_out"] = integer(totals.bytesOut)
        root["buffered_bytes"] = .integer(Int64(context.memory.total))
        root["key_count"] = .integer(Int64(state.keyring.keyCount))
        root["retired_key_count"] = .integer(Int64(state.keyring.retiredKeyCount))
        root["server_count"] = .integer(Int64(state.keyring.servers.count))
        root["memory_locked"] = .bool(state.keyring.isLocked)
        root["locked_bytes"] = .integer(Int64(state.keyring.isLocked ? state.keyring.lockedBytes : 0))
        root["config_generation"] = .integer(Int64(state.generation))
        var reloads = JSONObject()
        reloads["ok"] = integer(daemon.reloadsOK)
        reloads["failed"] = integer(daemon.reloadsFailed)
        if let last = daemon.lastReloadError { reloads["last_error"] = .string(last) }
        reloads["last_unix_ms"] = .integer(daemon.lastReloadUnixMilliseconds)
        reloads["last_ok"] = .bool(daemon.lastReloadOK)
        root["reloads"] = .object(reloads)
        root["event_loops"] = .integer(Int64(stats.loops.count))
        if let rss = ProcessFigures.residentBytes() { root["rss_bytes"] = .integer(Int64(rss)) }
        if let audit = context.audit {
            let figures = audit.figures
            root["audit"] = [
                "enabled": .bool(true), "records": integer(figures.written), "dropped": integer(figures.dropped),
                "denied_unrecorded": integer(figures.deniedUnrecorded),
            ]
        } else {
            root["audit"] = ["enabled": .bool(false), "records": .integer(0), "dropped": .integer(0), "denied_unrecorded": .integer(0)]
        }

        let keys = state.keyring.servers.count <= keyListingServerLimit ? keyListing(state) : nil
        let latency = latencySection(totals)
        let withUIDs = listenerSections(stats: stats, totals: totals, daemon: daemon, refusals: refusals, perUID: true)
        var withoutUIDs: JSONObject?

        // Whole first; then without the optional parts, least useful first, until it fits.
        let attempts: [(uids: Bool, keys: Bool, listeners: Bool, latency: Bool)] = [
            (true, true, true, true), (false, true, true, true), (false, false, true, true), (false, false, false, true),
            (false, false, false, false),
        ]
        var bytes: [UInt8] = []
        for attempt in attempts {
            var object = root
            if let keys, attempt.keys { object["keys"] = .object(keys) }
            if attempt.listeners {
                if attempt.uids {
                    object["listeners"] = .object(withUIDs)
                } else {
                    if withoutUIDs == nil {
                        withoutUIDs = listenerSections(stats: stats, totals: totals, daemon: daemon, refusals: refusals, perUID: false)
                    }
                    object["listeners"] = .object(withoutUIDs!)
                }
            }
            if attempt.latency { object["latency_us"] = .object(latency) }
            if !attempt.uids { object["truncated"] = .bool(true) }
            bytes = JSONValue.object(object).canonicalBytes
            if bytes.count <= budget { break }
        }
        return bytes
    }

    private static func integer(_ value: UInt64) -> JSONValue {
        .integer(Int64(clamping: min(value, UInt64(canonicalJSONMaxInteger))))
    }

    private static func keyListing(_ state: ServingState) -> JSONObject {
        var keys = JSONObject()
        for server in state.keyring.servers {
            keys[server.serverName] = [
                "active": .array(server.activeKeys.map { .string($0.id.description) }),
                "retired": .array(server.retiredKeys.map { .string($0.id.description) }),
            ]
        }
        return keys
    }

    private static func latencySection(_ totals: LoopCounters.Values) -> JSONObject {
        var ops = JSONObject()
        for op in Opcode.allCases where totals.latencyCount[op.ordinal] > 0 {
            ops[op.name] = [
                "counts": .array(totals.latency[op.ordinal].map { integer($0) }),
                "sum": integer(totals.latencySum[op.ordinal]),
                "count": integer(totals.latencyCount[op.ordinal]),
            ]
        }
        var section = JSONObject()
        section["bounds"] = .array(LatencyBuckets.bounds.map { JSONValue.integer(Int64($0)) })
        section["ops"] = .object(ops)
        return section
    }

    private static func listenerSections(
        stats: StatsRegistry, totals: LoopCounters.Values, daemon: StatsRegistry.DaemonCounters,
        refusals: [(uids: [UInt32: UInt64], other: UInt64)], perUID: Bool
    ) -> JSONObject {
        var listeners = JSONObject()
        for (index, name) in stats.listenerNames.enumerated() where index < totals.listeners.count {
            let figures = totals.listeners[index]
            var requests = JSONObject()
            for op in Opcode.allCases {
                requests[op.name] = [
                    "count": integer(figures.requests[Int(op.rawValue)]), "errors": integer(figures.errors[Int(op.rawValue)]),
                ]
            }
            var section = JSONObject()
            let parts: [String: JSONValue] = [
                "connections": [
                    "open": .integer(Int64(figures.connectionsOpen)), "total": integer(figures.connectionsTotal),
                    "refused": integer(index < daemon.refusedConnections.count ? daemon.refusedConnections[index] : 0),
                ],
                "requests": .object(requests),
                "denied": integer(figures.denied),
                "busy": integer(figures.busy),
                "rate_limited": integer(figures.rateLimited),
            ]
            for (key, value) in parts { section[key] = value }
            if perUID, index < refusals.count {
                var table = JSONObject()
                for (uid, count) in refusals[index].uids { table[String(uid)] = integer(count) }
                if refusals[index].other > 0 { table["other"] = integer(refusals[index].other) }
                section["refusals_by_uid"] = .object(table)
            }
            listeners[name] = .object(section)
        }
        return listeners
    }
}
