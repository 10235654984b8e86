import SigilCore
import Testing

/// Every request and response layout survives encode and decode, and a body with a byte too many
/// or too few is refused naming the field.
@Suite("Request and Response codecs")
struct CodecRoundTripTests {
    static let key = PublicKey(base64: "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI")!

    static let requests: [Request] = [
        .hello(clientName: "mmr"),
        .hello(clientName: "", page: HelloPage(features: 0, cursor: "a.example")),
        .ping(payload: [1, 2, 3]),
        .listKeys(),
        .listKeys(cursor: ""),
        .listKeys(cursor: "m.example"),
        .signRequest(SignRequestParams(origin: "domain", destination: "example.org:8448", method: "GET", uri: "/x?y=1")),
        .signRequest(
            SignRequestParams(origin: "domain", destination: "example.org", method: "PUT", uri: "/x", content: Array(#"{"a":1}"#.utf8))),
        .signJSON(server: "domain", json: Array("{}".utf8)),
        .signRaw(server: "domain", keyID: nil, message: [9]),
        .signRaw(server: "domain", keyID: "ed25519:1", message: []),
        .verify(VerifyParams(key: .publicKey(key), message: [1], signature: [2])),
        .verify(VerifyParams(key: .keyID(server: "domain", id: "ed25519:1"), message: [], signature: [])),
        .verifyJSON(VerifyJSONParams(server: "domain", keys: [(id: "ed25519:1", publicKey: key)], json: Array("{}".utf8))),
        .verifyJSON(VerifyJSONParams(server: "domain", keys: [], json: Array("{}".utf8))),
        .verifyRequest(
            VerifyRequestParams(
                authorizations: ["X-Matrix origin=a", "Bearer x"], method: "GET", uri: "/x", destination: "domain", content: nil,
                keys: [GivenKey(server: "a", id: "ed25519:1", publicKey: key)])),
        .keyDocument(server: "domain", validUntilTS: 0),
        .stats,
    ]

    @Test("every request, every opcode")
    func requests() throws {
        #expect(Set(Self.requests.map(\.opcode)) == Set(Opcode.allCases))
        for request in Self.requests {
            var writer = WireWriter()
            request.encodeBody(into: &writer)
            let decoded = try writer.bytes.withUnsafeBytes { try Request.decode(request.opcode, body: $0) }
            #expect(decoded == request, "\(request)")
            // A trailing byte is refused (except where an extension may follow: it then fails
            // as a truncated extension).
            let longer = writer.bytes + [0]
            #expect(throws: WireError.self, "\(request.opcode)") {
                _ = try longer.withUnsafeBytes { try Request.decode(request.opcode, body: $0) }
            }
        }
    }

    static let responses: [(Opcode, Response)] = [
        (
            .hello,
            .hello(
                HelloInfo(
                    maxFrameLength: 65536, maxBatchItems: 256, maxInFlight: 16, operations: [.hello, .ping], servers: ["a", "b"],
                    daemonVersion: "1"))
        ),
        (
            .hello,
            .hello(
                {
                    var info = HelloInfo(
                        maxFrameLength: 1024, maxBatchItems: 1, maxInFlight: 1, operations: [], servers: ["a"], daemonVersion: "")
                    info.page = HelloInfo.Page(serverTotal: 3, nextCursor: "a")
                    return info
                }())
        ),
        (.ping, .pong(payload: [7])),
        (
            .listKeys,
            .keys(
                KeyListing(servers: [
                    KeyListing.Server(name: "a", keys: [KeyListing.Key(id: "ed25519:1", publicKey: key, state: .signing, expiredTS: 0)])
                ]))
        ),
        (.listKeys, .keys(KeyListing(servers: [], nextCursor: ""))),
        (.signJSON, .signedJSON(Array("{}".utf8))),
        (.signRaw, .signature(keyID: KeyID("ed25519:1")!, Signature(bytes: [UInt8](repeating: 1, count: 64))!)),
        (.verify, .verified(true)),
        (.verifyJSON, .verifiedJSON(JSONVerdict(isValid: false, outcomes: [(id: "ed25519:1", outcome: .invalid)]))),
        (.verifyRequest, .verifiedRequest(RequestVerification(verdict: .badSignature, origin: "a", keyID: "ed25519:1", detail: "x"))),
        (.keyDocument, .keyDocument(Array("{}".utf8))),
        (.stats, .stats(Array("{}".utf8))),
    ]

    @Test("every response")
    func responses() throws {
        for (opcode, response) in Self.responses {
            var writer = WireWriter()
            response.encodeBody(into: &writer)
            let decoded = try writer.bytes.withUnsafeBytes { try Response.decode(opcode, body: $0) }
            #expect(decoded == response, "\(opcode)")
        }
    }

    @Test("a truncated body names the field that did not fit")
    func truncated() throws {
        var writer = WireWriter()
        Request.signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: "/x")).encodeBody(into: &writer)
        for cut in 0..<writer.bytes.count {
            let prefix = Array(writer.bytes[..<cut])
            do {
                _ = try prefix.withUnsafeBytes { try Request.decode(.signRequest, body: $0) }
                Issue.record("a SIGN_REQUEST body cut at \(cut) bytes was accepted")
            } catch {
                #expect((error as? WireError)?.message.contains("truncated body") == true, "\(error)")
            }
        }
    }
}
