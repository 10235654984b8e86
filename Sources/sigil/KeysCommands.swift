import ArgumentParser
import SigilCore
import SigilPosix
import SigilTooling

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List a running sigild's keys, inspect key files, build key-server documents.",
        subcommands: [ListKeys.self, Show.self, Document.self],
        defaultSubcommand: ListKeys.self)

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a key file's format, key IDs and public keys (never private material).")

        @Argument(help: "A key file in MMR, Synapse or Dendrite format.")
        var file: String

        func run() {
            Self.failing {
                let keyFile = try KeyTools.load(file)
                let keys = try keyFile.loadKeys(lockPolicy: KeyTools.lockPolicy)
                print("\(file): \(keyFile.format) format, \(keys.count) key\(keys.count == 1 ? "" : "s")")
                for (index, (key, entry)) in zip(keys, keyFile.entries).enumerated() {
                    let role = index == 0 ? "  (first: signs)" : ""
                    print("  \(key.id)  \(key.publicKey.base64)  line \(entry.line)\(role)")
                }
            }
        }
    }

    struct Document: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the signed /_matrix/key/v2/server document for a key file.",
            discussion: """
                Every key in the file is published in verify_keys and signs the document. Retired \
                keys go in old_verify_keys with --old-key ed25519:ID=PUBLICKEY@EXPIRED_TS (milliseconds).
                """)

        @Argument(help: "A key file in MMR, Synapse or Dendrite format.")
        var file: String

        @Option(help: "The server name the keys belong to.")
        var server: String

        @Option(name: .customLong("old-key"), help: "A retired key: ed25519:ID=PUBLICKEY@EXPIRED_TS. Repeatable.")
        var oldKeys: [String] = []

        @Option(name: .customLong("valid-for"), help: "How long remote servers may cache the document (e.g. 1d, 12h).")
        var validFor = "1d"

        func run() {
            Self.failing {
                let validity = try DurationText.milliseconds(validFor)
                guard validity > 0 else { throw ToolError("--valid-for must be positive") }
                if validity > KeyDocument.maxValidity {
                    Posix.printError("warning: remote servers cap valid_until_ts at 7 days")
                } else if validity < KeyDocument.minValidity {
                    Posix.printError("warning: the spec asks origins not to serve key documents that expire within an hour")
                }
                let retired = try oldKeys.map(parseOldKey)
                let keyFile = try KeyTools.load(file)
                let keyring = try Keyring(
                    sources: [Keyring.Source(serverName: server, files: [keyFile], retired: retired)], lockPolicy: KeyTools.lockPolicy)
                let document = KeyDocument.build(for: keyring.servers[0], validUntilTS: Posix.wallClockMilliseconds() + validity)
                print(String(decoding: document, as: UTF8.self))
            }
        }

        private func parseOldKey(_ text: String) throws -> RetiredKey {
            let usage = "--old-key \(ToolError.quoting(text)): expected ed25519:ID=PUBLICKEY@EXPIRED_TS"
            guard let equals = text.firstIndex(of: "="), let at = text.lastIndex(of: "@"), equals < at else { throw ToolError(usage) }
            guard let id = KeyID(String(text[..<equals])) else { throw ToolError("\(usage) (the ID must be ed25519:VERSION)") }
            guard let publicKey = PublicKey(base64: text[text.index(after: equals)..<at]) else {
                throw ToolError("\(usage) (the public key must be 32 bytes of base64)")
            }
            guard let expired = Int64(text[text.index(after: at)...]), expired >= 0 else {
                throw ToolError("\(usage) (EXPIRED_TS is milliseconds since the epoch)")
            }
            return RetiredKey(id: id, publicKey: publicKey, expiredTS: expired)
        }
    }
}
