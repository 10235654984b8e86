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
        case .invalidURI: return "uri must be the request target exactly as sent: starting with '/', visible ASCII (no spaces or controls), no '#'"
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
/// byte-exact as sent. One signer per thread: it owns a scratch buffer, sized once, in which the
/// object and the header are laid out with plain copies, so signing allocates nothing.
public final class XMatrixSigner {
    // Touched only by the owning thread; skip the dynamic exclusivity check on the hot path.
    @exclusivity(unchecked) private var scratch: UnsafeMutableRawBufferPointer

    public init() {
        scratch = .allocate(byteCount: 1024, alignment: 16)
    }

    deinit {
        scratch.deallocate()
    }

    private func reserve(_ count: Int) {
        guard scratch.count < count else { return }
        scratch.deallocate()
        scratch = .allocate(byteCount: max(count, scratch.count * 2), alignment: 16)
    }

    /// Signs with `key` and returns the signature and header.
    public func sign(
        origin: String, destination: String, method: String, uri: String, content: [UInt8]? = nil, key: SigningKey,
        limits: JSONLimits = .default
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
                                    key: key, signature: sig.baseAddress!, header: &header, limits: limits)
                            }
                        }
                    }
                }
            }
        }
        return SignedRequest(keyID: key.id, signature: Signature(bytes: signature)!, header: String(decoding: header, as: UTF8.self))
    }

    /// The allocation-free core used by the daemon: validates the fields, lays out the
    /// canonical object, signs it into `signature` (64 bytes) and appends the header to `header`.
    /// `originIsKnown`: the origin is the name of a server in the keyring, already checked.
    public func sign(
        origin: UnsafeRawBufferPointer, destination: UnsafeRawBufferPointer, method: UnsafeRawBufferPointer,
        uri: UnsafeRawBufferPointer, content: UnsafeRawBufferPointer?, key: SigningKey,
        signature: UnsafeMutableRawPointer, header: inout [UInt8], prevalidated: Bool = false,
        limits: JSONLimits = .default
    ) throws(XMatrixRequestError) {
        if !prevalidated, let problem = XMatrixFields.problem(origin: origin, destination: destination, method: method, uri: uri) {
            throw problem
        }
        let layout = try XMatrixFields.SignableLayout(
            origin: origin, destination: destination, method: method, uri: uri, rawContent: content, limits: limits)
        let headerLength = XMatrixFields.headerLength(origin: origin, destination: destination, keyID: key.id)
        reserve(max(layout.total, headerLength))
        let base = scratch.baseAddress!
        layout.write(at: base)
        key.sign(UnsafeRawBufferPointer(start: base, count: layout.total), into: signature)
        XMatrixFields.writeHeader(
            origin: origin, destination: destination, keyID: key.id,
            signature: UnsafeRawBufferPointer(start: signature, count: Ed25519.signatureBytes), at: base)
        header.append(contentsOf: UnsafeRawBufferPointer(start: base, count: headerLength))
    }
}

/// Field checks and the byte layouts shared by signing and verifying.
enum XMatrixFields {
    static func isServerName(_ bytes: UnsafeRawBufferPointer) -> Bool {
        ServerName.isValid(bytes)
    }

    /// An HTTP method is a token (RFC 9110 tchar).
    static func isMethod(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !bytes.isEmpty, bytes.count <= 32 else { return false }
        for byte in bytes where !isTokenChar(byte) { return false }
        return true
    }

    /// A request target as sent: origin-form, visible ASCII only, no fragment.
    static func isURI(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.first == UInt8(ascii: "/") else { return false }
        for byte in bytes where byte <= 0x20 || byte >= 0x7F || byte == UInt8(ascii: "#") { return false }
        return true
    }

