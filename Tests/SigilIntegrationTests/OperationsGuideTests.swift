import Foundation
import SigilPosix
import SigilTestSupport
import Testing

/// docs/operations.md cannot rot: scripts/check-operations-guide runs every block marked
/// `sh test` against the built tools in a sandbox, and the commands an operator must find are
/// checked to be among them.
@Suite("operations guide")
struct OperationsGuideTests {
    static let guidePath = Repository.path("docs/operations.md")
    static let ready =
        findProgram("systemd-socket-activate") != nil && findProgram("systemd-analyze") != nil && findProgram("setpriv") != nil

    /// The fenced blocks with info string `info`, in order.
    static func blocks(_ info: String) throws -> [String] {
        let text = try String(contentsOfFile: guidePath, encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if var open = current {
                if line.trimmingCharacters(in: .whitespaces) == "```" {
                    blocks.append(open.joined(separator: "\n"))
                    current = nil
                } else {
                    open.append(line)
                    current = open
                }
            } else if line.trimmingCharacters(in: .whitespaces) == "```" + info {
                current = []
            }
        }
        return blocks
    }

    @Test(
        "every `sh test` block of docs/operations.md runs, in order, in a sandbox",
        .enabled(if: ready, "needs systemd-socket-activate, systemd-analyze (apt-get install systemd) and setpriv (util-linux)"),
        .enabled(if: Posix.effectiveUID == 0, "the guide's commands are root's (chgrp, setpriv)"))
    func guideRuns() throws {
        // Through bash, so the test does not depend on the script's executable bit.
        let result = try run(
            findProgram("bash") ?? "/bin/bash", [Repository.path("scripts/check-operations-guide"), "--bin", Binaries.directory.path],
            timeout: 120)
        #expect(result.status == 0, "\(result.output)")
        let count = try Self.blocks("sh test").count
        #expect(result.stdout.contains("docs/operations.md: all \(count) tested blocks ran"), "\(result.output)")
    }

    @Test("the steps an operator needs are in the guide, and the ones that can run are tested")
    func guideCoversTheFlow() throws {
        let tested = try Self.blocks("sh test").joined(separator: "\n")
        let untested = try Self.blocks("sh").joined(separator: "\n")
        for command in [
            "generate_signing_key -output mmr.signing.key",
            "combine_signing_keys -format synapse -output merged.signing.key synapse.signing.key /etc/sigil/mmr.signing.key",
            "sigil keys document merged.signing.key --server example.org",
            "sigil key-document --socket /run/sigil/admin.sock --server example.org",
            "sigil ping --socket /run/sigil/admin.sock",
            "sigil stats --socket /run/sigil/admin.sock",
            "CREDENTIALS_DIRECTORY=/etc/sigil sigild --check-config /etc/sigil/sigild.yaml",
            "generate_signing_key -input /etc/dendrite/matrix_key.pem -format mmr -output /etc/sigil/mmr.signing.key",
            "install -m 0644 sigild.service sigild.socket sigild-admin.socket /etc/systemd/system/",
            "systemd-analyze security --offline=true",
            "kill -HUP",
        ] {
            #expect(tested.contains(command), "no tested block runs: \(command)")
        }
        for command in [
            "swift build -c release", "groupadd --system sigil-clients", "systemctl enable --now sigild.socket",
            "systemctl restart matrix-synapse", "curl -s https://example.org/_matrix/key/v2/server", "systemctl reload sigild",
            "systemctl restart sigild.service", "journalctl -u sigild.service",
        ] {
            #expect(untested.contains(command), "the guide does not show: \(command)")
        }
    }

    @Test("the guide's retired-key snippet fits systemd/sigild.yaml")
    func retiredSnippetLoads() throws {
        let snippet = try #require(try Self.blocks("yaml").first { $0.contains("retired:") })
        let filled = snippet.replacingOccurrences(of: "ed25519:OLDID", with: "ed25519:old1")
            .replacingOccurrences(of: "OLD_PUBLIC_KEY", with: TestKeys.specPublicKey)
        let example = try String(contentsOfFile: Repository.path("systemd/sigild.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "sigil-clients", with: "nogroup")
        let anchor = "      - credential:mmr.signing.key\n"
        #expect(example.contains(anchor))
        let config = example.replacingOccurrences(of: anchor, with: anchor + filled + "\n")
        let directory = TemporaryDirectory()
        let credentials = directory.file("credentials")
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: false)
        directory.write("credentials/mmr.signing.key", TestKeys.mmrFile, mode: 0o400)
        let path = directory.write("sigild.yaml", config, mode: 0o644)
        let check = try run(Binaries.path("sigild"), ["--check-config", path], environment: ["CREDENTIALS_DIRECTORY": credentials])
        #expect(check.status == 0, "\(check.output)\n\(config)")
        #expect(check.stdout.contains("retired ed25519:old1"), "\(check.output)")
    }
}
