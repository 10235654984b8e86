/// HELLO's answer: what this daemon allows this caller, and its limits.
public struct HelloInfo: Sendable, Equatable {
    public var protocolVersion: UInt8
    public var maxFrameLength: UInt32
    public var maxBatchItems: UInt16
    public var maxInFlight: UInt32
    public var operations: [Opcode]
    public var servers: [String]
    public var daemonVersion: String
    /// Present when the request asked for a page (`HelloPage`).
    public var page: Page?

    /// The paged answer's trailer.
    public struct Page: Sendable, Equatable {
        /// How many servers this caller may use in all.
        public var serverTotal: UInt32
        /// Send it back for the next page; "" when this page ends the list.
        public var nextCursor: String

        public init(serverTotal: UInt32, nextCursor: String) {
            self.serverTotal = serverTotal
            self.nextCursor = nextCursor
        }
    }

    public init(
        protocolVersion: UInt8 = Wire.version, maxFrameLength: UInt32, maxBatchItems: UInt16, maxInFlight: UInt32, operations: [Opcode],
        servers: [String], daemonVersion: String
    ) {
        self.protocolVersion = protocolVersion
        self.maxFrameLength = maxFrameLength
        self.maxBatchItems = maxBatchItems
        self.maxInFlight = maxInFlight
        self.operations = operations
        self.servers = servers
        self.daemonVersion = daemonVersion
    }
}

/// LIST_KEYS's answer.
public struct KeyListing: Sendable, Equatable {
    public struct Key: Sendable, Equatable {
        public var id: String
        public var publicKey: PublicKey
        public var state: KeyState
        /// Milliseconds; 0 unless retired.
        public var expiredTS: UInt64

        public init(id: String, publicKey: PublicKey, state: KeyState, expiredTS: UInt64) {
            self.id = id
            self.publicKey = publicKey
            self.state = state
            self.expiredTS = expiredTS
        }
    }

    public struct Server: Sendable, Equatable {
        public var name: String
        public var keys: [Key]

        public init(name: String, keys: [Key]) {
            self.name = name
            self.keys = keys
        }
    }

    public var servers: [Server]
    /// Present when the request carried a cursor: the next one, or "" when the listing is done.
    public var nextCursor: String?

    public init(servers: [Server], nextCursor: String? = nil) {
        self.servers = servers
        self.nextCursor = nextCursor
    }
}

extension KeyListing.Server {
    /// Bytes this entry takes in a LIST_KEYS answer.
    public var encodedSize: Int {
        2 + name.utf8.count + 2 + keys.reduce(0) { $0 + 2 + $1.id.utf8.count + Ed25519.publicKeyBytes + 1 + 8 }
    }
}

/// VERIFY_JSON's answer.
public struct JSONVerdict: Sendable, Equatable {
    public var isValid: Bool
    public var outcomes: [(id: String, outcome: SignatureOutcome)]

    public init(isValid: Bool, outcomes: [(id: String, outcome: SignatureOutcome)]) {
        self.isValid = isValid
        self.outcomes = outcomes
    }

    public static func == (a: JSONVerdict, b: JSONVerdict) -> Bool {
        a.isValid == b.isValid && a.outcomes.map(\.id) == b.outcomes.map(\.id) && a.outcomes.map(\.outcome) == b.outcomes.map(\.outcome)
    }
}

/// VERIFY_REQUEST's answer.
public struct RequestVerification: Sendable, Equatable {
    public var verdict: RequestVerdict
    /// The origin that signed (empty when unknown).
    public var origin: String
    /// The key that verified, or the key at fault (empty when none).
    public var keyID: String
    /// A human-readable explanation.
    public var detail: String

    public var isValid: Bool { verdict == .valid }

    public init(verdict: RequestVerdict, origin: String, keyID: String, detail: String) {
        self.verdict = verdict
        self.origin = origin
        self.keyID = keyID
        self.detail = detail
    }
}

/// A response body, by operation.
public enum Response: Sendable, Equatable {
    case hello(HelloInfo)
    case pong(payload: [UInt8])
    case keys(KeyListing)
    case signedRequest(SignedRequest)
    case signedJSON([UInt8])
    case signature(keyID: KeyID, Signature)
    case verified(Bool)
    case verifiedJSON(JSONVerdict)
    case verifiedRequest(RequestVerification)
    case keyDocument([UInt8])
    case stats([UInt8])

