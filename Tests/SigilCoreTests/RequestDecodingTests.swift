import Testing

@testable import SigilCore

@Suite("Wire: request decoding")
struct RequestDecodingTests {
    static func signRequestBody(uri: [UInt8]) -> [UInt8] {
        var w = WireWriter()
        w.string("domain")
        w.string("example.org")
        w.string("GET")
        w.u16(UInt16(uri.count))
        w.fixed(uri)
        w.bytesField([UInt8]())
        return w.bytes
    }

    /// Found by FuzzWire: SIGN_REQUEST's fields were made into Strings with invalid UTF-8
    /// replaced by U+FFFD, so the request decoded was not the one sent (and did not encode back
    /// to its bytes). Every other string field refuses invalid UTF-8; these do too now.
    @Test("SIGN_REQUEST with invalid UTF-8 in a field is refused, not repaired")
    func invalidUTF8Refused() throws {
        let body = Self.signRequestBody(uri: Array("/_matrix/f".utf8) + [0xF2, 0x02] + Array("x".utf8))
        #expect(throws: WireError("uri is not valid UTF-8")) {
            try body.withUnsafeBytes { try Request.decode(.signRequest, body: $0) }
        }
        // The daemon's own path reads the same body and refuses it by the field's grammar.
        let problem = try body.withUnsafeBytes { try SignRequestFields(reading: $0).problem }
        #expect(problem == .invalidURI)
    }

    @Test("the origin peeked at is the origin read, and a body too short for it gives nothing")
    func originPeek() throws {
        let body = Self.signRequestBody(uri: Array("/x".utf8))
        let peeked = body.withUnsafeBytes { SignRequestFields.origin(peeking: $0).map { Array($0) } }
        #expect(peeked == Array("domain".utf8))
        let read = try body.withUnsafeBytes { Array(try SignRequestFields(reading: $0).origin) }
        #expect(peeked == read)
        for bad: [UInt8] in [[], [0], [0, 7, 1, 2, 3, 4, 5, 6], [0xFF, 0xFF, 1]] {
            #expect(bad.withUnsafeBytes { SignRequestFields.origin(peeking: $0) } == nil, "\(bad)")
        }
        #expect(([0, 0] as [UInt8]).withUnsafeBytes { SignRequestFields.origin(peeking: $0)?.count } == 0)
        // Exactly filled.
        #expect(([0, 2, 97, 98] as [UInt8]).withUnsafeBytes { SignRequestFields.origin(peeking: $0).map { Array($0) } } == [97, 98])
    }

    @Test("what SIGN_REQUEST decodes encodes back to the same bytes")
    func roundTrip() throws {
        let body = Self.signRequestBody(uri: Array("/_matrix/federation/v1/media/download/abc".utf8))
        let request = try body.withUnsafeBytes { try Request.decode(.signRequest, body: $0) }
        var w = WireWriter()
        request.encodeBody(into: &w)
        #expect(w.bytes == body)
    }
}
