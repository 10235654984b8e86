/// The outcome of checking an inbound request's X-Matrix authorization.
public enum XMatrixVerification: Sendable, Equatable, CustomStringConvertible {
    /// Signed by `origin` with `keyID`.
    case valid(origin: String, keyID: KeyID)
    /// No `X-Matrix` Authorization header at all (HTTP 401 `M_UNAUTHORIZED`).
    case missingAuthorization
    /// A header that does not parse.
    case malformed(XMatrixHeaderError)
    /// Headers naming different origins.
    case originMismatch
    /// A header naming another destination than ours (HTTP 401).
    case destinationMismatch(String)
    /// No header used a key we were given.
    case unknownKey(KeyID)
    /// A signature made with a key we know that does not verify (HTTP 401).
    case badSignature(KeyID)
    /// The request body is not valid JSON.
    case invalidContent(JSONError)
    /// The method or uri cannot be part of a request.
    case invalidRequest(XMatrixRequestError)

    public var isValid: Bool { if case .valid = self { return true } else { return false } }

    public var description: String {
        switch self {
        case .valid(let origin, let keyID): return "valid: signed by \(origin) with \(keyID)"
        case .missingAuthorization: return "no X-Matrix authorization header"
        case .malformed(let error): return "malformed X-Matrix header: \(error)"
        case .originMismatch: return "X-Matrix headers name different origins"
        case .destinationMismatch(let destination): return "X-Matrix header is for destination \(destination), not us"
        case .unknownKey(let id): return "signed with \(id), which is not among the origin's keys"
        case .badSignature(let id): return "signature by \(id) does not verify"
        case .invalidContent(let error): return "request content is not valid JSON: \(error)"
        case .invalidRequest(let error): return error.description
        }
    }
}

public enum XMatrixVerifier {
    /// Checks an inbound request.
    ///
    /// - Parameters:
    ///   - authorizations: every `Authorization` header value; other schemes are ignored.
    ///   - destination: our own server name. A header without `destination` is checked against
    ///     it (as the spec asks recipients to accept); a header naming another one is refused.
    ///   - content: the raw request body, for requests that have one.
    ///   - publicKeys: the origin's current keys (from its `/_matrix/key/v2/server`), looked up
    ///     by origin and key ID.
    ///
    /// Every X-Matrix header must parse and name the same origin. Headers signed with keys we do
    /// not have are skipped; any header whose known key does not verify fails the request (a
    /// forged header is an attack, not noise); at least one must verify.
    public static func verify(
        authorizations: [String], method: String, uri: String, destination: String, content: [UInt8]?,
        limits: JSONLimits = .default, publicKeys: (_ origin: String, _ keyID: KeyID) -> PublicKey?
    ) -> XMatrixVerification {
        let headers = authorizations.filter(XMatrixAuthorization.usesXMatrixScheme)
        guard !headers.isEmpty else { return .missingAuthorization }
        var parsed: [XMatrixAuthorization] = []
        for header in headers {
            do {
                parsed.append(try XMatrixAuthorization(parsing: header))
            } catch {
                return .malformed(error)
            }
        }
        let origin = parsed[0].origin
        guard parsed.allSatisfy({ $0.origin == origin }) else { return .originMismatch }
        for auth in parsed {
            if let theirs = auth.destination, theirs != destination { return .destinationMismatch(theirs) }
        }
        var message: [UInt8] = []
        do {
            let methodBytes = Array(method.utf8)
            let uriBytes = Array(uri.utf8)
            let ok = methodBytes.withUnsafeBytes { XMatrixFields.isMethod($0) }
            guard ok else { return .invalidRequest(.invalidMethod) }
            guard uriBytes.withUnsafeBytes({ XMatrixFields.isURI($0) }) else { return .invalidRequest(.invalidURI) }
            try withBytes(Array(origin.utf8)) { (o) throws(XMatrixRequestError) in
                try withBytes(Array(destination.utf8)) { (d) throws(XMatrixRequestError) in
                    try withBytes(methodBytes) { (m) throws(XMatrixRequestError) in
                        try withBytes(uriBytes) { (u) throws(XMatrixRequestError) in
                            try withBytes(content ?? []) { (c) throws(XMatrixRequestError) in
                                try XMatrixFields.appendSignable(
                                    origin: o, destination: d, method: m, uri: u, content: content == nil ? nil : c, limits: limits,
                                    to: &message)
                            }
                        }
                    }
                }
            }
        } catch {
            if case .invalidContent(let jsonError) = error { return .invalidContent(jsonError) }
            return .invalidRequest(error)
        }
        var verified: KeyID?
        var firstUnknown: KeyID?
        for auth in parsed {
            guard let key = publicKeys(origin, auth.keyID) else {
                if firstUnknown == nil { firstUnknown = auth.keyID }
                continue
            }
            let ok = message.withUnsafeBytes { msg in
                auth.signature.bytes.withUnsafeBytes { key.verify(signature: $0, message: msg) }
            }
            guard ok else { return .badSignature(auth.keyID) }
            if verified == nil { verified = auth.keyID }
        }
        if let verified { return .valid(origin: origin, keyID: verified) }
        return .unknownKey(firstUnknown ?? parsed[0].keyID)
    }
}
