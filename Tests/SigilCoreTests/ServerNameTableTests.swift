import Testing

@testable import SigilCore

@Suite("the keyring's name table: lookups by the bytes of a request")
struct ServerNameTableTests {
    static func lookup(_ table: ServerNameTable, _ names: [String], _ name: String) -> Int? {
        Array(name.utf8).withUnsafeBytes { bytes in table.entry(of: bytes) { names[$0] }?.index }
    }

    @Test("20,000 names: each found at its index; near misses (a byte more, less or changed) are not")
    func manyNames() {
        // Lengths across the 8-byte words the hash reads, and names that share long prefixes.
        let names = (0..<20_000).map { n in
            n % 3 == 0 ? "s\(n).example.org" : n % 3 == 1 ? "h\(n).x" : "matrix-\(n).a.very.long.example.com"
        }
        let table = ServerNameTable(names)
        for (index, name) in names.enumerated() {
            #expect(Self.lookup(table, names, name) == index, "\(name)")
            if index % 97 == 0 {
                #expect(Self.lookup(table, names, name + "x") == nil)
                #expect(Self.lookup(table, names, String(name.dropLast())) == nil || names.contains(String(name.dropLast())))
                #expect(Self.lookup(table, names, "Z" + name.dropFirst()) == nil)
            }
        }
        #expect(Self.lookup(table, names, "") == nil)
        #expect(Self.lookup(table, names, "unknown.example.org") == nil)
    }

    @Test("no names, one name, names of every length from 1 to 80 bytes (held in the slot up to 50, past it compared with the String)")
    func smallTables() {
        #expect(Self.lookup(ServerNameTable([]), [], "a") == nil)
        #expect(Self.lookup(ServerNameTable(["a"]), ["a"], "a") == 0)
        #expect(ServerNameTable.inlineNameBytes == 50)
        let names = (1...80).map { String(repeating: "a", count: $0) }
        let table = ServerNameTable(names)
        for (index, name) in names.enumerated() { #expect(Self.lookup(table, names, name) == index) }
        #expect(Self.lookup(table, names, String(repeating: "a", count: 81)) == nil)
        // The same length, one byte changed, at each end and across the inline boundary.
        for length in [8, 49, 50, 51, 80] {
            for position in [0, length / 2, length - 1] {
                var bytes = Array(repeating: UInt8(ascii: "a"), count: length)
                bytes[position] = UInt8(ascii: "b")
                #expect(bytes.withUnsafeBytes { table.entry(of: $0) { names[$0] }?.index } == nil, "length \(length), byte \(position)")
            }
        }
    }

    @Test("a hint for any name, known or not, empty or long, changes no lookup")
    func prefetchHints() {
        let names = (0..<100).map { "h\($0).example.org" }
        let table = ServerNameTable(names)
        let long = String(repeating: "z", count: 65_535)
        for name in names + ["", "unknown", long] {
            Array(name.utf8).withUnsafeBytes { table.prefetch($0) }
        }
        for (index, name) in names.enumerated() { #expect(Self.lookup(table, names, name) == index) }
        // Longer than every name: not found (and not hashed), however long.
        #expect(Self.lookup(table, names, long) == nil)
        #expect(Self.lookup(table, names, names[0] + "x") == nil)
    }

    @Test("each slot gives back the key slot stored with its name (-1 when none was), for inline and long names")
    func keySlots() {
        let names = (1...80).map { "k\(String(repeating: "x", count: $0))" } + ["short.org"]
        let slots = names.indices.map { $0 == 3 ? -1 : Int(Int32.max) - $0 * 1_000 }
        let table = ServerNameTable(names, keySlots: slots)
        for (index, name) in names.enumerated() {
            let entry = Array(name.utf8).withUnsafeBytes { table.entry(of: $0) { names[$0] } }
            #expect(entry?.index == index, "\(name)")
            #expect(entry?.keySlot == slots[index], "\(name)")
        }
        let untold = ServerNameTable(names)
        #expect(Array("short.org".utf8).withUnsafeBytes { untold.entry(of: $0) { names[$0] } }?.keySlot == -1)
    }

    @Test("the keyring answers serverIndex(forName:) through it, past four servers")
    func keyringUsesIt() throws {
        let sources = try (0..<6).map { n in
            Keyring.Source(
                serverName: "s\(n).org", files: [try KeyFile(fixture: "ed25519 \(n) \(TestKeys.specSeedBase64)", path: "<fixture>")])
        }
        let keyring = try Keyring(sources: sources, lockPolicy: .warn)
        for n in 0..<6 {
            let index = Array("s\(n).org".utf8).withUnsafeBytes { keyring.serverIndex(forName: $0) }
            #expect(index.map { keyring.servers[$0].serverName } == "s\(n).org")
        }
        #expect(Array("s6.org".utf8).withUnsafeBytes { keyring.serverIndex(forName: $0) } == nil)
        // The request path's key array: each server's signing key, in the servers' order.
        #expect(keyring.signingKeys.map(\.id) == keyring.servers.map(\.signingKey.id))
        #expect(keyring.signingKeys.map(\.publicKey) == keyring.servers.map(\.signingKey.publicKey))
    }
}
