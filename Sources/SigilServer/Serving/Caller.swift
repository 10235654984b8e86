import SigilCore
import SigilPosix

/// A connected client: its credentials (read once, at accept), the listener it came through,
/// and the access rules that match it under the current configuration.
struct Caller: Sendable {
    let credentials: PeerCredentials
    let listener: String
    private(set) var generation: UInt64 = .max
    /// The rules matching this caller, in configuration order.
    private(set) var rules: [AccessRule] = []
    /// Every operation some matching rule grants (bit n: opcode n), for the per-frame check.
    private var operationMask: UInt64 = 0
    /// The matching rules that grant SIGN_REQUEST: the hot path scans only these.
    private var signRequestRules: [AccessRule] = []
    /// Refusals logged one per line on this connection. After a few, a flood of refusals is
    /// logged as periodic summaries instead (`unloggedRefusals`), so every refusal is still
    /// accounted for in the log without letting one client fill the journal.
    var refusalsLogged = 0
    /// Refusals since the last summary line, by operation name.
    var unloggedRefusals: [String: Int] = [:]

    static let refusalsLoggedIndividually = 8

    /// The summary line for refusals not yet logged, and resets them; nil when there are none.
    mutating func takeRefusalSummary() -> String? {
        guard !unloggedRefusals.isEmpty else { return nil }
        let total = unloggedRefusals.values.reduce(0, +)
        let detail = unloggedRefusals.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
        unloggedRefusals = [:]
        return "refused \(total) more request(s) for \(identity): \(detail)"
    }

    /// Folds in what a copy of this caller (an offloaded batch) recorded.
    mutating func merge(refusalsFrom other: Caller) {
        refusalsLogged = max(refusalsLogged, other.refusalsLogged)
        for (op, count) in other.unloggedRefusals { unloggedRefusals[op, default: 0] += count }
    }

    init(credentials: PeerCredentials, listener: String) {
        self.credentials = credentials
        self.listener = listener
    }

    /// Re-matches the rules when the configuration has changed.
    mutating func refresh(_ state: ServingState) {
        guard state.generation != generation else { return }
        generation = state.generation
        rules = state.rules(forListener: listener).filter { $0.matches(credentials) }
        operationMask = 0
        for op in AccessRule.alwaysAllowed { operationMask |= 1 << UInt64(op.rawValue & 63) }
        for rule in rules {
            for op in rule.operations { operationMask |= 1 << UInt64(op.rawValue & 63) }
        }
        signRequestRules = rules.filter { $0.operations.contains(.signRequest) }
    }

    @inline(__always)
    func allows(_ op: Opcode) -> Bool {
        operationMask & (1 << UInt64(op.rawValue & 63)) != 0
    }

    func allows(_ op: Opcode, server: String) -> Bool {
        rules.contains { $0.operations.contains(op) && $0.allowsServer(server) }
    }

    /// SIGN_REQUEST: the op, the origin's server, and the rule's method and uri limits must all
    /// be granted by one rule.
    func allowsSignRequest(server: String, method: UnsafeRawBufferPointer, uri: UnsafeRawBufferPointer) -> Bool {
        signRequestRules.contains { $0.allowsServer(server) && $0.allowsRequest(method: method, uri: uri) }
    }

    /// What HELLO reports.
    func grantedOperations() -> [Opcode] {
        Opcode.allCases.filter { allows($0) }
    }

    func grantedServers(_ keyring: Keyring) -> [String] {
        keyring.serverNames.filter { name in rules.contains { !$0.operations.subtracting(AccessRule.alwaysAllowed).isEmpty && $0.allowsServer(name) } }
    }

    var identity: String { "uid \(credentials.uid) gid \(credentials.gid) pid \(credentials.pid) on listener \(listener)" }
}
