import Testing

@testable import SigilCore

@Suite("X-Matrix header parsing")
struct XMatrixHeaderTests {
    static let sig = "UxgQZoKQVT7ekj4hjL7QlLRJwA7YaGP7mDBBXDITiGiVDxcGOep/LlSrlzfWGQ6GvgeMdydmBp2v9r+rHdKhDA"

    /// Headers that must parse to origin "domain", key ed25519:1, the signature above, and the given destination.
    static let accepted: [(String, String, String?)] = [
        ("MMR's layout", #"X-Matrix origin="domain",destination="example.org",key="ed25519:1",sig="\#(sig)""#, "example.org"),
        ("Synapse's order", #"X-Matrix origin="domain",key="ed25519:1",sig="\#(sig)",destination="example.org""#, "example.org"),
        ("no destination (pre-v1.3 senders)", #"X-Matrix origin="domain",key="ed25519:1",sig="\#(sig)""#, nil),
        ("several spaces after the scheme", #"X-Matrix    origin="domain",key="ed25519:1",sig="\#(sig)""#, nil),
        (
            "spaces and tabs around commas",
            "X-Matrix origin=\"domain\" ,\tdestination=\"example.org\"\t,  key=\"ed25519:1\" \t, sig=\"\(sig)\"", "example.org"
        ),
        ("trailing spaces", "X-Matrix origin=\"domain\",key=\"ed25519:1\",sig=\"\(sig)\"  \t", nil),
        ("case-insensitive names", #"X-Matrix Origin="domain",DESTINATION="example.org",kEy="ed25519:1",SIG="\#(sig)""#, "example.org"),
        ("lower-case scheme", #"x-matrix origin="domain",key="ed25519:1",sig="\#(sig)""#, nil),
        ("upper-case scheme", #"X-MATRIX origin="domain",key="ed25519:1",sig="\#(sig)""#, nil),
        ("unquoted values, colons included", "X-Matrix origin=domain,destination=example.org,key=ed25519:1,sig=\(sig)", "example.org"),
        ("mixed quoting", #"X-Matrix origin=domain,destination="example.org",key=ed25519:1,sig="\#(sig)""#, "example.org"),
        ("backslash escapes", #"X-Matrix origin="d\o\m\a\i\n",destination="example\.org",key="ed25519\:1",sig="\#(sig)""#, "example.org"),
        ("unknown parameters ignored", #"X-Matrix foo="bar",origin="domain",x=1,key="ed25519:1",note="a, b = \"c\"",sig="\#(sig)""#, nil),
        ("signature= for sig (the spec's prose)", #"X-Matrix origin="domain",key="ed25519:1",signature="\#(sig)""#, nil),
        ("padded sig", #"X-Matrix origin="domain",key="ed25519:1",sig="\#(sig)==""#, nil),
        ("padded unquoted sig", "X-Matrix origin=domain,key=ed25519:1,sig=\(sig)==", nil),
        ("leading whitespace", #"  X-Matrix origin="domain",key="ed25519:1",sig="\#(sig)""#, nil),
    ]

    @Test("spec-conformant headers parse", arguments: accepted)
    func parses(name: String, header: String, destination: String?) throws {
        let auth = try XMatrixAuthorization(parsing: header)
        #expect(auth.origin == "domain")
        #expect(auth.destination == destination)
        #expect(auth.keyID.description == "ed25519:1")
        #expect(auth.signature.base64 == Self.sig)
    }

    @Test("server names with ports and IPv6 literals, quoted or not")
    func serverNamesWithColons() throws {
        let a = try XMatrixAuthorization(
            parsing: "X-Matrix origin=example.org:8448,destination=[::1]:8448,key=ed25519:a_RVfN,sig=\(Self.sig)")
        #expect(a.origin == "example.org:8448")
        #expect(a.destination == "[::1]:8448")
        #expect(a.keyID.version == "a_RVfN")
        let b = try XMatrixAuthorization(
            parsing: #"X-Matrix origin="[2001:db8::1]",destination="1.2.3.4:5",key="ed25519:0",sig="\#(Self.sig)""#)
        #expect(b.origin == "[2001:db8::1]")
        #expect(b.destination == "1.2.3.4:5")
    }

    static let rejected: [(String, String, XMatrixHeaderError)] = [
        ("another scheme", "Bearer abc", XMatrixHeaderError(kind: .notXMatrix, offset: 0)),
        ("empty", "", XMatrixHeaderError(kind: .notXMatrix, offset: 0)),
        ("short scheme", "X-Matri", XMatrixHeaderError(kind: .notXMatrix, offset: 0)),
        ("scheme only", "X-Matrix", XMatrixHeaderError(kind: .missingParameter("origin"), offset: 8)),
        ("scheme and a space", "X-Matrix ", XMatrixHeaderError(kind: .expectedName, offset: 9)),
        ("no space after the scheme", #"X-Matrixorigin="domain""#, XMatrixHeaderError(kind: .missingSpace, offset: 8)),
        ("tab after the scheme", "X-Matrix\torigin=\"domain\"", XMatrixHeaderError(kind: .missingSpace, offset: 8)),
        ("name without value", "X-Matrix origin", XMatrixHeaderError(kind: .expectedEquals, offset: 15)),
        ("space before equals", #"X-Matrix origin ="domain""#, XMatrixHeaderError(kind: .expectedEquals, offset: 15)),
        ("unterminated quote", #"X-Matrix origin="domain"#, XMatrixHeaderError(kind: .unterminatedQuote, offset: 16)),
        ("escape at the end", #"X-Matrix origin="domain\"#, XMatrixHeaderError(kind: .unterminatedQuote, offset: 16)),
        ("missing comma", #"X-Matrix origin="domain" key="ed25519:1""#, XMatrixHeaderError(kind: .expectedComma, offset: 25)),
        ("quote inside a bare value", #"X-Matrix origin=dom"ain""#, XMatrixHeaderError(kind: .expectedComma, offset: 19)),
        ("leading comma", #"X-Matrix ,origin="domain""#, XMatrixHeaderError(kind: .expectedName, offset: 9)),
        ("double comma", #"X-Matrix origin="domain",,key="ed25519:1""#, XMatrixHeaderError(kind: .expectedName, offset: 25)),
        ("trailing comma", #"X-Matrix origin="domain","#, XMatrixHeaderError(kind: .expectedName, offset: 25)),
        ("empty bare value", #"X-Matrix origin=,key="ed25519:1""#, XMatrixHeaderError(kind: .invalidValue, offset: 16)),
        ("control character in a quoted value", "X-Matrix origin=\"dom\u{1}ain\"", XMatrixHeaderError(kind: .invalidValue, offset: 20)),
        ("DEL in a quoted value", "X-Matrix origin=\"dom\u{7F}ain\"", XMatrixHeaderError(kind: .invalidValue, offset: 20)),
        (
            "duplicate origin", #"X-Matrix origin="a",origin="b",key="ed25519:1",sig="\#(sig)""#,
            XMatrixHeaderError(kind: .duplicateParameter("origin"), offset: 20)
        ),
        (
            "duplicate in another case", #"X-Matrix origin="a",ORIGIN="a""#,
            XMatrixHeaderError(kind: .duplicateParameter("origin"), offset: 20)
        ),
        ("duplicate unknown parameter", #"X-Matrix x=1,x=1,origin="a""#, XMatrixHeaderError(kind: .duplicateParameter("x"), offset: 13)),
        (
            "sig and signature", #"X-Matrix origin="domain",key="ed25519:1",sig="\#(sig)",signature="\#(sig)""#,
            XMatrixHeaderError(kind: .duplicateParameter("sig"), offset: 134)
        ),
        ("missing origin", #"X-Matrix key="ed25519:1",sig="\#(sig)""#, XMatrixHeaderError(kind: .missingParameter("origin"), offset: 117)),
        ("missing key", #"X-Matrix origin="domain",sig="\#(sig)""#, XMatrixHeaderError(kind: .missingParameter("key"), offset: 117)),
        ("missing sig", #"X-Matrix origin="domain",key="ed25519:1""#, XMatrixHeaderError(kind: .missingParameter("sig"), offset: 40)),
        ("everything missing", #"X-Matrix foo="bar""#, XMatrixHeaderError(kind: .missingParameter("origin"), offset: 18)),
        (
            "invalid origin", #"X-Matrix origin="bad name",key="ed25519:1",sig="\#(sig)""#,
            XMatrixHeaderError(kind: .invalidOrigin, offset: 16)
        ),
        ("empty origin", #"X-Matrix origin="",key="ed25519:1",sig="\#(sig)""#, XMatrixHeaderError(kind: .invalidOrigin, offset: 16)),
        (
            "invalid destination", #"X-Matrix origin="domain",destination="example.org:",key="ed25519:1",sig="\#(sig)""#,
            XMatrixHeaderError(kind: .invalidDestination, offset: 37)
        ),
        (
            "non-ed25519 key", #"X-Matrix origin="domain",key="rsa:1",sig="\#(sig)""#,
            XMatrixHeaderError(kind: .unsupportedKeyAlgorithm, offset: 29)
        ),
        (
            "key without version", #"X-Matrix origin="domain",key="ed25519:",sig="\#(sig)""#,
            XMatrixHeaderError(kind: .unsupportedKeyAlgorithm, offset: 29)
        ),
        (
            "sig not base64", #"X-Matrix origin="domain",key="ed25519:1",sig="\#(sig)!""#,
            XMatrixHeaderError(kind: .invalidSignature, offset: 45)
        ),
        (
            "sig too short", #"X-Matrix origin="domain",key="ed25519:1",sig="\#(sig.dropLast(4))""#,
            XMatrixHeaderError(kind: .invalidSignature, offset: 45)
        ),
        (
            "sig badly padded", #"X-Matrix origin="domain",key="ed25519:1",sig="\#(sig)=""#,
            XMatrixHeaderError(kind: .invalidSignature, offset: 45)
        ),
        (
            "sig URL-safe", #"X-Matrix origin="domain",key="ed25519:1",sig="\#(sig.replacing("/", with: "_"))""#,
            XMatrixHeaderError(kind: .invalidSignature, offset: 45)
        ),
    ]

    @Test("malformed headers name the problem and the byte", arguments: rejected)
    func rejects(name: String, header: String, error: XMatrixHeaderError) {
        #expect(throws: error) { try XMatrixAuthorization(parsing: header) }
    }

    @Test("the offsets in the table are where the text says")
    func offsetsAreRight() {
        // Guard against miscounting in the table above: the long-header offsets point at what they claim.
        let sigAndSignature = #"X-Matrix origin="domain",key="ed25519:1",sig="\#(Self.sig)",signature="\#(Self.sig)""#
        #expect(sigAndSignature.utf8.dropFirst(134).starts(with: "signature=".utf8))
        #expect(#"X-Matrix key="ed25519:1",sig="\#(Self.sig)""#.utf8.count == 117)
        #expect(#"X-Matrix origin="domain",sig="\#(Self.sig)""#.utf8.count == 117)
        #expect(#"X-Matrix origin="domain",destination="example.org:""#.utf8.dropFirst(37).first == UInt8(ascii: "\""))
    }

    @Test("the scheme is the first token, compared without case")
    func scheme() {
        #expect(XMatrixAuthorization.usesXMatrixScheme("X-Matrix origin=a"))
        #expect(XMatrixAuthorization.usesXMatrixScheme("x-matrix "))
        #expect(XMatrixAuthorization.usesXMatrixScheme("X-MATRIX  a"))
        #expect(XMatrixAuthorization.usesXMatrixScheme("  X-Matrix origin=a"))
        #expect(XMatrixAuthorization.usesXMatrixScheme("X-Matrix"))
        #expect(XMatrixAuthorization.usesXMatrixScheme("X-Matrix\torigin=a"))
        #expect(!XMatrixAuthorization.usesXMatrixScheme("X-Matrixorigin"))
        #expect(!XMatrixAuthorization.usesXMatrixScheme("X-Matrix-Foo origin=a"))
        #expect(!XMatrixAuthorization.usesXMatrixScheme("Bearer abc"))
        #expect(!XMatrixAuthorization.usesXMatrixScheme(""))
    }

    @Test("errors describe themselves with the offset")
    func descriptions() {
        #expect(XMatrixHeaderError(kind: .missingParameter("origin"), offset: 8).description == "missing parameter 'origin' at byte 8")
        #expect(XMatrixHeaderError(kind: .duplicateParameter("sig"), offset: 3).description == "parameter 'sig' appears twice at byte 3")
        #expect(XMatrixHeaderError(kind: .notXMatrix, offset: 0).description == "not an X-Matrix authorization at byte 0")
        #expect(XMatrixHeaderError(kind: .invalidSignature, offset: 45).description == "sig is not a base64 Ed25519 signature at byte 45")
    }
}
