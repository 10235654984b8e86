import ArgumentParser
import SigilCore
import SigilPosix
import SigilTooling

/// Drop-in for MMR's generate_signing_key: the same single-dash flags and defaults.
struct GenerateSigningKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate_signing_key",
        abstract: "Generate an Ed25519 signing key, or convert an existing one, for MMR, Synapse or Dendrite.",
        discussion: """
            Writes the key with mode 0600. With -input, no key is generated: the first key of that \
            file (any format, detected) is written in -format instead.
            """)

    @Option(name: [.customLong("output", withSingleDash: true), .long], help: "The file to write.")
    var output = "./signing.key"

    @Option(name: [.customLong("format", withSingleDash: true), .long], help: "mmr, synapse or dendrite.")
    var format: KeyFileFormat = .mmr

    @Option(
        name: [.customLong("input", withSingleDash: true), .long], help: "Convert the first key of this file instead of generating one.")
    var input: String?

    func run() {
        Self.failing {
            if let input {
                print("Converting the first key of \(input) to \(format) format")
            }
            let key = try KeyTools.generate(output: output, format: format, input: input)
            print("Key ID will be '\(key.id)'")
            print("Public key: \(key.publicKey.base64)")
            print("Wrote \(output) (\(format) format, mode 0600)")
        }
    }
}

GenerateSigningKey.main()
