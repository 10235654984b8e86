import Testing

@testable import SigilCore

/// A request signed with the spec key and the signature it must get (research doc §3.8; the
/// last three computed with Python `cryptography` and `json.dumps(sort_keys=True)`).
struct XMatrixVector: Sendable, CustomStringConvertible {
    let destination: String
    let method: String
    let uri: String
    let content: String?
    let signature: String
    var description: String { "\(method) \(uri)" }

    var header: String {
        #"X-Matrix origin="domain",destination="\#(destination)",key="ed25519:1",sig="\#(signature)""#
    }

    static let all: [XMatrixVector] = [
        XMatrixVector(
            destination: "example.org", method: "GET", uri: "/_matrix/federation/v1/media/download/abc123", content: nil,
            signature: "UxgQZoKQVT7ekj4hjL7QlLRJwA7YaGP7mDBBXDITiGiVDxcGOep/LlSrlzfWGQ6GvgeMdydmBp2v9r+rHdKhDA"),
        XMatrixVector(
            destination: "example.org:8448", method: "GET",
            uri: "/_matrix/federation/v1/media/thumbnail/abc123?width=32&height=32&method=crop", content: nil,
            signature: "xUdl0crwyIIxOoybW4873YLdTI/rENy856g/SH9OLZkeNyMDpmyxNpCr53LWHnEYO5PQ9OJ/6JKqkbkpV0IdCg"),
        XMatrixVector(
            destination: "example.org", method: "PUT", uri: "/_matrix/federation/v1/send/1", content: #"{"pdus": [], "edus": []}"#,
            signature: "UHEIs1sToaPQ7o8tKTAPKYmK1R4jt64IKM/aaTH51wdAtzU6wWFd6r+bIC5Y+/LWozlLxBq9706047+gWxfuBg"),
        XMatrixVector(
            destination: "[::1]:8448", method: "GET", uri: "/_matrix/key/v2/query/a%2Fb?x=1", content: nil,
            signature: "nmlKmVMLJQ+4YgYc7hip1fXpVuSNFPd2DstsoKToq+bwYQj9Z4xL7GKsgHCpRnYpAK1anavGLD4CpJ/+d3S5Bg"),
        XMatrixVector(
            destination: "example.org", method: "GET", uri: "/x", content: nil,
            signature: "l9GWUkbaIjnWe4Q8kpU4DoQfA0GGCy9xdEb4yRg6ONfh20xGcw6G8epvsM7YiSIs+njzxkVBAfXhmKQsAerwCg"),
        // Content that is JSON null is signed as "content":null, unlike absent content.
        XMatrixVector(
            destination: "example.org", method: "GET", uri: "/x", content: "null",
            signature: "D5aG71ruFTcnTGsLt4RZFA8uPInvqFd3mKJVn5aYT3fCZQQzD8yR7lo+gqJMpQNdoAQmLXAYX/D66sa66We0Aw"),
    ]
}

@Suite("X-Matrix request signing")
struct XMatrixSigningTests {
    @Test("the derived vectors reproduce exactly, header in MMR's format", arguments: XMatrixVector.all)
    func vectors(vector: XMatrixVector) throws {
        let key = try TestKeys.spec()
        let signer = XMatrixSigner()
        let signed = try signer.sign(
            origin: "domain", destination: vector.destination, method: vector.method, uri: vector.uri,
            content: vector.content.map { Array($0.utf8) }, key: key)
        #expect(signed.signature.base64 == vector.signature)
        #expect(signed.keyID.description == "ed25519:1")
        #expect(signed.header == vector.header)
    }