    /// The first of the four fields that breaks its grammar, in request order.
    static func problem(
        origin: UnsafeRawBufferPointer, destination: UnsafeRawBufferPointer, method: UnsafeRawBufferPointer, uri: UnsafeRawBufferPointer
    ) -> XMatrixRequestError? {
        if !isServerName(origin) { return .invalidOrigin }
        if !isServerName(destination) { return .invalidDestination }
        if !isMethod(method) { return .invalidMethod }
        if !isURI(uri) { return .invalidURI }
        return nil
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

    private static let contentKey: StaticString = #"{"content":"#
    private static let destinationKey: StaticString = #""destination":"#
    private static let methodKey: StaticString = #","method":"#
    private static let originKey: StaticString = #","origin":"#
    private static let uriKey: StaticString = #","uri":"#

    /// The canonical request object, measured first and then written with plain copies.
    struct SignableLayout {
        let origin: UnsafeRawBufferPointer
        let destination: UnsafeRawBufferPointer
        let method: UnsafeRawBufferPointer
        let uri: UnsafeRawBufferPointer
        /// Already canonical.
        let content: [UInt8]?
        let quoted: (origin: Int, destination: Int, method: Int, uri: Int)
        let total: Int

        init(origin: UnsafeRawBufferPointer, destination: UnsafeRawBufferPointer, method: UnsafeRawBufferPointer, uri: UnsafeRawBufferPointer, content: [UInt8]?) {
            self.origin = origin
            self.destination = destination
            self.method = method
            self.uri = uri
            self.content = content
            quoted = (
                CanonicalEncoding.quotedLength(origin), CanonicalEncoding.quotedLength(destination),
                CanonicalEncoding.quotedLength(method), CanonicalEncoding.quotedLength(uri)
            )
            var total = quoted.origin + quoted.destination + quoted.method + quoted.uri
            total += destinationKey.utf8CodeUnitCount + methodKey.utf8CodeUnitCount + originKey.utf8CodeUnitCount + uriKey.utf8CodeUnitCount + 1
            if let content { total += contentKey.utf8CodeUnitCount + content.count + 1 } else { total += 1 }
            self.total = total
        }

        /// The same, canonicalising the request body first (when there is one).
        init(
            origin: UnsafeRawBufferPointer, destination: UnsafeRawBufferPointer, method: UnsafeRawBufferPointer,
            uri: UnsafeRawBufferPointer, rawContent: UnsafeRawBufferPointer?, limits: JSONLimits
        ) throws(XMatrixRequestError) {
            var canonical: [UInt8]?
            if let rawContent {
                do {
                    canonical = try CanonicalJSON.canonicalize(rawContent, limits: limits)
                } catch {
                    throw .invalidContent(error)
                }
            }
            self.init(origin: origin, destination: destination, method: method, uri: uri, content: canonical)
        }

        func write(at base: UnsafeMutableRawPointer) {
            var at = base
            func put(_ literal: StaticString) {
                at.copyMemory(from: literal.utf8Start, byteCount: literal.utf8CodeUnitCount)
                at += literal.utf8CodeUnitCount
            }
            func put(_ byte: UInt8) {
                at.storeBytes(of: byte, as: UInt8.self)
                at += 1
            }
            if let content {
                put(contentKey)
                content.withUnsafeBytes { at.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                at += content.count
                put(UInt8(ascii: ","))
            } else {
                put(UInt8(ascii: "{"))
            }
            put(destinationKey)
            at += CanonicalEncoding.writeQuoted(destination, at: at, length: quoted.destination)
            put(methodKey)
            at += CanonicalEncoding.writeQuoted(method, at: at, length: quoted.method)
            put(originKey)
            at += CanonicalEncoding.writeQuoted(origin, at: at, length: quoted.origin)
            put(uriKey)
            at += CanonicalEncoding.writeQuoted(uri, at: at, length: quoted.uri)
            put(UInt8(ascii: "}"))
            assert(at - base == total, "signable layout miscounted")
        }
    }

    /// Appends the canonical JSON of the request object. `content`, when present, is canonicalised.
    static func appendSignable(
        origin: UnsafeRawBufferPointer, destination: UnsafeRawBufferPointer, method: UnsafeRawBufferPointer,
        uri: UnsafeRawBufferPointer, content: UnsafeRawBufferPointer?, limits: JSONLimits = .default, to out: inout [UInt8]
    ) throws(XMatrixRequestError) {
        let layout = try SignableLayout(origin: origin, destination: destination, method: method, uri: uri, rawContent: content, limits: limits)
        out.append(contentsOf: [UInt8](unsafeUninitializedCapacity: layout.total) { buffer, count in
            layout.write(at: UnsafeMutableRawPointer(buffer.baseAddress!))
            count = layout.total
        })
    }

    private static let headerOrigin: StaticString = #"X-Matrix origin=""#
    private static let headerDestination: StaticString = #"",destination=""#
    private static let headerKey: StaticString = #"",key="ed25519:"#
    private static let headerSig: StaticString = #"",sig=""#

    static func headerLength(origin: UnsafeRawBufferPointer, destination: UnsafeRawBufferPointer, keyID: KeyID) -> Int {
        headerOrigin.utf8CodeUnitCount + origin.count + headerDestination.utf8CodeUnitCount + destination.count
            + headerKey.utf8CodeUnitCount + keyID.version.utf8.count + headerSig.utf8CodeUnitCount
            + Base64.encodedCount(Ed25519.signatureBytes, padded: false) + 1
    }

    /// `X-Matrix origin="…",destination="…",key="ed25519:…",sig="…"`, MMR's exact layout, at
    /// `base` (which must hold `headerLength`). The values need no escaping: server names and
    /// key IDs cannot hold quotes or backslashes.
    static func writeHeader(
        origin: UnsafeRawBufferPointer, destination: UnsafeRawBufferPointer, keyID: KeyID,
        signature: UnsafeRawBufferPointer, at base: UnsafeMutableRawPointer
    ) {
        // (`put` takes the cursor inout rather than capturing it: a captured var would pay a
        // dynamic exclusivity check on every call.)
        var at = base
        put(headerOrigin, at: &at)
        put(origin, at: &at)
        put(headerDestination, at: &at)
        put(destination, at: &at)
        put(headerKey, at: &at)
        keyID.version.utf8.withContiguousStorageIfAvailable { put(UnsafeRawBufferPointer($0), at: &at) }
            ?? put(Array(keyID.version.utf8), at: &at)
        put(headerSig, at: &at)
        let encoded = Base64.encodedCount(signature.count, padded: false)
        Base64.encode(signature, padded: false, into: UnsafeMutableRawBufferPointer(start: at, count: encoded))
        at += encoded
        at.storeBytes(of: UInt8(ascii: "\""), as: UInt8.self)
    }

    @inline(__always)
    private static func put(_ literal: StaticString, at: inout UnsafeMutableRawPointer) {
        at.copyMemory(from: literal.utf8Start, byteCount: literal.utf8CodeUnitCount)
        at += literal.utf8CodeUnitCount
    }

    @inline(__always)
    private static func put(_ bytes: UnsafeRawBufferPointer, at: inout UnsafeMutableRawPointer) {
        if !bytes.isEmpty { at.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        at += bytes.count
    }

    private static func put(_ bytes: [UInt8], at: inout UnsafeMutableRawPointer) {
        bytes.withUnsafeBytes { put($0, at: &at) }
    }
}
