import Testing

@testable import SigilCore

@Suite("X-Matrix request verification")
struct XMatrixVerificationTests {
    static let keyID = KeyID("ed25519:1")!
    static let download = XMatrixVector.all[0]
    static let thumbnail = XMatrixVector.all[1]

    /// The origin "domain" has the spec key as ed25519:1; nobody else has keys.
    static func specKeys(_ origin: String, _ id: KeyID) -> PublicKey? {
        origin == "domain" && id == keyID ? PublicKey(base64: TestKeys.specPublicKey) : nil
    }

    static func verify(
        _ headers: [String], method: String = "GET", uri: String = download.uri, destination: String = "example.org", content: String? = nil
    ) -> XMatrixVerification {
        XMatrixVerifier.verify(
            authorizations: headers, method: method, uri: uri, destination: destination, content: content.map { Array($0.utf8) },
            publicKeys: specKeys)
    }

    static func header(
        origin: String = "domain", destination: String? = "example.org", key: String = "ed25519:1", sig: String = download.signature
    ) -> String {
        let dest = destination.map { #",destination="\#($0)""# } ?? ""
        return #"X-Matrix origin="\#(origin)"\#(dest),key="\#(key)",sig="\#(sig)""#
    }

    @Test("every derived vector verifies, with its content when it has one", arguments: XMatrixVector.all)
    func vectors(vector: XMatrixVector) {
        let result = XMatrixVerifier.verify(
            authorizations: [vector.header], method: vector.method, uri: vector.uri, destination: vector.destination,
            content: vector.content.map { Array($0.utf8) }, publicKeys: Self.specKeys)
        #expect(result == .valid(origin: "domain", keyID: Self.keyID))
        #expect(result.isValid)
    }

    @Test("header variants a receiver must accept still verify")
    func headerVariants() {
        let sig = Self.download.signature
        for header in [
            #"X-Matrix origin="domain",key="ed25519:1",sig="\#(sig)",destination="example.org""#,  // Synapse's order
            "X-Matrix origin=domain,destination=example.org,key=ed25519:1,sig=\(sig)",
            "x-matrix  Origin=\"domain\" ,\tKEY=\"ed25519:1\" , signature=\"\(sig)==\"",
        ] {
            #expect(Self.verify([header]) == .valid(origin: "domain", keyID: Self.keyID), "\(header)")
        }
    }

    @Test("a header without destination is checked against our own name")
    func missingDestination() {
        #expect(Self.verify([Self.header(destination: nil)]) == .valid(origin: "domain", keyID: Self.keyID))
        // Signed for example.org, so it cannot be replayed to another server.
        #expect(Self.verify([Self.header(destination: nil)], destination: "other.org") == .badSignature(Self.keyID))
    }

    @Test("a header for another destination is refused before any crypto")
    func destinationMismatch() {
        #expect(Self.verify([Self.download.header], destination: "other.org") == .destinationMismatch("example.org"))
        #expect(Self.verify([Self.download.header], destination: "example.org:8448") == .destinationMismatch("example.org"))
        // Comparison is exact (case-sensitive, as the spec says server names are).
        #expect(Self.verify([Self.header(destination: "EXAMPLE.ORG")]) == .destinationMismatch("EXAMPLE.ORG"))
        // Even when the method is invalid too, the destination is reported.
        #expect(Self.verify([Self.download.header], method: "", destination: "other.org") == .destinationMismatch("example.org"))
    }

    @Test("headers naming different origins are refused")
    func originMismatch() {
        #expect(Self.verify([Self.download.header, Self.header(origin: "other.org")]) == .originMismatch)
        #expect(Self.verify([Self.header(origin: "other.org", key: "ed25519:9"), Self.download.header]) == .originMismatch)
    }

    @Test("a known key whose signature does not verify is a bad signature")
    func badSignature() {
        #expect(Self.verify([Self.header(sig: Self.thumbnail.signature)]) == .badSignature(Self.keyID))
        // Right signature, wrong request details.
        #expect(Self.verify([Self.download.header], uri: Self.download.uri + "?") == .badSignature(Self.keyID))
        #expect(Self.verify([Self.download.header], method: "POST") == .badSignature(Self.keyID))
        #expect(Self.verify([Self.download.header], content: "{}") == .badSignature(Self.keyID))
        let put = XMatrixVector.all[2]
        #expect(
            XMatrixVerifier.verify(
                authorizations: [put.header], method: put.method, uri: put.uri, destination: put.destination, content: nil,
                publicKeys: Self.specKeys) == .badSignature(Self.keyID))
        #expect(
            XMatrixVerifier.verify(
                authorizations: [put.header], method: put.method, uri: put.uri, destination: put.destination,
                content: Array(#"{"edus":[],"pdus":[1]}"#.utf8), publicKeys: Self.specKeys) == .badSignature(Self.keyID))
    }

    @Test("a key we do not have is an unknown key")
    func unknownKey() {
        let other = KeyID("ed25519:2")!
        #expect(Self.verify([Self.header(key: "ed25519:2")]) == .unknownKey(other))
        #expect(Self.verify([Self.header(origin: "other.org", destination: "example.org")]) == .unknownKey(Self.keyID))
        #expect(Self.verify([Self.header(key: "ed25519:2"), Self.header(key: "ed25519:3")]) == .unknownKey(other))
    }

    @Test("several headers: unknown keys are skipped, a bad known one fails the request, one good one suffices")
    func severalHeaders() {
        let unknown = Self.header(key: "ed25519:2", sig: Self.thumbnail.signature)
        let bad = Self.header(sig: Self.thumbnail.signature)
        #expect(Self.verify([unknown, Self.download.header]) == .valid(origin: "domain", keyID: Self.keyID))
        #expect(Self.verify([Self.download.header, unknown]) == .valid(origin: "domain", keyID: Self.keyID))
        #expect(Self.verify([Self.download.header, bad]) == .badSignature(Self.keyID))
        #expect(Self.verify([bad, Self.download.header]) == .badSignature(Self.keyID))
        #expect(Self.verify([Self.download.header, Self.header(destination: nil)]) == .valid(origin: "domain", keyID: Self.keyID))
        #expect(Self.verify([Self.header(destination: nil), Self.header(destination: "other.org")]) == .destinationMismatch("other.org"))
    }

    @Test("two keys of one origin: the verifier asks for each header's key")
    func lookupPerHeader() throws {
        let keys = try TestKeys.keys([("a", [UInt8](repeating: 1, count: 32)), ("b", [UInt8](repeating: 2, count: 32))])
        let signer = XMatrixSigner()
        let headers = try keys.map {
            try signer.sign(origin: "origin.example", destination: "dest.example", method: "GET", uri: "/x", key: $0).header
        }
        var asked: [String] = []
        let result = XMatrixVerifier.verify(
            authorizations: ["Bearer token"] + headers, method: "GET", uri: "/x", destination: "dest.example", content: nil
        ) { origin, id in
            asked.append("\(origin) \(id)")
            return keys.first { $0.id == id }?.publicKey
        }
        #expect(result == .valid(origin: "origin.example", keyID: keys[0].id))
        #expect(asked == ["origin.example ed25519:a", "origin.example ed25519:b"])
    }

    @Test("other authorization schemes are ignored")
    func otherSchemes() {
        #expect(Self.verify([]) == .missingAuthorization)
        #expect(Self.verify(["Bearer abc", "Basic Zm9vOmJhcg=="]) == .missingAuthorization)
        #expect(Self.verify(["Bearer abc", Self.download.header, "Basic x"]) == .valid(origin: "domain", keyID: Self.keyID))
    }

    @Test("a malformed X-Matrix header fails the request, even next to a good one")
    func malformed() {
        #expect(Self.verify(["X-Matrix origin"]) == .malformed(XMatrixHeaderError(kind: .expectedEquals, offset: 15)))
        #expect(Self.verify(["X-Matrix\torigin=\"domain\""]) == .malformed(XMatrixHeaderError(kind: .missingSpace, offset: 8)))
        // A first token that is not exactly X-Matrix is another scheme, not a malformed X-Matrix.
        #expect(Self.verify(["X-Matrixorigin=\"domain\""]) == .missingAuthorization)
        #expect(
            Self.verify([Self.download.header, "X-Matrix origin=\"domain\""])
                == .malformed(XMatrixHeaderError(kind: .missingParameter("key"), offset: 24)))
        let padded = Self.header(sig: Self.download.signature + "=")
        #expect(Self.verify([padded]) == .malformed(XMatrixHeaderError(kind: .invalidSignature, offset: 71)))
    }

    @Test("invalid content, method or uri are reported as such")
    func invalidRequest() {
        #expect(Self.verify([Self.download.header], content: "{") == .invalidContent(JSONError(.unexpectedEnd, at: 1)))
        #expect(Self.verify([Self.download.header], content: #"{"a":0.5}"#) == .invalidContent(JSONError(.notAnInteger, at: 5)))
        #expect(Self.verify([Self.download.header], method: "") == .invalidRequest(.invalidMethod))
        #expect(Self.verify([Self.download.header], method: "G ET") == .invalidRequest(.invalidMethod))
        #expect(Self.verify([Self.download.header], uri: "x") == .invalidRequest(.invalidURI))
        #expect(Self.verify([Self.download.header], uri: "/a b") == .invalidRequest(.invalidURI))
    }

    @Test("requests signed by XMatrixSigner verify, and only for their exact details")
    func roundTrip() throws {
        let key = try TestKeys.random(version: "rt")
        let lookup: (String, KeyID) -> PublicKey? = { origin, id in origin == "a.example:8448" && id == key.id ? key.publicKey : nil }
        let signer = XMatrixSigner()
        for (method, uri, content) in [("GET", "/x?y=1", nil), ("PUT", "/send/1", #"{"pdus":[{"a":1}]}"#), ("POST", "/", "[]")]
            as [(String, String, String?)]
        {
            let body = content.map { Array($0.utf8) }
            let signed = try signer.sign(origin: "a.example:8448", destination: "[::1]", method: method, uri: uri, content: body, key: key)
            #expect(
                XMatrixVerifier.verify(
                    authorizations: [signed.header], method: method, uri: uri, destination: "[::1]", content: body, publicKeys: lookup)
                    == .valid(origin: "a.example:8448", keyID: key.id))
            #expect(
                XMatrixVerifier.verify(
                    authorizations: [signed.header], method: method, uri: uri + "z", destination: "[::1]", content: body, publicKeys: lookup
                )
                    == .badSignature(key.id))
        }
    }

    @Test("outcomes describe themselves")
    func descriptions() {
        #expect(XMatrixVerification.valid(origin: "a", keyID: Self.keyID).description == "valid: signed by a with ed25519:1")
        #expect(XMatrixVerification.missingAuthorization.description == "no X-Matrix authorization header")
        #expect(XMatrixVerification.destinationMismatch("x").description == "X-Matrix header is for destination x, not us")
        #expect(XMatrixVerification.badSignature(Self.keyID).description == "signature by ed25519:1 does not verify")
        #expect(XMatrixVerification.unknownKey(Self.keyID).description.contains("ed25519:1"))
        #expect(XMatrixVerification.invalidRequest(.invalidURI).description == XMatrixRequestError.invalidURI.description)
        #expect(!XMatrixVerification.originMismatch.isValid)
        #expect(!XMatrixVerification.missingAuthorization.isValid)
    }
}
