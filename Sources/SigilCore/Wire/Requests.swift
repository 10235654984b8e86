/// SIGN_REQUEST's fields.
public struct SignRequestParams: Sendable, Equatable {
    public var origin: String
    public var destination: String
    public var method: String
    public var uri: String
    /// The JSON request body; nil for requests without one (MMR's downloads).
    public var content: [UInt8]?

    public init(origin: String, destination: String, method: String = "GET", uri: String, content: [UInt8]? = nil) {
        self.origin = origin
        self.destination = destination
        self.method = method
        self.uri = uri
        self.content = content
    }
}

/// SIGN_REQUEST's fields as slices of a frame body: what the daemon's hot path reads, with no copy.
public struct SignRequestFields {
    public let origin: UnsafeRawBufferPointer
    public let destination: UnsafeRawBufferPointer
    public let method: UnsafeRawBufferPointer
    public let uri: UnsafeRawBufferPointer
    /// Nil when the content field is empty.
    public let content: UnsafeRawBufferPointer?

    /// Reads the layout only. The fields are ASCII by their grammar, so they are not checked as
    /// UTF-8 here: `problem` checks each one once, completely.
    public init(reading body: UnsafeRawBufferPointer) throws(WireError) {
        var reader = WireReader(body)
        origin = try reader.rawStringBytes("origin")
        destination = try reader.rawStringBytes("destination")
        method = try reader.rawStringBytes("method")
        uri = try reader.rawStringBytes("uri")
        let content = try reader.bytesField("content")
        self.content = content.isEmpty ? nil : content
        try reader.finish()
    }

    /// The origin field of a SIGN_REQUEST body, read without checking the rest: for a look ahead
    /// at a frame not yet handled. Nil when the body is too short to hold it.
    @inline(__always)
    public static func origin(peeking body: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard body.count >= 2 else { return nil }
        let count = Int(body[0]) << 8 | Int(body[1])
        guard count <= body.count - 2 else { return nil }
        return UnsafeRawBufferPointer(rebasing: body[2..<(2 + count)])
    }

    /// The first field that breaks its grammar (docs/PROTOCOL.md, SIGN_REQUEST), or nil: origin
    /// and destination are server names, method an HTTP token, uri an origin-form request target
    /// of visible ASCII with no fragment. (The content is checked when it is canonicalised.)
    public var problem: XMatrixRequestError? { problem(originKnown: false) }

    /// The same, for an origin already found among the keyring's server names, which were
    /// checked against the grammar when they were loaded.
    public func problem(originKnown: Bool) -> XMatrixRequestError? {
        XMatrixFields.problem(origin: originKnown ? nil : origin, destination: destination, method: method, uri: uri)
    }
}

/// VERIFY's fields.
public struct VerifyParams: Sendable, Equatable {
    public enum Key: Sendable, Equatable {
        case publicKey(PublicKey)
        /// A key of a server in the daemon's keyring, active or retired.
        case keyID(server: String, id: String)
    }

    public var key: Key
    public var message: [UInt8]
    public var signature: [UInt8]

    public init(key: Key, message: [UInt8], signature: [UInt8]) {
        self.key = key
        self.message = message
        self.signature = signature
    }
}

/// A public key given in a request: its owner, ID and bytes.
public struct GivenKey: Sendable, Equatable {
    public var server: String
    public var id: String
    public var publicKey: PublicKey

    public init(server: String, id: String, publicKey: PublicKey) {
        self.server = server
        self.id = id
        self.publicKey = publicKey
    }
}

/// VERIFY_JSON's fields.
public struct VerifyJSONParams: Sendable, Equatable {
    /// Whose signatures to check.
    public var server: String
    /// `(key ID, public key)`; empty means the keyring's keys for `server`.
    public var keys: [(id: String, publicKey: PublicKey)]
    public var json: [UInt8]

    public init(server: String, keys: [(id: String, publicKey: PublicKey)], json: [UInt8]) {
        self.server = server
        self.keys = keys
        self.json = json
    }

    public static func == (a: VerifyJSONParams, b: VerifyJSONParams) -> Bool {
        a.server == b.server && a.json == b.json && a.keys.map(\.id) == b.keys.map(\.id)
            && a.keys.map(\.publicKey) == b.keys.map(\.publicKey)
    }
}

/// VERIFY_REQUEST's fields.
public struct VerifyRequestParams: Sendable, Equatable {
    /// Every Authorization header value of the request.
    public var authorizations: [String]
    public var method: String
    public var uri: String
    /// Our server name: what the request was sent to.
    public var destination: String
    public var content: [UInt8]?
    /// The origin's keys; empty means the keyring's own keys.
    public var keys: [GivenKey]

    public init(authorizations: [String], method: String, uri: String, destination: String, content: [UInt8]? = nil, keys: [GivenKey]) {
        self.authorizations = authorizations
        self.method = method
        self.uri = uri
        self.destination = destination
        self.content = content
        self.keys = keys
    }
}

