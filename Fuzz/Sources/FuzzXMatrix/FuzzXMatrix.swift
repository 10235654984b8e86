import FuzzSupport
import SigilCore

@_cdecl("FuzzXMatrix_main")
public func fuzzXMatrixMain(argc: Int32, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzMain(XMatrixTarget.self, argc: argc, argv: argv)
}

/// X-Matrix headers and requests. The input is lines: origin, destination, method, uri, an
/// Authorization header value, then the request body (none when empty). The key is the spec's
/// test key as `ed25519:1`, known for every origin.
///
/// - the header parses or is refused at an offset inside it; a parsed header re-formats and
///   parses back to itself;
/// - the verifier never says `valid` unless the header carries exactly the signature Sigil's
///   signer makes for the request (Ed25519 signatures are deterministic);
/// - a request the signer accepts verifies with the header it made, and stops verifying when the
///   signature, destination or body changes; one it refuses is refused for the first of its
///   fields that fails the spec's grammar.
enum XMatrixTarget: FuzzTarget {
    static let key: SigningKey = {
        let file = try! KeyFile(fixture: "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
        return try! file.loadKeys(lockPolicy: .warn)[0]
    }()
    nonisolated(unsafe) static let signer = XMatrixSigner()

    static func lookup(_ origin: String, _ id: KeyID) -> PublicKey? { id == key.id ? key.publicKey : nil }

    struct Fields {
        var origin, destination, method, uri, header: String
        var content: [UInt8]?
    }

    static func run(_ input: UnsafeRawBufferPointer) {
        var reader = FuzzReader(input)
        func line() -> String { String(decoding: reader.bytes(until: 0x0A), as: UTF8.self) }
        let fields = Fields(origin: line(), destination: line(), method: line(), uri: line(), header: line(), content: nil)
        var request = fields
        let rest = reader.rest()
        request.content = rest.isEmpty ? nil : rest
        checkHeader(request.header)
        checkVerifier(request)
        checkSigner(request)
    }

    static func checkHeader(_ header: String) {
        let parsed: XMatrixAuthorization
        do {
            parsed = try XMatrixAuthorization(parsing: header)
        } catch {
            fuzzCheck((0...header.utf8.count).contains(error.offset), "error offset outside the header: \(error)")
            return
        }
        fuzzCheck(XMatrixAuthorization.usesXMatrixScheme(header), "parsed a header that does not use the scheme")
        fuzzCheck(ServerName.isValid(parsed.origin), "origin \(parsed.origin) accepted")
        if let destination = parsed.destination { fuzzCheck(ServerName.isValid(destination), "destination \(destination) accepted") }
        let destination = parsed.destination.map { #",destination="\#($0)""# } ?? ""
        let formatted = #"X-Matrix origin="\#(parsed.origin)"\#(destination),key="\#(parsed.keyID)",sig="\#(parsed.signature.base64)""#
        let again = try? XMatrixAuthorization(parsing: formatted)
        fuzzCheck(again == parsed, "\(formatted) parses to \(String(describing: again)), not \(parsed)")
    }

    static func checkVerifier(_ request: Fields) {
        let result = XMatrixVerifier.verify(
            authorizations: [request.header], method: request.method, uri: request.uri, destination: request.destination,
            content: request.content, publicKeys: lookup)
        guard case .valid(let origin, let keyID) = result else { return }
        let parsed = try? XMatrixAuthorization(parsing: request.header)
        fuzzCheck(parsed?.origin == origin && keyID == key.id, "valid for \(origin) \(keyID) from \(request.header)")
        let own = try? signer.sign(
            origin: origin, destination: request.destination, method: request.method, uri: request.uri, content: request.content, key: key)
        fuzzCheck(own?.signature == parsed?.signature, "a signature the signer would not make verified")
    }

    static func checkSigner(_ request: Fields) {
        let signed: SignedRequest
        do {
            signed = try signer.sign(
                origin: request.origin, destination: request.destination, method: request.method, uri: request.uri,
                content: request.content,
                key: key)
        } catch {
            let expected = expectedRefusal(request)
            fuzzCheck(expected == error, "signer refused with \(error), expected \(String(describing: expected))")
            return
        }
        fuzzCheck(expectedRefusal(request) == nil, "signer accepted a request it should refuse: \(expectedRefusal(request)!)")
        let parsed = try? XMatrixAuthorization(parsing: signed.header)
        fuzzCheck(
            parsed?.origin == request.origin && parsed?.destination == request.destination && parsed?.keyID == key.id
                && parsed?.signature == signed.signature,
            "the signer's header \(signed.header) parses to \(String(describing: parsed))")

        func verify(_ header: String, destination: String? = nil, content: [UInt8]?? = .none) -> XMatrixVerification {
            XMatrixVerifier.verify(
                authorizations: [header], method: request.method, uri: request.uri, destination: destination ?? request.destination,
                content: content ?? request.content, publicKeys: lookup)
        }
        let result = verify(signed.header)
        fuzzCheck(result == .valid(origin: request.origin, keyID: key.id), "the signer's own header gave \(result)")

        func header(signature: [UInt8]) -> String {
            #"X-Matrix origin="\#(request.origin)",destination="\#(request.destination)",key="\#(key.id)",sig="\#(Signature(bytes: signature)!.base64)""#
        }
        fuzzCheck(signed.header == header(signature: signed.signature.bytes), "not MMR's header layout: \(signed.header)")
        var tampered = signed.signature.bytes
        tampered[Int(tampered[0]) % 64] ^= 1 << (tampered[1] % 8)
        let forged = header(signature: tampered)
        fuzzCheck(verify(forged) == .badSignature(key.id), "a changed signature gave \(verify(forged))")
        let elsewhere = request.destination == "other.example" ? "another.example" : "other.example"
        fuzzCheck(
            verify(signed.header, destination: elsewhere) == .destinationMismatch(request.destination), "replay to another destination")
        if request.content != nil {
            fuzzCheck(verify(signed.header, content: .some(nil)) == .badSignature(key.id), "verified without its body")
        }
    }

    /// The refusal the spec's grammar calls for, checking the fields in the signer's order.
    static func expectedRefusal(_ request: Fields) -> XMatrixRequestError? {
        if !Grammar.isServerName(request.origin.utf8) { return .invalidOrigin }
        if !Grammar.isServerName(request.destination.utf8) { return .invalidDestination }
        if !Grammar.isMethod(request.method.utf8) { return .invalidMethod }
        if !Grammar.isURI(request.uri.utf8) { return .invalidURI }
        if let content = request.content {
            do {
                _ = try CanonicalJSON.canonicalize(content)
            } catch {
                return .invalidContent(error)
            }
        }
        return nil
    }

    static var seeds: [[UInt8]] {
        let vectors: [(String, String, String, String?, String)] = [
            (
                "example.org", "GET", "/_matrix/federation/v1/media/download/abc123", nil,
                "UxgQZoKQVT7ekj4hjL7QlLRJwA7YaGP7mDBBXDITiGiVDxcGOep/LlSrlzfWGQ6GvgeMdydmBp2v9r+rHdKhDA"
            ),
            (
                "example.org:8448", "GET", "/_matrix/federation/v1/media/thumbnail/abc123?width=32&height=32&method=crop", nil,
                "xUdl0crwyIIxOoybW4873YLdTI/rENy856g/SH9OLZkeNyMDpmyxNpCr53LWHnEYO5PQ9OJ/6JKqkbkpV0IdCg"
            ),
            (
                "example.org", "PUT", "/_matrix/federation/v1/send/1", #"{"pdus": [], "edus": []}"#,
                "UHEIs1sToaPQ7o8tKTAPKYmK1R4jt64IKM/aaTH51wdAtzU6wWFd6r+bIC5Y+/LWozlLxBq9706047+gWxfuBg"
            ),
            (
                "[::1]:8448", "GET", "/_matrix/key/v2/query/a%2Fb?x=1", nil,
                "nmlKmVMLJQ+4YgYc7hip1fXpVuSNFPd2DstsoKToq+bwYQj9Z4xL7GKsgHCpRnYpAK1anavGLD4CpJ/+d3S5Bg"
            ),
            ("example.org", "GET", "/x", "null", "D5aG71ruFTcnTGsLt4RZFA8uPInvqFd3mKJVn5aYT3fCZQQzD8yR7lo+gqJMpQNdoAQmLXAYX/D66sa66We0Aw"),
        ]
        var seeds: [[UInt8]] = []
        for (destination, method, uri, content, sig) in vectors {
            let headers = [
                #"X-Matrix origin="domain",destination="\#(destination)",key="ed25519:1",sig="\#(sig)""#,
                "x-matrix  Origin=domain ,\tKEY=\"ed25519:1\" , signature=\"\(sig)==\"",
                #"X-Matrix origin="d\o\m\a\i\n",key="ed25519:1",note="a, b = \"c\"",sig="\#(sig)""#,
            ]
            for header in headers {
                seeds.append(Array("domain\n\(destination)\n\(method)\n\(uri)\n\(header)\n\(content ?? "")".utf8))
            }
        }
        for header in ["X-Matrix", "X-Matrix ", #"X-Matrix origin="domain"#, #"X-Matrix origin="domain",,key="ed25519:1""#, "Bearer x"] {
            seeds.append(Array("domain\nexample.org\nGET\n/\n\(header)\n".utf8))
        }
        seeds.append(
            Array(
                "[2001:db8::1]\n1.2.3.4:5\nPOST\n/a?b\nX-Matrix origin=[2001:db8::1],key=ed25519:1,sig=AAAA\n{\"b\":[1,{\"a\":null}]}".utf8)
        )
        return seeds
    }
}
