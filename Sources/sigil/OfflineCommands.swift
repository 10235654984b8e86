import ArgumentParser
import SigilClient
import SigilCore
import SigilPosix
import SigilTooling

/// Reads all of standard input (JSON documents, never key material).
func readStandardInput(limit: Int = 16 << 20) throws -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = try chunk.withUnsafeMutableBytes { try Posix.read(0, into: $0) }
        if n == 0 { return out }
        out.append(contentsOf: chunk[..<n])
        guard out.count <= limit else { throw ToolError("standard input is larger than \(limit) bytes") }
    }
}

/// The signing key of a file: its first key, as Synapse and MMR use it.
func firstKey(of path: String) throws -> SigningKey {
    try KeyTools.load(path).loadKeys(lockPolicy: KeyTools.lockPolicy)[0]
}

struct SignJSON: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign-json",
        abstract: "Sign a JSON object from standard input; print it, signed and canonical, on standard output.",
        discussion: "With --key the key file is read here; otherwise sigild signs (it must grant sign_json). Existing signatures are kept.")

    @Option(help: "Key file; its first key signs. Without it, sigild signs.")
    var key: String?

    @OptionGroup var socket: SocketOption

    @Option(help: "The server name to sign as.")
    var server: String

    func run() {
        Self.failing {
            let input = try readStandardInput()
            let signed: [UInt8]
            if let key {
                guard socket.socket == nil else { throw ToolError("give either --key FILE or --socket PATH, not both") }
                signed = try JSONSigning.sign(input, serverName: server, keys: [try firstKey(of: key)])
            } else {
                signed = try socket.client().signJSON(server: server, json: input)
            }
            print(String(decoding: signed, as: UTF8.self))
        }
    }
}

struct VerifyJSON: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-json",
        abstract: "Check a server's signatures on a JSON object from standard input. Exit status 0: valid; 1: not.",
        discussion: "Checked here with --public-key; with --socket, sigild checks (with --public-key, or else its own keys for --server).")

    @Option(help: "The server whose signatures to check.")
    var server: String

    @Option(name: .customLong("public-key"), help: "ed25519:ID=PUBLICKEY. Repeatable.")
    var publicKeys: [String] = []

    @Option(name: .long, help: "sigild's socket, to check there instead.")
    var socket: String?

    func run() {
        Self.failing {
            var keys: [(id: KeyID, key: PublicKey)] = []
            for text in publicKeys {
                guard let equals = text.firstIndex(of: "="), let id = KeyID(String(text[..<equals])),
                    let key = PublicKey(base64: text[text.index(after: equals)...])
                else { throw ToolError("--public-key \(ToolError.quoting(text)): expected ed25519:ID=PUBLICKEY (32 bytes of base64)") }
                keys.append((id, key))
            }
            let input = try readStandardInput()
            var outcomes: [(String, SignatureOutcome)] = []
            let valid: Bool
            if let socket {
                let verdict = try SigilClient(socketPath: socket).verifyJSON(
                    VerifyJSONParams(server: server, keys: keys.map { ($0.id.description, $0.key) }, json: input))
                outcomes = verdict.outcomes.map { ($0.id, $0.outcome) }
                valid = verdict.isValid
            } else {
                guard !keys.isEmpty else { throw ToolError("give at least one --public-key ed25519:ID=PUBLICKEY (or --socket)") }
                var map: [KeyID: PublicKey] = [:]
                for (id, key) in keys { map[id] = key }
                let result = try JSONSigning.verify(input, serverName: server, publicKeys: map)
                outcomes =
                    result.valid.map { ($0.description, .valid) } + result.invalid.map { ($0.description, .invalid) }
                    + result.missing.map { ($0.description, .missing) }
                valid = result.isValid
            }
            for (id, outcome) in outcomes {
                switch outcome {
                case .valid: Posix.printError("valid: \(server) \(id)")
                case .invalid: Posix.printError("INVALID: \(server) \(id)")
                case .missing: Posix.printError("missing: no signature by \(server) \(id)")
                }
            }
            if !valid { Self.exit(withError: ExitCode.failure) }
        }
    }
}

struct XMatrix: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "x-matrix",
        abstract: "Print the X-Matrix Authorization header for an outbound federation request.")

    @Option(help: "Key file; its first key signs.")
    var key: String
    @OptionGroup var request: OutboundRequestOptions

    func run() {
        Self.failing {
            let signingKey = try firstKey(of: key)
            let signer = XMatrixSigner()
            let signed = try signer.sign(
                origin: request.origin, destination: request.destination, method: request.method, uri: request.uri,
                content: try request.body(), key: signingKey)
            print(signed.header)
        }
    }
}
