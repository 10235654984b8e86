import SigilPosix
import Synchronization

/// Connection caps: for the daemon, per listener, and per caller uid on a listener, with a
/// reserve per listener that connections of other listeners cannot take. So one caller filling
/// its listener never locks another listener (the operator's admin socket) out.
///
/// The acceptor admits; the worker loops release when a connection closes.
final class ConnectionLedger: Sendable {
    struct Caps: Sendable, Equatable {
        var total: Int
        var perListener: [Int]
        var perUID: [Int]
        var reserved: [Int]
    }

    enum Refusal: Equatable, CustomStringConvertible {
        case total(Int)
        case listener(Int)
        case uid(Int)

        var description: String {
            switch self {
            case .total(let cap): return "\(cap) connections are open (limits.max_connections, less other listeners' reserves)"
            case .listener(let cap): return "the listener has \(cap) connections open (max_connections)"
            case .uid(let cap): return "this uid has \(cap) connections open on the listener (max_connections_per_uid)"
            }
        }
    }

    private struct Key: Hashable {
        let listener: Int
        let uid: UInt32
    }

    private struct State {
        var perListener: [Int]
        var perUID: [Key: Int] = [:]
        var total = 0
    }

    private let state: Locked<State>

    init(listenerCount: Int) {
        state = Locked(State(perListener: Array(repeating: 0, count: listenerCount)))
    }

    var open: Int { state.withLock { $0.total } }

    /// Admits a connection (and counts it) or says which cap it hits.
    func admit(listener: Int, uid: UInt32, caps: Caps) -> Refusal? {
        state.withLock { state in
            let onListener = state.perListener[listener]
            guard onListener < caps.perListener[listener] else { return .listener(caps.perListener[listener]) }
            let key = Key(listener: listener, uid: uid)
            let forUID = state.perUID[key, default: 0]
            guard forUID < caps.perUID[listener] else { return .uid(caps.perUID[listener]) }
            if onListener >= caps.reserved[listener] {
                // Beyond its reserve, a listener draws on what no listener's reserve holds.
                var unreserved = 0
                var reservedTotal = 0
                for index in state.perListener.indices {
                    unreserved += max(0, state.perListener[index] - caps.reserved[index])
                    reservedTotal += caps.reserved[index]
                }
                guard unreserved < caps.total - reservedTotal else { return .total(caps.total) }
            }
            state.perListener[listener] += 1
            state.perUID[key] = forUID + 1
            state.total += 1
            return nil
        }
    }

    func release(listener: Int, uid: UInt32) {
        state.withLock { state in
            let key = Key(listener: listener, uid: uid)
            state.perListener[listener] -= 1
            state.total -= 1
            let remaining = state.perUID[key, default: 1] - 1
            state.perUID[key] = remaining > 0 ? remaining : nil
        }
    }
}

/// Bytes held for clients (unread requests, unsent replies, queued batches), for the whole
/// daemon and per caller uid. Connections report in steps of `quantum`, so the signing path
/// touches these counters only when a connection's backlog grows or shrinks by that much.
final class MemoryLedger: Sendable {
    static let quantum = 64 * 1024
    private let totalBytes = Atomic<Int>(0)
    private let perUID = Locked<[UInt32: Int]>([:])

    var total: Int { totalBytes.load(ordering: .relaxed) }

    func held(by uid: UInt32) -> Int { perUID.withLock { $0[uid, default: 0] } }

    /// Adds `delta` (which may be negative) for `uid`; returns the new totals.
    @discardableResult
    func adjust(uid: UInt32, by delta: Int) -> (total: Int, uid: Int) {
        let total = totalBytes.add(delta, ordering: .relaxed).newValue
        let forUID = perUID.withLock { table in
            let value = table[uid, default: 0] + delta
            table[uid] = value > 0 ? value : nil
            return value
        }
        return (total, forUID)
    }
}
