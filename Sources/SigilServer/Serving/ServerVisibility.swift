import SigilCore
import SigilPosix

/// Which of the keyring's servers a caller sees in HELLO or LIST_KEYS: all of them, or these
/// positions in the keyring (ascending, so in name order).
///
/// Computed once per configuration, listener and set of matching rules, and shared by every
/// connection with that set: HELLO and LIST_KEYS used to test every server against every rule
/// on each request, which with 100,000 servers took tens of milliseconds of the event loop for
/// one caller granted one server.
enum ServerVisibility: Sendable {
    case all
    case some([Int32])

    /// How many servers are visible, of `total`.
    func count(of total: Int) -> Int {
        switch self {
        case .all: return total
        case .some(let positions): return positions.count
        }
    }

    /// The visible positions from `start` on, in order.
    func positions(from start: Int, total: Int) -> AnySequence<Int> {
        switch self {
        case .all:
            return AnySequence(start..<max(start, total))
        case .some(let positions):
            // The first visible position at or after `start`.
            var low = 0
            var high = positions.count
            while low < high {
                let middle = (low + high) / 2
                if Int(positions[middle]) < start { low = middle + 1 } else { high = middle }
            }
            return AnySequence(positions[low...].lazy.map { Int($0) })
        }
    }

    /// Who sees what: HELLO lists the servers some rule grants an operation beyond HELLO for;
    /// LIST_KEYS the servers some rule grants LIST_KEYS for.
    enum Purpose: Sendable, Hashable {
        case hello
        case listKeys

        func counts(_ rule: AccessRule) -> Bool {
            switch self {
            case .hello: return !rule.operations.isSubset(of: AccessRule.alwaysAllowed)
            case .listKeys: return rule.operations.contains(.listKeys)
            }
        }
    }

    /// The servers `rules` let a caller see, for `purpose`.
    static func compute(rules: [AccessRule], purpose: Purpose, keyring: Keyring) -> ServerVisibility {
        let counted = rules.filter(purpose.counts)
        var selectors: [ServerSelector] = []
        for rule in counted {
            guard let selector = rule.servers else { return .all }
            if selector.matchesAll { return .all }
            selectors.append(selector)
        }
        var positions: Set<Int32> = []
        if selectors.contains(where: \.hasPatterns) {
            // Suffix patterns: one pass over the names, once per configuration.
            for (position, server) in keyring.servers.enumerated() where selectors.contains(where: { $0.matches(server.serverName) }) {
                positions.insert(Int32(position))
            }
        } else {
            for selector in selectors {
                for name in selector.exactNames {
                    if let position = Array(name.utf8).withUnsafeBytes({ keyring.serverIndex(forName: $0) }) {
                        positions.insert(Int32(position))
                    }
                }
            }
        }
        return .some(positions.sorted())
    }
}

/// The visibilities computed so far for one configuration, by listener, matching rules and
/// purpose. Bounded: past `limit` entries, a visibility is computed and not kept.
final class ServerVisibilityCache: Sendable {
    struct Key: Hashable, Sendable {
        let listener: String
        /// Positions of the matching rules in the listener's rule list.
        let rules: [Int]
        let purpose: ServerVisibility.Purpose
    }

    static let limit = 4096
    private let entries = Locked<[Key: ServerVisibility]>([:])

    func visibility(_ key: Key, compute: () -> ServerVisibility) -> ServerVisibility {
        if let known = entries.withLock({ $0[key] }) { return known }
        let computed = compute()
        entries.withLock { entries in
            if entries.count < ServerVisibilityCache.limit { entries[key] = computed }
        }
        return computed
    }
}
