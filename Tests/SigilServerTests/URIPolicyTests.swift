import Testing

@testable import SigilServer

/// SIGN_REQUEST's uri against `uri_prefixes`: decided on the path decoded once, with every
/// spelling of a dot segment, a double encoding or a bad escape refused (issue: a front proxy
/// that decodes `..%2f` could route a "media" request elsewhere).
@Suite("URI policy")
struct URIPolicyTests {
    static let prefixes = ["/_matrix/federation/v1/media/"]
    static let media = "/_matrix/federation/v1/media/"

    static let allowed: [String] = [
        media + "download/abc123",
        media + "download/abc123?timeout_ms=20000",
        media + "thumbnail/abc?width=32&height=32&method=crop",
        media + "download/a..b",
        media + "download/...",
        media + "download/.hidden",
        media + "download/abc?next=/../../send",
        media + "download/abc?x=%2e%2e%2f",
        media + "download/%41bc",
        "/_matrix/federation/v1/%6dedia/download/abc",
        media + "download/a%20b",
        media + "download/abc%3F",
        media + "download/-_~",
    ]

    static let refused: [(String, String)] = [
        ("/_matrix/federation/v1/send/txn1", "outside the prefix"),
        ("/_matrix/federation/v1/media", "the prefix without its slash"),
        (media + "../send/1", "plain .."),
        (media + "./download/abc", "plain ."),
        (media + "download/..", "a trailing .."),
        (media + "download/..?x=1", "a .. before the query"),
        (media + "..%2f..%2fsend/txn1", "..%2f"),
        (media + "..%2F..%2Fsend/txn1", "..%2F"),
        (media + "%2e%2e/send/1", "%2e%2e"),
        (media + "%2E%2E/%2E%2E/v2/send", "%2E%2E"),
        (media + "%2e%2e%2fsend/1", "%2e%2e%2f"),
        (media + "download/.%2e/../../key/v2/server", ".%2e"),
        (media + "download/%2e./x", "%2e."),
        (media + "download/%2e/x", "%2e"),
        (media + "..;/send/1", "..;"),
        (media + "download/..;jsessionid=1/x", "..; with a parameter"),
        (media + "..\\send\\1", "..\\"),
        (media + "..%5csend%5c1", "..%5c"),
        (media + "..%5Csend", "..%5C"),
        (media + "%252e%252e/send", "%252e%252e"),
        (media + "download/%252f", "a double-encoded slash"),
        (media + "download/%25", "a double-encoded percent"),
        (media + "%u002e%u002e/send", "%u002e"),
        (media + "download/%", "a lone %"),
        (media + "download/%4", "a short escape"),
        (media + "download/%zz", "a non-hex escape"),
        (media + "download/abc%00", "an encoded NUL"),
        (media + "download/abc%0a", "an encoded newline"),
        (media + "download/abc#frag", "a fragment"),
        ("/_matrix/federation/v1/%6dedia/../send", "decoded prefix, then .."),
    ]

    @Test("at least 30 uris, allowed and refused, each for its reason", arguments: 0..<1)
    func table(_: Int) {
        #expect(Self.allowed.count + Self.refused.count >= 30)
        for uri in Self.allowed {
            let ok = Array(uri.utf8).withUnsafeBytes { URIPolicy.matches($0, prefixes: Self.prefixes) }
            #expect(ok, "refused: \(uri)")
        }
        for (uri, why) in Self.refused {
            let ok = Array(uri.utf8).withUnsafeBytes { URIPolicy.matches($0, prefixes: Self.prefixes) }
            #expect(!ok, "allowed (\(why)): \(uri)")
        }
    }

    @Test("the normalised path and the reason for a refusal")
    func reasons() {
        func judge(_ uri: String) -> Result<[UInt8], URIPolicy.Refusal> { Array(uri.utf8).withUnsafeBytes { URIPolicy.normalisedPath($0) } }
        #expect((try? judge("/a%2Fb?c").get()) == Array("/a/b".utf8))
        #expect(judge("/a/%2e%2e/b") == .failure(.dotSegment))
        #expect(judge("/a/%252e") == .failure(.doubleEncoded))
        #expect(judge("/a/%u002e") == .failure(.malformedEscape))
        #expect(judge("/a/%0d") == .failure(.controlCharacter))
        #expect(judge("/a#b") == .failure(.fragment))
    }
}
