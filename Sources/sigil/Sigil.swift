import ArgumentParser

@main
struct Sigil: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sigil",
        abstract: "Operate Sigil: inspect key files, sign and verify Matrix JSON and X-Matrix requests, and talk to a running sigild.",
        discussion: "Commands that talk to sigild take --socket PATH (default: $SIGIL_SOCKET, else /run/sigil/sigild.sock).",
        subcommands: [
            Ping.self, Keys.self, SignRequest.self, SignJSON.self, Verify.self, VerifyJSON.self, VerifyRequest.self,
            KeyDocumentCommand.self, Stats.self, XMatrix.self,
        ])
}
