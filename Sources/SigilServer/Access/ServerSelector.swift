import SigilCore

/// The servers an access rule covers: every server (`*`), names, and suffix patterns such as
/// `*.example.org` (one or more labels before `.example.org`; not `example.org` itself).
///
/// Patterns exist for daemons that hold thousands of names (key directories): a rule lists the
/// shape of the names, not each one, and a name added by dropping a key file is covered at once.
public struct ServerSelector: Sendable, Equatable, CustomStringConvertible {
    public private(set) var matchesAll = false
    public private(set) var names: Set<String> = []
    /// Each with its leading dot: `.example.org`.
    public private(set) var suffixes: [String] = []

    public static let all = ServerSelector(matchesAll: true)

    private init(matchesAll: Bool) {
        self.matchesAll = matchesAll
    }

    /// Why an entry is not a server name or pattern.
    public struct InvalidEntry: Error, Equatable, CustomStringConvertible {
        public let entry: String
        public var description: String {
            "\(ConfigText.quote(entry)) is neither a server name nor a pattern ('*', or '*.' followed by a server name)"
        }
    }

    public init(_ entries: [String]) throws(InvalidEntry) {
        for entry in entries {
            if entry == "*" {
                matchesAll = true
            } else if entry.hasPrefix("*.") {
                let rest = String(entry.dropFirst(2))
                guard ServerName.isValid(rest), !rest.contains(":") else { throw InvalidEntry(entry: entry) }
                suffixes.append("." + rest)
            } else {
                guard ServerName.isValid(entry) else { throw InvalidEntry(entry: entry) }
                names.insert(entry)
            }
        }
    }

    /// Whether `name` is one of the exact names (patterns aside).
    public var exactNames: Set<String> { names }
    public var hasPatterns: Bool { matchesAll || !suffixes.isEmpty }

    public func matches(_ name: String) -> Bool {
        if matchesAll || names.contains(name) { return true }
        for suffix in suffixes where name.utf8.count > suffix.utf8.count && name.hasSuffix(suffix) { return true }
        return false
    }

    public var description: String {
        ((matchesAll ? ["*"] : []) + names.sorted() + suffixes.map { "*" + $0 }).joined(separator: ", ")
    }
}
