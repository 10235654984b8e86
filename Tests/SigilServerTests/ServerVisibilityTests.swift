import SigilCore
import Testing

@testable import SigilServer

/// Which servers HELLO and LIST_KEYS show a caller, computed once per set of rules.
@Suite("server visibility for HELLO and LIST_KEYS")
struct ServerVisibilityTests {
    static let names = ["a.org", "b.example.org", "c.example.org", "d.net", "e.org", "example.org"]

    static func keyring() throws -> Keyring {
        let sources = try names.enumerated().map { index, name in
            Keyring.Source(serverName: name, files: [try KeyFile(fixture: "ed25519 k\(index) \(TestKeysSeed.seed)")])
        }
        return try Keyring(sources: sources, lockPolicy: .warn)
    }

    static func visible(_ rules: [AccessRule], _ purpose: ServerVisibility.Purpose) throws -> [String] {
        let keyring = try keyring()
        let visibility = ServerVisibility.compute(rules: rules, purpose: purpose, keyring: keyring)
        return visibility.positions(from: 0, total: keyring.servers.count).map { keyring.servers[$0].serverName }
    }

    @Test("exact names, patterns, '*' and rules naming no servers; rules granting only HELLO show nothing")
    func rules() throws {
        let exact = AccessRule(operations: [.signRequest], servers: try ServerSelector(["e.org", "a.org", "missing.org"]))
        #expect(try Self.visible([exact], .hello) == ["a.org", "e.org"])
        let pattern = AccessRule(operations: [.signRequest], servers: try ServerSelector(["*.example.org"]))
        #expect(try Self.visible([pattern], .hello) == ["b.example.org", "c.example.org"])
        #expect(try Self.visible([exact, pattern], .hello) == ["a.org", "b.example.org", "c.example.org", "e.org"])
        let everything = AccessRule(operations: [.ping], servers: try ServerSelector(["*"]))
        #expect(try Self.visible([exact, everything], .hello) == Self.names)
        #expect(try Self.visible([AccessRule(operations: [.ping])], .hello) == Self.names)
        #expect(try Self.visible([AccessRule(operations: [.hello])], .hello) == [])
        #expect(try Self.visible([], .hello) == [])
    }

    @Test("LIST_KEYS shows only what a rule granting LIST_KEYS names")
    func listKeys() throws {
        let sign = AccessRule(operations: [.signRequest], servers: try ServerSelector(["*"]))
        let list = AccessRule(operations: [.listKeys], servers: try ServerSelector(["d.net"]))
        #expect(try Self.visible([sign, list], .listKeys) == ["d.net"])
        #expect(try Self.visible([sign, list], .hello) == Self.names)
    }

    @Test("paging starts at the first visible position at or after the cursor's")
    func positions() {
        let some = ServerVisibility.some([1, 4, 7, 9])
        #expect(Array(some.positions(from: 0, total: 10)) == [1, 4, 7, 9])
        #expect(Array(some.positions(from: 4, total: 10)) == [4, 7, 9])
        #expect(Array(some.positions(from: 5, total: 10)) == [7, 9])
        #expect(Array(some.positions(from: 10, total: 10)) == [])
        #expect(Array(ServerVisibility.all.positions(from: 8, total: 10)) == [8, 9])
        #expect(Array(ServerVisibility.all.positions(from: 12, total: 10)) == [])
        #expect(some.count(of: 10) == 4 && ServerVisibility.all.count(of: 10) == 10)
    }

    @Test("computed once per listener, rule set and purpose, then shared")
    func cached() {
        let cache = ServerVisibilityCache()
        var computed = 0
        let key = ServerVisibilityCache.Key(listener: "mmr", rules: [0, 2], purpose: .hello)
        for _ in 0..<5 {
            _ = cache.visibility(key) {
                computed += 1; return .all
            }
        }
        _ = cache.visibility(.init(listener: "mmr", rules: [0, 2], purpose: .listKeys)) {
            computed += 1; return .all
        }
        _ = cache.visibility(.init(listener: "admin", rules: [0, 2], purpose: .hello)) {
            computed += 1; return .all
        }
        #expect(computed == 3)
    }
}

/// The Matrix spec's test seed, for keys whose value does not matter here.
private enum TestKeysSeed {
    static let seed = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
}