    public func encodeBody(into w: inout WireWriter) {
        switch self {
        case .hello(let info):
            w.u8(info.protocolVersion)
            w.u32(info.maxFrameLength)
            w.u16(info.maxBatchItems)
            w.u32(info.maxInFlight)
            w.u16(UInt16(info.operations.count))
            for op in info.operations { w.u8(op.rawValue) }
            w.u16(UInt16(info.servers.count))
            for server in info.servers { w.string(server) }
            w.string(info.daemonVersion)
            if let page = info.page {
                w.u32(page.serverTotal)
                w.string(page.nextCursor)
            }
        case .pong(let payload):
            w.bytesField(payload)
        case .keys(let listing):
            w.u16(UInt16(listing.servers.count))
            for server in listing.servers {
                w.string(server.name)
                w.u16(UInt16(server.keys.count))
                for key in server.keys {
                    w.string(key.id)
                    w.fixed(key.publicKey.bytes)
                    w.u8(key.state.rawValue)
                    w.u64(key.expiredTS)
                }
            }
            if let cursor = listing.nextCursor { w.string(cursor) }
        case .signedRequest(let signed):
            w.string(signed.keyID.description)
            w.fixed(signed.signature.bytes)
            w.string(signed.header)
        case .signedJSON(let json), .keyDocument(let json), .stats(let json):
            w.bytesField(json)
        case .signature(let keyID, let signature):
            w.string(keyID.description)
            w.fixed(signature.bytes)
        case .verified(let valid):
            w.u8(valid ? 1 : 0)
        case .verifiedJSON(let verdict):
            w.u8(verdict.isValid ? 1 : 0)
            w.u16(UInt16(verdict.outcomes.count))
            for outcome in verdict.outcomes {
                w.string(outcome.id)
                w.u8(outcome.outcome.rawValue)
            }
        case .verifiedRequest(let result):
            w.u8(result.verdict.rawValue)
            w.string(result.origin)
            w.string(result.keyID)
            w.string(result.detail)
        }
    }

    public static func decode(_ opcode: Opcode, body: UnsafeRawBufferPointer) throws(WireError) -> Response {
        var r = WireReader(body)
        let response: Response
        switch opcode {
        case .hello:
            let version = try r.u8("protocol_version")
            let maxFrame = try r.u32("max_frame")
            let maxBatch = try r.u16("max_batch")
            let maxInFlight = try r.u32("max_in_flight")
            var ops: [Opcode] = []
            for _ in 0..<Int(try r.u16("op_count")) {
                // Operations newer than this client are skipped, not refused.
                if let op = Opcode(rawValue: try r.u8("opcode")) { ops.append(op) }
            }
            var servers: [String] = []
            for _ in 0..<Int(try r.u16("server_count")) { servers.append(try r.string("server_name")) }
            var info = HelloInfo(
                protocolVersion: version, maxFrameLength: maxFrame, maxBatchItems: maxBatch, maxInFlight: maxInFlight,
                operations: ops, servers: servers, daemonVersion: try r.string("daemon_version"))
            if r.remaining > 0 {
                let total = try r.u32("server_total")
                info.page = HelloInfo.Page(serverTotal: total, nextCursor: try r.string("next_cursor"))
            }
            response = .hello(info)
        case .ping:
            response = .pong(payload: Array(try r.bytesField("payload")))
        case .listKeys:
            var servers: [KeyListing.Server] = []
            for _ in 0..<Int(try r.u16("server_count")) {
                let name = try r.string("server_name")
                var keys: [KeyListing.Key] = []
                for _ in 0..<Int(try r.u16("key_count")) {
                    let id = try r.string("key_id")
                    let publicKey = PublicKey(bytes: try r.fixed(Ed25519.publicKeyBytes, "public_key"))!
                    guard let state = KeyState(rawValue: try r.u8("state")) else { throw WireError("unknown key state") }
                    keys.append(KeyListing.Key(id: id, publicKey: publicKey, state: state, expiredTS: try r.u64("expired_ts")))
                }
                servers.append(KeyListing.Server(name: name, keys: keys))
            }
            response = .keys(KeyListing(servers: servers, nextCursor: r.remaining > 0 ? try r.string("next_cursor") : nil))
        case .signRequest:
            let keyID = try r.string("key_id")
            let signature = Array(try r.fixed(Ed25519.signatureBytes, "signature"))
            let header = try r.string("header")
            guard let id = KeyID(keyID) else { throw WireError("key_id '\(keyID)' is not an ed25519 key ID") }
            response = .signedRequest(SignedRequest(keyID: id, signature: Signature(bytes: signature)!, header: header))
        case .signJSON:
            response = .signedJSON(Array(try r.bytesField("json")))
        case .keyDocument:
            response = .keyDocument(Array(try r.bytesField("json")))
        case .stats:
            response = .stats(Array(try r.bytesField("json")))
        case .signRaw:
            let keyID = try r.string("key_id")
            guard let id = KeyID(keyID) else { throw WireError("key_id '\(keyID)' is not an ed25519 key ID") }
            response = .signature(keyID: id, Signature(bytes: Array(try r.fixed(Ed25519.signatureBytes, "signature")))!)
        case .verify:
            response = .verified(try r.u8("valid") == 1)
        case .verifyJSON:
            let valid = try r.u8("valid") == 1
            var outcomes: [(id: String, outcome: SignatureOutcome)] = []
            for _ in 0..<Int(try r.u16("key_count")) {
                let id = try r.string("key_id")
                guard let outcome = SignatureOutcome(rawValue: try r.u8("outcome")) else { throw WireError("unknown signature outcome") }
                outcomes.append((id, outcome))
            }
            response = .verifiedJSON(JSONVerdict(isValid: valid, outcomes: outcomes))
        case .verifyRequest:
            guard let verdict = RequestVerdict(rawValue: try r.u8("result")) else { throw WireError("unknown verification result") }
            let origin = try r.string("origin")
            let keyID = try r.string("key_id")
            response = .verifiedRequest(RequestVerification(verdict: verdict, origin: origin, keyID: keyID, detail: try r.string("detail")))
        }
        try r.finish()
        return response
    }
}

