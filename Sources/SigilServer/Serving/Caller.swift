import SigilCore
import SigilPosix

/// A listener as connections know it: its position (for per-listener counters) and name.
public struct ListenerID: Sendable, Equatable, Hashable {
    public let index: Int
    public let name: String

    public init(index: Int, name: String) {
        self.index = index
        self.name = name
    }
}

/// A connected client: its credentials (read once, at accept, and kept for the connection's
/// life), the listener it came through, and the access rules that match it under the current
/// configuration.
struct Caller: Sendable {
    let credentials: PeerCredentials
    let listener: ListenerID
    private(set) var generation: UInt64 = .max
    /// The rules matching this caller, in configuration order.
    private(set) var rules: [AccessRule] = []
    /// Their positions in the listener's rule list: callers with the same ones see the same
    /// servers (ServerVisibility).
    private(set) var ruleIndices: [Int] = []
    /// A set of operations as a bit mask (bit n: opcode n).
    struct Operations: Sendable, Equatable {
        var mask: UInt64 = 0

        mutating func insert(_ op: Opcode) { mask |= 1 << UInt64(op.rawValue & 63) }

        @inline(__always)
        func contains(_ op: Opcode) -> Bool { mask & (1 << UInt64(op.rawValue & 63)) != 0 }
    }

    /// Every operation some matching rule grants, for the per-frame check.
    private(set) var operations = Operations()
    /// The matching rules that grant SIGN_REQUEST: the hot path scans only these.
    private var signRequestRules: [SignRequestGrant] = []

    /// What one matching rule grants SIGN_REQUEST, in a class: reading an `AccessRule` out of
    /// an array copied the whole struct (and retained its sets) on every request.
    final class SignRequestGrant: Sendable {
        let rule: AccessRule

        init(_ rule: AccessRule) { self.rule = rule }

        @inline(__always)
        func allows(server: () -> String, method: UnsafeRawBufferPointer, uri: UnsafeRawBufferPointer) -> Bool {
            rule.allowsServer(server()) && rule.allowsRequest(method: method, uri: uri)
        }
    }
    /// The listener's per-uid rate limit for signing operations, if it has one.
    private(set) var rateLimit: RateLimit?

    init(credentials: PeerCredentials, listener: ListenerID) {
        self.credentials = credentials
        self.listener = listener
    }

    /// Re-matches the rules when the configuration has changed.
    mutating func refresh(_ state: ServingState) {
        guard state.generation != generation else { return }
        generation = state.generation
        let listenerRules = state.rules(forListener: listener.name)
        ruleIndices = listenerRules.indices.filter { listenerRules[$0].matches(credentials) }
        rules = ruleIndices.map { listenerRules[$0] }
        rateLimit = state.rateLimit(forListener: listener.name)
        operations = Operations()
        for op in AccessRule.alwaysAllowed { operations.insert(op) }
        for rule in rules {
            for op in rule.operations { operations.insert(op) }
        }
        signRequestRules = rules.filter { $0.operations.contains(.signRequest) }.map(SignRequestGrant.init)
    }

    @inline(__always)
    func allows(_ op: Opcode) -> Bool { operations.contains(op) }

    func allows(_ op: Opcode, server: String) -> Bool {
        rules.contains { $0.operations.contains(op) && $0.allowsServer(server) }
    }

    /// SIGN_REQUEST: the op, the origin's server, and the rule's method and uri limits must all
    /// be granted by one rule.
    /// `server` is called only if a rule names servers: the origin's `String` is then not read
    /// on the hot path (with many servers, reading it is a cache miss).
    func allowsSignRequest(server: () -> String, method: UnsafeRawBufferPointer, uri: UnsafeRawBufferPointer) -> Bool {
        for grant in signRequestRules where grant.allows(server: server, method: method, uri: uri) { return true }
        return false
    }

    /// What HELLO reports.
    func grantedOperations() -> [Opcode] {
        Opcode.allCases.filter { allows($0) }
    }

    var identity: String { "uid \(credentials.uid) gid \(credentials.gid) pid \(credentials.pid) on listener \(listener.name)" }
}
