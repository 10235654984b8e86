/// Operation codes (docs/PROTOCOL.md, "Operations").
public enum Opcode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 0x01
    case ping = 0x02
    case listKeys = 0x03
    case signRequest = 0x10
    case signJSON = 0x11
    case signRaw = 0x12
    case verify = 0x20
    case verifyJSON = 0x21
    case verifyRequest = 0x22
    case keyDocument = 0x30
    case stats = 0x31

    /// The name used in configs, logs and STATS.
    public var name: String {
        switch self {
        case .hello: return "hello"
        case .ping: return "ping"
        case .listKeys: return "list_keys"
        case .signRequest: return "sign_request"
        case .signJSON: return "sign_json"
        case .signRaw: return "sign_raw"
        case .verify: return "verify"
        case .verifyJSON: return "verify_json"
        case .verifyRequest: return "verify_request"
        case .keyDocument: return "key_document"
        case .stats: return "stats"
        }
    }

    public init?(name: String) {
        guard let match = Opcode.allCases.first(where: { $0.name == name.lowercased().replacingDashes() }) else { return nil }
        self = match
    }

    public var description: String { name }

    /// Operations that take batch frames.
    public var acceptsBatch: Bool {
        switch self {
        case .signRequest, .signJSON, .signRaw, .verify, .verifyJSON, .verifyRequest: return true
        default: return false
        }
    }
}

extension String {
    fileprivate func replacingDashes() -> String {
        String(self.map { $0 == "-" ? "_" : $0 })
    }
}

/// Response status codes (docs/PROTOCOL.md, "Status codes").
public enum WireStatus: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case ok = 0
    /// Malformed header (unknown flag bits, a response flag on a request).
    case badFrame = 1
    case unsupportedVersion = 2
    case unknownOpcode = 3
    /// The frame is larger than the advertised limit; the connection is closed after this.
    case frameTooLarge = 4
    /// The body does not match the operation's layout or a field is invalid; the message says which.
    case badRequest = 5
    /// Too many requests in flight on this connection; retry after some responses arrive.
    case busy = 6
    /// The access policy does not allow this caller this operation, server or request.
    case denied = 7
    case unknownServer = 8
    case unknownKey = 9
    case invalidJSON = 10
    case batchTooLarge = 11
    /// The daemon is stopping; reconnect (to it after restart, or elsewhere).
    case shuttingDown = 12
    case internalError = 13

    public var name: String {
        switch self {
        case .ok: return "OK"
        case .badFrame: return "BAD_FRAME"
        case .unsupportedVersion: return "UNSUPPORTED_VERSION"
        case .unknownOpcode: return "UNKNOWN_OPCODE"
        case .frameTooLarge: return "FRAME_TOO_LARGE"
        case .badRequest: return "BAD_REQUEST"
        case .busy: return "BUSY"
        case .denied: return "DENIED"
        case .unknownServer: return "UNKNOWN_SERVER"
        case .unknownKey: return "UNKNOWN_KEY"
        case .invalidJSON: return "INVALID_JSON"
        case .batchTooLarge: return "BATCH_TOO_LARGE"
        case .shuttingDown: return "SHUTTING_DOWN"
        case .internalError: return "INTERNAL_ERROR"
        }
    }

    public var description: String { name }
}

/// What VERIFY_REQUEST found (docs/PROTOCOL.md).
public enum RequestVerdict: UInt8, Sendable, CaseIterable {
    case valid = 0
    case missingAuthorization = 1
    case malformed = 2
    case originMismatch = 3
    case destinationMismatch = 4
    case unknownKey = 5
    case badSignature = 6
    case invalidContent = 7
    case invalidRequest = 8

    public init(_ verification: XMatrixVerification) {
        switch verification {
        case .valid: self = .valid
        case .missingAuthorization: self = .missingAuthorization
        case .malformed: self = .malformed
        case .originMismatch: self = .originMismatch
        case .destinationMismatch: self = .destinationMismatch
        case .unknownKey: self = .unknownKey
        case .badSignature: self = .badSignature
        case .invalidContent: self = .invalidContent
        case .invalidRequest: self = .invalidRequest
        }
    }
}

/// The state of a key in LIST_KEYS.
public enum KeyState: UInt8, Sendable {
    /// The first active key: signs requests and JSON.
    case signing = 0
    /// Published in verify_keys and signs key documents, but does not sign requests.
    case active = 1
    /// Published in old_verify_keys only.
    case retired = 2
}

/// Per-key outcome in VERIFY_JSON.
public enum SignatureOutcome: UInt8, Sendable {
    case valid = 0
    case invalid = 1
    case missing = 2
}
