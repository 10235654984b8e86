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
    /// logged as periodic summaries instead, so every refusal is still accounted for in the log
    /// without letting one client fill the journal.
    struct Refusals: Sendable {
        var logged = 0
        /// Refusals since the last summary line, by operation name (saturating).
        var unlogged: [String: Int] = [:]

        mutating func count(_ op: String) {
            unlogged[op, default: 0] = Refusals.saturatingAdd(unlogged[op, default: 0], 1)
        }

        static func saturatingAdd(_ a: Int, _ b: Int) -> Int {
            let (sum, overflow) = a.addingReportingOverflow(b)
            return overflow ? Int.max : sum
        }
    }

    var refusals = Refusals()

    static let refusalsLoggedIndividually = 8

    /// The summary line for refusals not yet logged, and resets them; nil when there are none.
    mutating func takeRefusalSummary() -> String? {
        guard !refusals.unlogged.isEmpty else { return nil }
        let total = refusals.unlogged.values.reduce(0, Refusals.saturatingAdd)
        let detail = refusals.unlogged.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
        refusals.unlogged = [:]
        return "refused \(total) more request(s) for \(identity): \(detail)"
    }

    /// A copy for an offloaded batch: same rules and logging state, no refusals of its own yet.
    func forBatch() -> Caller {
        var copy = self
        copy.refusals.unlogged = [:]
        return copy
    }

    /// Folds in what a batch's copy recorded (only its own refusals: see `forBatch`).
    mutating func merge(_ batch: Refusals) {
        refusals.logged = max(refusals.logged, batch.logged)
        for (op, count) in batch.unlogged {
            refusals.unlogged[op] = Refusals.saturatingAdd(refusals.unlogged[op, default: 0], count)
        }
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
        // By index: iterating would copy each rule (and retain its sets) per request.
        for index in signRequestRules.indices
        where signRequestRules[index].allowsServer(server) && signRequestRules[index].allowsRequest(method: method, uri: uri) {
            return true
        }
        return false
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