/// An error answer: a status and its message.
public struct WireFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public let status: WireStatus
    public let message: String

    public init(_ status: WireStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "\(status): \(message)" }

    /// The longest message sent, in bytes: messages are for logs, and a bound on them bounds
    /// how much longer than its request a batch's answer can be.
    public static let maxMessageBytes = 1000

    public func encodeBody(into w: inout WireWriter) {
        var bytes = Array(message.utf8)
        if bytes.count > WireFailure.maxMessageBytes {
            // Cut on a character boundary: continuation bytes are 10xxxxxx.
            var cut = WireFailure.maxMessageBytes
            while cut > 0 && bytes[cut] & 0xC0 == 0x80 { cut -= 1 }
            bytes.removeSubrange(cut...)
        }
        w.u16(UInt16(bytes.count))
        w.fixed(bytes)
    }

    public static func decode(status: WireStatus, body: UnsafeRawBufferPointer) -> WireFailure {
        var r = WireReader(body)
        let message = (try? r.string("message")) ?? ""
        return WireFailure(status, message)
    }
}

/// Decodes a response frame's body: one result, or one per batch item.
public func decodeResponseFrame(_ header: FrameHeader, body: UnsafeRawBufferPointer) throws(WireError) -> [Result<Response, WireFailure>] {
    guard let status = WireStatus(rawValue: header.status) else { throw WireError("unknown status \(header.status)") }
    guard status == .ok else { return [.failure(WireFailure.decode(status: status, body: body))] }
    guard let opcode = Opcode(rawValue: header.opcode) else { throw WireError("unknown opcode 0x\(String(header.opcode, radix: 16))") }
    guard header.isBatch else { return [.success(try Response.decode(opcode, body: body))] }
    var r = WireReader(body)
    let count = Int(try r.u16("item_count"))
    var results: [Result<Response, WireFailure>] = []
    results.reserveCapacity(count)
    for _ in 0..<count {
        let itemStatusByte = try r.u8("item_status")
        guard let itemStatus = WireStatus(rawValue: itemStatusByte) else { throw WireError("unknown item status \(itemStatusByte)") }
        let item = try r.bytesField("item")
        if itemStatus == .ok {
            results.append(.success(try Response.decode(opcode, body: item)))
        } else {
            results.append(.failure(WireFailure.decode(status: itemStatus, body: item)))
        }
    }
    try r.finish()
    return results
}
