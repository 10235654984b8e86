import ArgumentParser
import SigilCore
import SigilPosix
import SigilTooling

/// Drop-in for MMR's combine_signing_keys: inputs in argument order, each format detected.
struct CombineSigningKeys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "combine_signing_keys",
        abstract: "Combine signing keys from several files (any format) into one file.",
        discussion: """
            Keys are written in argument order, and in file order within each file. Put the \
            homeserver's existing key first: Synapse signs events with the first key of its file. \
            A key version that appears twice is refused. The output is written with mode 0600.
            """)

    @Option(name: [.customLong("output", withSingleDash: true), .long], help: "The file to write.")
    var output = "./signing.key"

    @Option(name: [.customLong("format", withSingleDash: true), .long], help: "mmr, synapse or dendrite.")
    var format: KeyFileFormat = .mmr

    @Argument(help: "Key files to combine, in order.")
    var inputs: [String] = []

    func run() {
        Self.failing {
            let keys = try KeyTools.combine(inputs: inputs, format: format, output: output)
            for key in keys { print("Added \(key.id) (public \(key.publicKey.base64))") }
            print("Wrote \(keys.count) key\(keys.count == 1 ? "" : "s") to \(output) (\(format) format, mode 0600)")
        }
    }
}

CombineSigningKeys.main()
