import SigilCore
import SigilPosix

/// Latency buckets of STATS' histograms, in microseconds (upper bounds; one more bucket above
/// the last holds everything slower).
enum LatencyBuckets {
    static let bounds: [UInt64] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100_000, 250_000, 500_000, 1_000_000]
    static var count: Int { bounds.count + 1 }

    @inline(__always)
    static func index(microseconds: UInt64) -> Int {
        var low = 0
        var high = bounds.count
        while low < high {
            let middle = (low + high) / 2
            if microseconds <= bounds[middle] { high = middle } else { low = middle + 1 }
        }
        return low
    }
}

extension Opcode {
    /// Dense position among the known operations (0..<allCases.count), for per-operation tables.
    var ordinal: Int {
        switch self {
        case .hello: return 0
        case .ping: return 1
        case .listKeys: return 2
        case .signRequest: return 3
        case .signJSON: return 4
        case .signRaw: return 5
        case .verify: return 6
        case .verifyJSON: return 7
        case .verifyRequest: return 8
        case .keyDocument: return 9
        case .stats: return 10
        }
    }
}

/// Per listener figures of one loop.
struct ListenerFigures {
    /// By opcode byte (unknown opcodes count too: their errors are real).
    var requests = [UInt64](repeating: 0, count: 256)
    var errors = [UInt64](repeating: 0, count: 256)
    var denied: UInt64 = 0
    var busy: UInt64 = 0
    var rateLimited: UInt64 = 0
    var connectionsOpen = 0
    var connectionsTotal: UInt64 = 0

    mutating func add(_ other: ListenerFigures) {
        for i in 0..<256 {
            requests[i] &+= other.requests[i]
            errors[i] &+= other.errors[i]
        }
        denied &+= other.denied
        busy &+= other.busy
        rateLimited &+= other.rateLimited
        connectionsOpen += other.connectionsOpen
        connectionsTotal &+= other.connectionsTotal
    }
}

/// Counters of one event loop. Each loop writes its own under an uncontended lock, once per turn
/// (the dispatcher batches its counts); STATS reads them all.
final class LoopCounters: Sendable {
    struct Values {
        var listeners: [ListenerFigures]
        /// Per operation ordinal: bucket counts (`LatencyBuckets`), their sum in µs, and count.
        var latency: [[UInt64]]
        var latencySum: [UInt64]
        var latencyCount: [UInt64]
        var inFlight = 0
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0
        /// Connections closed to keep the buffered-memory budget.
        var closedForMemory: UInt64 = 0
        /// Connections closed for a timeout (frame, write or idle).
        var closedForTimeout: UInt64 = 0

        init(listenerCount: Int) {
            listeners = Array(repeating: ListenerFigures(), count: listenerCount)
            latency = Array(repeating: Array(repeating: 0, count: LatencyBuckets.count), count: Opcode.allCases.count)
            latencySum = Array(repeating: 0, count: Opcode.allCases.count)
            latencyCount = Array(repeating: 0, count: Opcode.allCases.count)
        }

        var allRequests: UInt64 { listeners.reduce(0) { $0 &+ $1.requests.reduce(0, &+) } }

        mutating func add(_ other: Values) {
            for index in listeners.indices where index < other.listeners.count { listeners[index].add(other.listeners[index]) }
            for op in latency.indices {
                for bucket in latency[op].indices { latency[op][bucket] &+= other.latency[op][bucket] }
                latencySum[op] &+= other.latencySum[op]
                latencyCount[op] &+= other.latencyCount[op]
            }
            inFlight += other.inFlight
            bytesIn &+= other.bytesIn
            bytesOut &+= other.bytesOut
            closedForMemory &+= other.closedForMemory
            closedForTimeout &+= other.closedForTimeout
        }
    }

    let values: Locked<Values>

    init(listenerCount: Int) {
        values = Locked(Values(listenerCount: listenerCount))
    }

    func update(_ body: (inout Values) -> Void) {
        values.withLock { body(&$0) }
    }
}

/// Process-wide figures STATS reports: the loops' counters summed, and what the acceptor and
/// the reloader record.
public final class StatsRegistry: Sendable {
    let loops: [LoopCounters]
    let listenerNames: [String]
    let startedAt: UInt64
    private let daemon: Locked<DaemonCounters>

    struct DaemonCounters {
        var reloadsOK: UInt64 = 0
        var reloadsFailed: UInt64 = 0
        /// Where the last failed reload failed: a location, never file contents.
        var lastReloadError: String?
        var lastReloadUnixMilliseconds: Int64 = 0
        var lastReloadOK = true
        /// Connections refused at accept, per listener.
        var refusedConnections: [UInt64]

        init(listenerCount: Int) {
            refusedConnections = Array(repeating: 0, count: listenerCount)
        }
    }

    init(loopCount: Int, listenerNames: [String], startedAt: UInt64) {
        loops = (0..<loopCount).map { _ in LoopCounters(listenerCount: listenerNames.count) }
        self.listenerNames = listenerNames
        self.startedAt = startedAt
        daemon = Locked(DaemonCounters(listenerCount: listenerNames.count))
    }

    func recordReload(ok: Bool, location: String?, at unixMilliseconds: Int64) {
        daemon.withLock {
            if ok {
                $0.reloadsOK += 1
            } else {
                $0.reloadsFailed += 1
                $0.lastReloadError = location
            }
            $0.lastReloadOK = ok
            $0.lastReloadUnixMilliseconds = unixMilliseconds
        }
    }

    func recordRefusedConnection(listener: Int) {
        daemon.withLock { if listener < $0.refusedConnections.count { $0.refusedConnections[listener] += 1 } }
    }

    var daemonCounters: DaemonCounters { daemon.withLock { $0 } }

    func totals() -> LoopCounters.Values {
        var totals = LoopCounters.Values(listenerCount: listenerNames.count)
        for loop in loops {
            loop.values.withLock { totals.add($0) }
        }
        return totals
    }
}