/// HELLO's paging extension: asks for one page of the server list, after `cursor` ("" for the
/// first page), and for the page trailer in the answer.
public struct HelloPage: Sendable, Equatable {
    /// Reserved: 0.
    public var features: UInt32
    public var cursor: String

    public init(features: UInt32 = 0, cursor: String = "") {
        self.features = features
        self.cursor = cursor
    }
}

/// A request, as the client sends it and the daemon decodes it (docs/PROTOCOL.md, "Operations").
public enum Request: Sendable, Equatable {
    /// `page` nil: today's form, whose answer lists as many servers as fit in one reply.
    case hello(clientName: String, page: HelloPage? = nil)
    case ping(payload: [UInt8])
    /// `cursor` nil: the whole listing in one reply (refused if it does not fit); otherwise the
    /// page after `cursor` ("" for the first), with the next cursor in the answer.
    case listKeys(cursor: String? = nil)
    case signRequest(SignRequestParams)
    case signJSON(server: String, json: [UInt8])
    /// `keyID` nil: the server's signing key.
    case signRaw(server: String, keyID: String?, message: [UInt8])
    case verify(VerifyParams)
    case verifyJSON(VerifyJSONParams)
    case verifyRequest(VerifyRequestParams)
    /// `validUntilTS` 0: now plus the configured validity.
    case keyDocument(server: String, validUntilTS: UInt64)
    case stats

    public var opcode: Opcode {
        switch self {
        case .hello: return .hello
        case .ping: return .ping
        case .listKeys: return .listKeys
        case .signRequest: return .signRequest
        case .signJSON: return .signJSON
        case .signRaw: return .signRaw
        case .verify: return .verify
        case .verifyJSON: return .verifyJSON
        case .verifyRequest: return .verifyRequest
        case .keyDocument: return .keyDocument
        case .stats: return .stats
        }
    }

    public func encodeBody(into w: inout WireWriter) {
        switch self {
        case .hello(let name, let page):
            w.string(name)
            if let page {
                w.u32(page.features)
                w.string(page.cursor)
            }
        case .ping(let payload):
            w.bytesField(payload)
        case .listKeys(let cursor):
            if let cursor { w.string(cursor) }
        case .stats:
            break
        case .signRequest(let p):
            w.string(p.origin)
            w.string(p.destination)
            w.string(p.method)
            w.string(p.uri)
            w.bytesField(p.content ?? [])
        case .signJSON(let server, let json):
            w.string(server)
            w.bytesField(json)
        case .signRaw(let server, let keyID, let message):
            w.string(server)
            w.string(keyID ?? "")
            w.bytesField(message)
        case .verify(let p):
            switch p.key {
            case .publicKey(let key):
                w.u8(0)
                w.fixed(key.bytes)
            case .keyID(let server, let id):
                w.u8(1)
                w.string(server)
                w.string(id)
            }
            w.bytesField(p.message)
            w.bytesField(p.signature)
        case .verifyJSON(let p):
            w.string(p.server)
            w.u16(UInt16(p.keys.count))
            for key in p.keys {
                w.string(key.id)
                w.fixed(key.publicKey.bytes)
            }
            w.bytesField(p.json)
        case .verifyRequest(let p):
            w.u16(UInt16(p.authorizations.count))
            for header in p.authorizations { w.string(header) }
            w.string(p.method)
            w.string(p.uri)
            w.string(p.destination)
            w.bytesField(p.content ?? [])
            w.u16(UInt16(p.keys.count))
            for key in p.keys {
                w.string(key.server)
                w.string(key.id)
                w.fixed(key.publicKey.bytes)
            }
        case .keyDocument(let server, let validUntil):
            w.string(server)
            w.u64(validUntil)
        }
    }

