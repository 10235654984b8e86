/// Why an outbound request could not be signed.
public enum XMatrixRequestError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidOrigin
    case invalidDestination
    case invalidMethod
    case invalidURI
    case invalidContent(JSONError)

    public var description: String {
        switch self {
        case .invalidOrigin: return "origin is not a valid Matrix server name"
        case .invalidDestination: return "destination is not a valid Matrix server name"
        case .invalidMethod: return "method must be an HTTP token such as GET"
        case .invalidURI: return "uri must be the request target exactly as sent: starting with '/', printable ASCII, no spaces"
        case .invalidContent(let error): return "content is not valid JSON: \(error)"
        }
    }
}

/// A signed outbound federation request.
public struct SignedRequest: Sendable, Equatable {
    public let keyID: KeyID
    public let signature: Signature
    /// The whole Authorization header value, exactly as MMR writes it:
    /// `X-Matrix origin="…",destination="…",key="ed25519:…",sig="…"`.
    public let header: String
}

/// Builds, signs and formats X-Matrix Authorization headers for outbound requests.
///
/// The signed object is `{"content"?,"destination","method","origin","uri"}` (keys already in
/// canonical order), with `content` left out when there is none, never `null`, and `uri`
/// byte-exact as sent. Reuse one signer per thread: its scratch buffer makes signing allocation-free
/// apart from the output.
public struct XMatrixSigner {
    private var scratch: [UInt8] = []

    public init() {
        scratch.reserveCapacity(512)
    }

    /// Signs with `key` and returns the signature and header.
    public mutating func sign(
        origin: String, destination: String, method: String, uri: String, content: [UInt8]? = nil, key: SigningKey
    ) throws(XMatrixRequestError) -> SignedRequest {
        var header: [UInt8] = []
        var signature = [UInt8](repeating: 0, count: Ed25519.signatureBytes)
        try withBytes(Array(origin.utf8)) { (o) throws(XMatrixRequestError) in
            try withBytes(Array(destination.utf8)) { (d) throws(XMatrixRequestError) in
                try withBytes(Array(method.utf8)) { (m) throws(XMatrixRequestError) in
                    try withBytes(Array(uri.utf8)) { (u) throws(XMatrixRequestError) in
                        try withBytes(content ?? []) { (c) throws(XMatrixRequestError) in
                            try withMutableBytes(&signature) { (sig) throws(XMatrixRequestError) in
                                try sign(
                                    origin: o, destination: d, method: m, uri: u, content: content == nil ? nil : c,
                                    key: key, signature: sig.baseAddress!, header: &header)
                            }
                        }
                    }
                }
            }
        }
        return SignedRequest(keyID: key.id, signature: Signature(bytes: signature)!, header: String(decoding: header, as: UTF8.self))
    }

    /// The allocation-free core used by the daemon: validates the fields, writes the canonical
    /// object into scratch, signs it into `signature` (64 bytes) and appends the header to `header`.
    public mutating func sign(
        origin: UnsafeRawBufferPointer, destination: UnsafeRawBufferPointer, method: UnsafeRawBufferPointer,
        uri: UnsafeRawBufferPointer, content: UnsafeRawBufferPointer?, key: SigningKey,
        signature: UnsafeMutableRawPointer, header: inout [UInt8]
    ) throws(XMatrixRequestError) {
        guard XMatrixFields.isServerName(origin) else { throw .invalidOrigin }
        guard XMatrixFields.isServerName(destination) else { throw .invalidDestination }
        guard XMatrixFields.isMethod(method) else { throw .invalidMethod }
        guard XMatrixFields.isURI(uri) else { throw .invalidURI }
        scratch.removeAll(keepingCapacity: true)
        try XMatrixFields.appendSignable(
            origin: origin, destination: destination, method: method, uri: uri, content: content, to: &scratch)
        scratch.withUnsafeBytes { key.sign($0, into: signature) }
        XMatrixFields.appendHeader(
            origin: origin, destination: destination, keyID: key.id,
            signature: UnsafeRawBufferPointer(start: signature, count: Ed25519.signatureBytes), to: &header)
    }
}

/// Field checks and the byte layouts shared by signing and verifying.
enum XMatrixFields {
    static func isServerName(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count <= 261, let text = String(validating: bytes, as: UTF8.self) else { return false }
        return ServerName.isValid(text)
    }

    /// An HTTP method is a token (RFC 9110 tchar).
    static func isMethod(_ bytes: UnsafeRawBufferPointer) -> Bool {
        !bytes.isEmpty && bytes.count <= 32 && bytes.allSatisfy(isTokenChar)
    }

    /// A request target as sent: origin-form, visible ASCII only.
    static func isURI(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.first == UInt8(ascii: "/") && bytes.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    static func isTokenChar(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default: return false
        }
    }

    private static let contentKey: [UInt8] = Array(#"{"content":"#.utf8)
    private static let destinationKey: [UInt8] = Array(#""destination":"#.utf8)
    private static let methodKey: [UInt8] = Array(#","method":"#.utf8)
    private static let originKey: [UInt8] = Array(#","origin":"#.utf8)
    private static let uriKey: [UInt8] = Array(#","uri":"#.utf8)

    /// Appends the canonical JSON of the request object. `content`, when present, is canonicalised.
    static func appendSignable(
        origin: UnsafeRawBufferPointer, destination: UnsafeRawBufferPointer, method: UnsafeRawBufferPointer,
        uri: UnsafeRawBufferPointer, content: UnsafeRawBufferPointer?, to out: inout [UInt8]
    ) throws(XMatrixRequestError) {
        if let content {
            out.append(contentsOf: contentKey)
            do {
                out.append(contentsOf: try CanonicalJSON.canonicalize(content))
            } catch {
                throw .invalidContent(error)
            }
            out.append(UInt8(ascii: ","))
        } else {
            out.append(UInt8(ascii: "{"))
        }
        out.append(contentsOf: destinationKey)
        CanonicalEncoding.appendString(destination, to: &out)
        out.append(contentsOf: methodKey)
        CanonicalEncoding.appendString(method, to: &out)
        out.append(contentsOf: originKey)
        CanonicalEncoding.appendString(origin, to: &out)
        out.append(contentsOf: uriKey)
        CanonicalEncoding.appendString(uri, to: &out)
        out.append(UInt8(ascii: "}"))
    }

    private static let headerOrigin: [UInt8] = Array(#"X-Matrix origin=""#.utf8)
    private static let headerDestination: [UInt8] = Array(#"",destination=""#.utf8)
    private static let headerKey: [UInt8] = Array(#"",key=""#.utf8)
    private static let headerSig: [UInt8] = Array(#"",sig=""#.utf8)

    /// `X-Matrix origin="…",destination="…",key="ed25519:…",sig="…"`, MMR's exact layout. The
    /// values need no escaping: server names and key IDs cannot hold quotes or backslashes.
    static func appendHeader(
        origin: UnsafeRawBufferPointer, destination: UnsafeRawBufferPointer, keyID: KeyID,
        signature: UnsafeRawBufferPointer, to out: inout [UInt8]
    ) {
        out.append(contentsOf: headerOrigin)
        out.append(contentsOf: origin)
        out.append(contentsOf: headerDestination)
        out.append(contentsOf: destination)
        out.append(contentsOf: headerKey)
        out.append(contentsOf: KeyID.algorithm.utf8)
        out.append(UInt8(ascii: ":"))
        out.append(contentsOf: keyID.version.utf8)
        out.append(contentsOf: headerSig)
        Base64.encode(signature, padded: false, appendingTo: &out)
        out.append(UInt8(ascii: "\""))
    }
}