    @Test("MMR's exact header bytes for the first vector")
    func exactHeader() throws {
        let signer = XMatrixSigner()
        let signed = try signer.sign(
            origin: "domain", destination: "example.org", method: "GET", uri: "/_matrix/federation/v1/media/download/abc123",
            key: try TestKeys.spec())
        #expect(
            signed.header
                == #"X-Matrix origin="domain",destination="example.org",key="ed25519:1",sig="UxgQZoKQVT7ekj4hjL7QlLRJwA7YaGP7mDBBXDITiGiVDxcGOep/LlSrlzfWGQ6GvgeMdydmBp2v9r+rHdKhDA""#
        )
    }

    @Test("content is omitted when nil (never null or {}), and canonicalised when given")
    func content() throws {
        let key = try TestKeys.spec()
        let signer = XMatrixSigner()
        func sig(_ content: String?) throws -> String {
            try signer.sign(
                origin: "domain", destination: "example.org", method: "PUT", uri: "/_matrix/federation/v1/send/1",
                content: content.map { Array($0.utf8) }, key: key
            ).signature.base64
        }
        let absent = try sig(nil)
        #expect(try sig("null") != absent)
        #expect(try sig("{}") != absent)
        #expect(try sig("{}") != sig("null"))
        // Canonicalisation: member order, whitespace and escapes do not matter.
        let canonical = try sig(#"{"edus":[],"pdus":[]}"#)
        #expect(canonical == "UHEIs1sToaPQ7o8tKTAPKYmK1R4jt64IKM/aaTH51wdAtzU6wWFd6r+bIC5Y+/LWozlLxBq9706047+gWxfuBg")
        #expect(try sig(" {\n\"pdus\" : [ ] ,\"\\u0065dus\":[]}\n") == canonical)
    }

    @Test("the signer signs exactly the canonical request object, for tricky but valid fields")
    func matchesCanonicalObject() throws {
        let key = try TestKeys.random()
        let signer = XMatrixSigner()
        let cases: [(String, String, String, String, String?)] = [
            ("a.example", "b.example:1", "GET", "/", nil),
            ("[::1]", "[2001:db8::1]:8448", "OPTIONS", #"/a"b\c?d=<e>&f='g'"#, nil),
            ("1.2.3.4:5", "example.org", "M-SEARCH", "/%00%FF~!$&'()*+,;=:@", #"[1,"x",{"b":null,"a":true}]"#),
            ("example.org", "example.org", "POST", "/_matrix/federation/v1/user/keys/query", #"{"device_keys":{"@a:b":[]}}"#),
            ("x", "y", "PUT", "/send", #""\u00e9\/""#),
        ]
        for (origin, destination, method, uri, content) in cases {
            let signed = try signer.sign(
                origin: origin, destination: destination, method: method, uri: uri, content: content.map { Array($0.utf8) }, key: key)
            var object: JSONObject = try #require(
                JSONObject([
                    ("origin", .string(origin)), ("destination", .string(destination)), ("method", .string(method)), ("uri", .string(uri)),
                ]))
            if let content { object["content"] = try JSONValue(parsing: content) }
            #expect(signed.signature == key.sign(object.canonicalBytes), "\(method) \(uri)")
            #expect(key.publicKey.verify(signature: signed.signature.bytes, message: object.canonicalBytes))
            // The header parses back to what was signed.
            let parsed = try XMatrixAuthorization(parsing: signed.header)
            #expect(parsed.origin == origin && parsed.destination == destination)
            #expect(parsed.keyID == key.id && parsed.signature == signed.signature)
        }
    }

    @Test("the uri is signed byte-exact: no normalising, re-escaping or query reordering")
    func uriExact() throws {
        let key = try TestKeys.spec()
        let signer = XMatrixSigner()
        var seen: Set<String> = []
        for uri in ["/a/b", "/a%2Fb", "/a%2fb", "/a/b?", "/a/b?x=1&y=2", "/a/b?y=2&x=1", "/a//b", "/a/./b"] {
            let signed = try signer.sign(origin: "domain", destination: "example.org", method: "GET", uri: uri, key: key)
            #expect(seen.insert(signed.signature.base64).inserted, "\(uri) signed like another uri")
        }
    }

    @Test(
        "invalid fields are refused",
        arguments: [
            ("bad origin", "exa mple.org", "example.org", "GET", "/", XMatrixRequestError.invalidOrigin),
            ("empty origin", "", "example.org", "GET", "/", .invalidOrigin),
            ("quoted origin", "\"domain\"", "example.org", "GET", "/", .invalidOrigin),
            ("origin with a long port", "domain:123456", "example.org", "GET", "/", .invalidOrigin),
            ("non-ASCII origin", "dömain", "example.org", "GET", "/", .invalidOrigin),
            ("origin checked first", "", "", "", "", .invalidOrigin),
            ("bad destination", "domain", "example.org:", "GET", "/", .invalidDestination),
            ("destination with a comma", "domain", "a,b", "GET", "/", .invalidDestination),
            ("unclosed IPv6 destination", "domain", "[::1", "GET", "/", .invalidDestination),
            ("empty method", "domain", "example.org", "", "/", .invalidMethod),
            ("method with a space", "domain", "example.org", "G T", "/", .invalidMethod),
            ("method with a quote", "domain", "example.org", "GE\"T", "/", .invalidMethod),
            ("method with a newline", "domain", "example.org", "GET\n", "/", .invalidMethod),
            ("method too long", "domain", "example.org", String(repeating: "A", count: 33), "/", .invalidMethod),
            ("empty uri", "domain", "example.org", "GET", "", .invalidURI),
            ("relative uri", "domain", "example.org", "GET", "_matrix/x", .invalidURI),
            ("absolute uri", "domain", "example.org", "GET", "https://example.org/_matrix/x", .invalidURI),
            ("uri with a space", "domain", "example.org", "GET", "/a b", .invalidURI),
            ("uri with a tab", "domain", "example.org", "GET", "/a\tb", .invalidURI),
            ("uri with DEL", "domain", "example.org", "GET", "/a\u{7F}", .invalidURI),
            ("uri with non-ASCII", "domain", "example.org", "GET", "/é", .invalidURI),
        ])
    func invalidFields(name: String, origin: String, destination: String, method: String, uri: String, error: XMatrixRequestError) throws {
        let key = try TestKeys.spec()
        let signer = XMatrixSigner()
        #expect(throws: error) { try signer.sign(origin: origin, destination: destination, method: method, uri: uri, key: key) }
    }

    @Test("content that is not valid canonical JSON is refused with the JSON error")
    func invalidContent() throws {
        let key = try TestKeys.spec()
        let signer = XMatrixSigner()
        let cases: [(String, JSONError)] = [
            (#"{"a":1.5}"#, JSONError(.notAnInteger, at: 5)),
            (#"{"a":1,"a":2}"#, JSONError(.duplicateKey("a"), at: 7)),
            ("{", JSONError(.unexpectedEnd, at: 1)),
            ("", JSONError(.unexpectedEnd, at: 0)),
            ("{} x", JSONError(.trailingData, at: 3)),
        ]
        for (content, error) in cases {
            #expect(throws: XMatrixRequestError.invalidContent(error)) {
                try signer.sign(
                    origin: "domain", destination: "example.org", method: "PUT", uri: "/x", content: Array(content.utf8), key: key)
            }
        }
        // The signer still works after errors.
        let signed = try signer.sign(origin: "domain", destination: "example.org", method: "GET", uri: "/x", key: key)
        #expect(signed.signature.base64 == "l9GWUkbaIjnWe4Q8kpU4DoQfA0GGCy9xdEb4yRg6ONfh20xGcw6G8epvsM7YiSIs+njzxkVBAfXhmKQsAerwCg")
    }

    @Test("the raw entry point writes the signature and appends the header; a reused signer gives the same results")
    func rawEntryPoint() throws {
        let key = try TestKeys.spec()
        let signer = XMatrixSigner()
        var header = Array("Authorization: ".utf8)
        var signature = [UInt8](repeating: 0, count: 64)
        for vector in XMatrixVector.all + XMatrixVector.all {
            header = Array("Authorization: ".utf8)
            let content = vector.content.map { Array($0.utf8) }
            try Array("domain".utf8).withUnsafeBytes { o in
                try Array(vector.destination.utf8).withUnsafeBytes { d in
                    try Array(vector.method.utf8).withUnsafeBytes { m in
                        try Array(vector.uri.utf8).withUnsafeBytes { u in
                            try (content ?? []).withUnsafeBytes { c in
                                try signature.withUnsafeMutableBytes { sig in
                                    try signer.sign(
                                        origin: o, destination: d, method: m, uri: u, content: content == nil ? nil : c, key: key,
                                        signature: sig.baseAddress!, header: &header)
                                }
                            }
                        }
                    }
                }
            }
            #expect(Base64.encode(signature) == vector.signature)
            #expect(String(decoding: header, as: UTF8.self) == "Authorization: " + vector.header)
        }
    }

    @Test("request errors describe themselves")
    func descriptions() {
        #expect(XMatrixRequestError.invalidOrigin.description == "origin is not a valid Matrix server name")
        #expect(XMatrixRequestError.invalidMethod.description.contains("HTTP token"))
        #expect(XMatrixRequestError.invalidURI.description.contains("starting with '/'"))
        #expect(
            XMatrixRequestError.invalidContent(JSONError(.unexpectedEnd, at: 1)).description
                == "content is not valid JSON: unexpected end of input at byte 1")
    }
}