    public static func decode(_ opcode: Opcode, body: UnsafeRawBufferPointer) throws(WireError) -> Request {
        var r = WireReader(body)
        let request: Request
        switch opcode {
        case .hello:
            let name = try r.string("client_name")
            if r.remaining > 0 {
                let features = try r.u32("features")
                request = .hello(clientName: name, page: HelloPage(features: features, cursor: try r.string("cursor")))
            } else {
                request = .hello(clientName: name)
            }
        case .ping:
            request = .ping(payload: Array(try r.bytesField("payload")))
        case .listKeys:
            request = .listKeys(cursor: body.isEmpty ? nil : try r.string("cursor"))
        case .stats:
            request = .stats
        case .signRequest:
            let fields = try SignRequestFields(reading: body)
            // SignRequestFields leaves UTF-8 to the grammar check; a String made here must not
            // quietly replace what it cannot decode (found by FuzzWire).
            for (name, field) in [
                ("origin", fields.origin), ("destination", fields.destination), ("method", fields.method), ("uri", fields.uri),
            ]
            where !UTF8Validation.isValid(field) {
                throw WireError("\(name) is not valid UTF-8")
            }
            return .signRequest(
                SignRequestParams(
                    origin: String(decoding: fields.origin, as: UTF8.self),
                    destination: String(decoding: fields.destination, as: UTF8.self),
                    method: String(decoding: fields.method, as: UTF8.self), uri: String(decoding: fields.uri, as: UTF8.self),
                    content: fields.content.map { Array($0) }))
        case .signJSON:
            request = .signJSON(server: try r.string("server_name"), json: Array(try r.bytesField("json")))
        case .signRaw:
            let server = try r.string("server_name")
            let keyID = try r.string("key_id")
            request = .signRaw(server: server, keyID: keyID.isEmpty ? nil : keyID, message: Array(try r.bytesField("message")))
        case .verify:
            let key: VerifyParams.Key
            switch try r.u8("key_mode") {
            case 0:
                key = .publicKey(PublicKey(bytes: try r.fixed(Ed25519.publicKeyBytes, "public_key"))!)
            case 1:
                key = .keyID(server: try r.string("server_name"), id: try r.string("key_id"))
            case let mode:
                throw WireError("key_mode \(mode) is not 0 (public key) or 1 (key ID)")
            }
            let message = Array(try r.bytesField("message"))
            request = .verify(VerifyParams(key: key, message: message, signature: Array(try r.bytesField("signature"))))
        case .verifyJSON:
            let server = try r.string("server_name")
            let count = Int(try r.u16("key_count"))
            var keys: [(id: String, publicKey: PublicKey)] = []
            for _ in 0..<count {
                let id = try r.string("key_id")
                keys.append((id, PublicKey(bytes: try r.fixed(Ed25519.publicKeyBytes, "public_key"))!))
            }
            request = .verifyJSON(VerifyJSONParams(server: server, keys: keys, json: Array(try r.bytesField("json"))))
        case .verifyRequest:
            let headerCount = Int(try r.u16("header_count"))
            var headers: [String] = []
            for _ in 0..<headerCount { headers.append(try r.string("authorization")) }
            let method = try r.string("method")
            let uri = try r.string("uri")
            let destination = try r.string("destination")
            let content = try r.bytesField("content")
            let keyCount = Int(try r.u16("key_count"))
            var keys: [GivenKey] = []
            for _ in 0..<keyCount {
                let server = try r.string("origin")
                let id = try r.string("key_id")
                keys.append(
                    GivenKey(server: server, id: id, publicKey: PublicKey(bytes: try r.fixed(Ed25519.publicKeyBytes, "public_key"))!))
            }
            request = .verifyRequest(
                VerifyRequestParams(
                    authorizations: headers, method: method, uri: uri, destination: destination,
                    content: content.isEmpty ? nil : Array(content), keys: keys))
        case .keyDocument:
            request = .keyDocument(server: try r.string("server_name"), validUntilTS: try r.u64("valid_until_ts"))
        }
        try r.finish()
        return request
    }

    /// Appends one request frame.
    public func encodeFrame(requestID: UInt32, into w: inout WireWriter) {
        let start = w.beginFrame(opcode: opcode.rawValue, flags: 0, status: 0, requestID: requestID)
        encodeBody(into: &w)
        w.endFrame(at: start)
    }

    /// Appends one batch frame; every request must have the same batchable opcode.
    public static func encodeBatch(_ requests: [Request], requestID: UInt32, into w: inout WireWriter) {
        precondition(!requests.isEmpty && requests.count <= Int(UInt16.max), "a batch holds 1 to 65535 items")
        let opcode = requests[0].opcode
        precondition(opcode.acceptsBatch && requests.allSatisfy { $0.opcode == opcode }, "batch items must share one batchable opcode")
        let start = w.beginFrame(opcode: opcode.rawValue, flags: Wire.flagBatch, status: 0, requestID: requestID)
        w.u16(UInt16(requests.count))
        for request in requests {
            let length = w.placeholderU32()
            request.encodeBody(into: &w)
            w.patchLength(at: length)
        }
        w.endFrame(at: start)
    }
}

/// Splits a batch body into its items' bodies.
public func decodeBatchItems(_ body: UnsafeRawBufferPointer, maxItems: Int) throws(WireError) -> [UnsafeRawBufferPointer] {
    var r = WireReader(body)
    let count = Int(try r.u16("item_count"))
    guard count > 0 else { throw WireError("a batch needs at least one item") }
    guard count <= maxItems else { throw WireError("batch of \(count) items exceeds the limit of \(maxItems)") }
    var items: [UnsafeRawBufferPointer] = []
    items.reserveCapacity(count)
    for _ in 0..<count { items.append(try r.bytesField("item")) }
    try r.finish()
    return items
}
