import ArgumentParser
import SigilClient
import SigilCore
import SigilPosix
import SigilTooling

/// `--socket`, shared by every command that talks to sigild.
struct SocketOption: ParsableArguments {
    @Option(name: .long, help: "sigild's socket (default: $SIGIL_SOCKET, else /run/sigil/sigild.sock).")
    var socket: String?

    var path: String { socket ?? Posix.environment("SIGIL_SOCKET") ?? "/run/sigil/sigild.sock" }

    func client() -> SigilClient { SigilClient(socketPath: path, timeout: 30) }
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that sigild answers; print its version, limits and what it allows us.")

    @OptionGroup var socket: SocketOption

    @Option(help: "Round trips to time.")
    var count = 3

    func run() {
        Self.failing {
            let client = socket.client()
            let info = try client.hello(clientName: "sigil-cli")
            var best = UInt64.max
            for _ in 0..<max(1, count) {
                let start = Posix.monotonicNanoseconds()
                _ = try client.ping()
                best = min(best, Posix.monotonicNanoseconds() - start)
            }
            print(
                "sigild \(info.daemonVersion) at \(socket.path): protocol \(info.protocolVersion), best round trip \(String(Double(best) / 1000)) µs"
            )
            print("  allowed operations: \(info.operations.map(\.name).joined(separator: ", "))")
            print("  servers: \(info.servers.isEmpty ? "(none)" : info.servers.joined(separator: ", "))")
            print("  limits: frame \(info.maxFrameLength) bytes, batch \(info.maxBatchItems) items, \(info.maxInFlight) in flight")
        }
    }
}

struct ListKeys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the keys a running sigild serves (public keys only).")

    @OptionGroup var socket: SocketOption

    func run() {
        Self.failing {
            let listing = try socket.client().listKeys()
            for server in listing.servers {
                print(server.name)
                for key in server.keys {
                    let state: String
                    switch key.state {
                    case .signing: state = "signing"
                    case .active: state = "active"
                    case .retired: state = "retired, expired_ts \(key.expiredTS)"
                    }
                    print("  \(key.id)  \(key.publicKey.base64)  (\(state))")
                }
            }
        }
    }
}

struct SignRequest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign-request", abstract: "Have sigild sign an outbound federation request; print the X-Matrix header.")

    @OptionGroup var socket: SocketOption
    @OptionGroup var request: OutboundRequestOptions

    func run() {
        Self.failing {
            let signed = try socket.client().signRequest(
                origin: request.origin, destination: request.destination, method: request.method, uri: request.uri,
                content: try request.body())
            print(signed.header)
        }
    }
}

struct KeyDocumentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key-document", abstract: "Print the signed /_matrix/key/v2/server document from a running sigild.")

    @OptionGroup var socket: SocketOption
    @Option(help: "The server name.")
    var server: String
    @Option(name: .customLong("valid-until-ts"), help: "valid_until_ts in ms (default: now plus the configured validity).")
    var validUntil: UInt64 = 0

    func run() {
        Self.failing {
            print(String(decoding: try socket.client().keyDocument(server: server, validUntilTS: validUntil), as: UTF8.self))
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Have sigild check an Ed25519 signature over standard input. Exit status 0: valid; 1: not.")

    @OptionGroup var socket: SocketOption
    @Option(name: .customLong("public-key"), help: "The public key (base64).")
    var publicKey: String?
    @Option(help: "Or: a server in sigild's keyring…")
    var server: String?
    @Option(name: .customLong("key-id"), help: "…and one of its key IDs (active or retired).")
    var keyID: String?
    @Option(help: "The signature (base64).")
    var signature: String

    func run() {
        Self.failing {
            let key: VerifyParams.Key
            if let publicKey {
                guard let parsed = PublicKey(base64: publicKey) else { throw ToolError("--public-key: expected 32 bytes of base64") }
                key = .publicKey(parsed)
            } else if let server, let keyID {
                key = .keyID(server: server, id: keyID)
            } else {
                throw ToolError("give --public-key, or --server with --key-id")
            }
            guard let signatureBytes = Base64.decode(signature) else { throw ToolError("--signature: not base64") }
            let valid = try socket.client().verify(VerifyParams(key: key, message: try readStandardInput(), signature: signatureBytes))
            Posix.printError(valid ? "valid" : "INVALID")
            if !valid { Self.exit(withError: ExitCode.failure) }
        }
    }
}

struct VerifyRequest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-request",
        abstract: "Check an inbound federation request's X-Matrix authorization. Exit status 0: valid; 1: not.",
        discussion: "With --socket, sigild checks it; without, this command does. Keys: --origin-key ORIGIN/ed25519:ID=PUBLICKEY.")

    @Option(name: .long, help: "sigild's socket; omit to check locally.")
    var socket: String?
    @Option(name: .customLong("authorization"), help: "An Authorization header value. Repeatable.")
    var authorizations: [String]
    @Option(help: "HTTP method.")
    var method = "GET"
    @Option(help: "The request target exactly as received.")
    var uri: String
    @Option(help: "Our server name (the request's destination).")
    var destination: String
    @Option(help: "A file holding the JSON request body, if there is one.")
    var content: String?
    @Option(name: .customLong("origin-key"), help: "ORIGIN/ed25519:ID=PUBLICKEY. Repeatable; none means sigild's own keyring.")
    var originKeys: [String] = []

    func run() {
        Self.failing {
            let keys = try originKeys.map(parseOriginKey)
            let body = try content.map(readFile)
            let params = VerifyRequestParams(
                authorizations: authorizations, method: method, uri: uri, destination: destination, content: body, keys: keys)
            let result: RequestVerification
            if let socket {
                result = try SigilClient(socketPath: socket).verifyRequest(params)
            } else {
                guard !keys.isEmpty else { throw ToolError("without --socket, give the origin's keys with --origin-key") }
                let verification = XMatrixVerifier.verify(
                    authorizations: authorizations, method: method, uri: uri, destination: destination, content: body
                ) { origin, id in keys.first { $0.server == origin && $0.id == id.description }?.publicKey }
                result = RequestVerification(verdict: RequestVerdict(verification), origin: "", keyID: "", detail: verification.description)
            }
            Posix.printError(result.detail)
            if !result.isValid { Self.exit(withError: ExitCode.failure) }
        }
    }

    private func parseOriginKey(_ text: String) throws -> GivenKey {
        guard let slash = text.firstIndex(of: "/"), let equals = text.lastIndex(of: "="), slash < equals,
            let key = PublicKey(base64: text[text.index(after: equals)...])
        else { throw ToolError("--origin-key \(ToolError.quoting(text)): expected ORIGIN/ed25519:ID=PUBLICKEY") }
        return GivenKey(server: String(text[..<slash]), id: String(text[text.index(after: slash)..<equals]), publicKey: key)
    }
}

/// An outbound federation request, as `sign-request` and `x-matrix` take it.
struct OutboundRequestOptions: ParsableArguments {
    @Option(help: "Our server name (its key signs).")
    var origin: String
    @Option(help: "The server the request goes to (before delegation).")
    var destination: String
    @Option(help: "HTTP method.")
    var method = "GET"
    @Option(help: "The request target exactly as sent, e.g. /_matrix/federation/v1/media/download/abc.")
    var uri: String
    @Option(help: "A file holding the JSON request body, if the request has one.")
    var content: String?

    func body() throws -> [UInt8]? { try content.map(readFile) }
}

func readFile(_ path: String) throws -> [UInt8] {
    do {
        return try Posix.readSmallFile(path, limit: 16 << 20)
    } catch {
        throw ToolError("cannot read \(path): \(error)")
    }
}
