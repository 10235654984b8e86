import Foundation
import SigilTestSupport
import Testing

@testable import SigilServer

/// docs/configuration.md and the loader describe the same keys: a key the loader accepts that
/// the document does not describe fails this test, and so does a documented key the loader
/// refuses.
@Suite("Configuration reference")
struct ConfigurationReferenceTests {
    /// Keys documented under each `<!-- keys: SECTION -->` marker: the first column of the
    /// table that follows it.
    static func documentedKeys() throws -> [String: Set<String>] {
        let text = try String(contentsOfFile: Repository.path("docs/configuration.md"), encoding: .utf8)
        var sections: [String: Set<String>] = [:]
        var current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("<!-- keys: "), let end = line.range(of: " -->") {
                let name = String(line[line.index(line.startIndex, offsetBy: 11)..<end.lowerBound])
                current = name == "(top level)" ? "" : name
                sections[current!, default: []] = []
                continue
            }
            guard let section = current else { continue }
            if line.trimmingCharacters(in: .whitespaces).isEmpty {
                if !(sections[section]?.isEmpty ?? true) { current = nil }
                continue
            }
            let cells = line.split(separator: "|", omittingEmptySubsequences: false)
            guard cells.count > 2 else { continue }
            let first = cells[1].trimmingCharacters(in: .whitespaces)
            if first.hasPrefix("`") && first.hasSuffix("`") && first.count > 2 {
                sections[section, default: []].insert(String(first.dropFirst().dropLast()))
            }
        }
        return sections
    }

    @Test("every section, every key: the document and the loader agree")
    func agree() throws {
        let documented = try Self.documentedKeys()
        #expect(
            Set(documented.keys) == Set(ConfigLoader.schema.keys),
            "sections: document \(documented.keys.sorted()), loader \(ConfigLoader.schema.keys.sorted())")
        for (section, keys) in ConfigLoader.schema {
            let described = documented[section] ?? []
            #expect(
                keys.subtracting(described).isEmpty,
                "section '\(section)': accepted but not documented: \(keys.subtracting(described).sorted())")
            #expect(
                described.subtracting(keys).isEmpty,
                "section '\(section)': documented but not accepted: \(described.subtracting(keys).sorted())")
        }
    }

    @Test("the document's example loads")
    func example() throws {
        let text = try String(contentsOfFile: Repository.path("docs/configuration.md"), encoding: .utf8)
        let start = try #require(text.range(of: "## An example\n\n```yaml\n"))
        let end = try #require(text.range(of: "```", range: start.upperBound..<text.endIndex))
        let yaml = String(text[start.upperBound..<end.lowerBound]).replacingOccurrences(of: "user: root", with: "uid: 0")
            .replacingOccurrences(of: "group: sigil-clients", with: "gid: 4242")
            .replacingOccurrences(of: "BASE64PUBLICKEY", with: TestKeys.specPublicKey)
        let configuration = try ConfigLoader.parse(yaml, path: "example.yaml")
        #expect(configuration.listeners.map(\.name) == ["mmr", "admin"])
        #expect(configuration.keyDirectories.first?.suffix == ".key")
        #expect(configuration.listeners[0].rateLimit == RateLimit(perSecond: 200, burst: 400))
    }
}
