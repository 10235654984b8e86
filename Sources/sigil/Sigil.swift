import ArgumentParser

@main
struct Sigil: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sigil",
        abstract: "Operate Sigil: inspect key files, sign and verify Matrix JSON and X-Matrix requests, and talk to a running sigild.",
        subcommands: [
            Keys.self, SignJSON.self, VerifyJSON.self, XMatrix.self,
        ])
}
