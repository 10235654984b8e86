public import SigilCore
import SigilPosix

/// A typed client for sigild. Connects on first use and reconnects if the daemon closed an
/// idle connection or restarted; requests that were in flight when a connection dropped fail
/// with `.connectionClosed` (they may or may not have run, so retrying is the caller's call).
/// Safe to share between threads and tasks: they pipeline over one connection.
public final class SigilClient: Sendable {
    public let socketPath: String
    public let timeout: Double?
    private let connection = Locked<SigilConnection?>(nil)

    public init(socketPath: String, timeout: Double? = 30) {
        self.socketPath = socketPath
        self.timeout = timeout
    }

    /// The live connection, made or remade as needed.
    public func connected() throws(SigilClientError) -> SigilConnection {
        if let live = connection.withLock({ $0 }), !live.isClosed { return live }
        let fresh = try SigilConnection(path: socketPath)
        let (chosen, discarded) = connection.withLock { current -> (SigilConnection, SigilConnection?) in
            if let live = current, !live.isClosed { return (live, fresh) }
            defer { current = fresh }
            return (fresh, current)
        }
        // Closed outside the lock: closing joins the connection's reader thread, which may be in a
        // completion handler that is itself waiting for this lock.
        discarded?.close()
        return chosen
    }

    public func close() {
        connection.withLock { $0 }?.close()
    }

    /// Any request; the answer's type follows the request's.
    public func send(_ request: Request) throws(SigilClientError) -> Response {
        try connected().send(request, timeout: timeout)
    }

    public func send(_ request: Request) async throws(SigilClientError) -> Response {
        try await connected().send(request)
    }

    // MARK: Typed operations

    public func hello(clientName: String = "sigil-swift") throws(SigilClientError) -> HelloInfo {
        guard case .hello(let info) = try send(.hello(clientName: clientName)) else { throw mismatch("hello") }
        return info
    }

    public func ping(_ payload: [UInt8] = []) throws(SigilClientError) -> [UInt8] {
        guard case .pong(let echoed) = try send(.ping(payload: payload)) else { throw mismatch("ping") }
        return echoed
    }

    /// One page of HELLO's server list (HELLO's paging extension), after `cursor` ("" first).
    public func hello(clientName: String = "sigil-swift", cursor: String) throws(SigilClientError) -> HelloInfo {
        guard case .hello(let info) = try send(.hello(clientName: clientName, page: HelloPage(cursor: cursor))) else { throw mismatch("hello") }
        return info
    }

    /// Every server this caller may list keys for, with their keys: LIST_KEYS page by page.
    public func listKeys() throws(SigilClientError) -> KeyListing {
        var all = KeyListing(servers: [])
        var cursor = ""
        repeat {
            let page = try listKeys(cursor: cursor)
            all.servers += page.servers
            guard let next = page.nextCursor, !next.isEmpty else { break }
            guard next != cursor else { throw SigilClientError.protocolViolation("list_keys: the daemon returned the same cursor twice") }
            cursor = next
        } while true
        return all
    }

    /// One page of LIST_KEYS, after `cursor` ("" for the first).
    public func listKeys(cursor: String) throws(SigilClientError) -> KeyListing {
        guard case .keys(let listing) = try send(.listKeys(cursor: cursor)) else { throw mismatch("list_keys") }
        return listing
    }

    /// Signs an outbound federation request with `origin`'s key: the X-Matrix header, exactly as MMR writes it.
    public func signRequest(
        origin: String, destination: String, method: String = "GET", uri: String, content: [UInt8]? = nil
    ) throws(SigilClientError) -> SignedRequest {
        let request = Request.signRequest(SignRequestParams(origin: origin, destination: destination, method: method, uri: uri, content: content))
        guard case .signedRequest(let signed) = try send(request) else { throw mismatch("sign_request") }
        return signed
    }

    public func signRequest(
        origin: String, destination: String, method: String = "GET", uri: String, content: [UInt8]? = nil
    ) async throws(SigilClientError) -> SignedRequest {
        let request = Request.signRequest(SignRequestParams(origin: origin, destination: destination, method: method, uri: uri, content: content))
        guard case .signedRequest(let signed) = try await send(request) else { throw mismatch("sign_request") }
        return signed
    }

    /// Signs many requests in one frame; each has its own result.
    public func signRequests(_ requests: [SignRequestParams]) throws(SigilClientError) -> [Result<SignedRequest, WireFailure>] {
        let answers = try connected().sendBatch(requests.map(Request.signRequest), timeout: timeout)
        return try answers.map { (answer) throws(SigilClientError) -> Result<SignedRequest, WireFailure> in
            switch answer {
            case .success(.signedRequest(let signed)): return .success(signed)
            case .success: throw mismatch("sign_request")
            case .failure(let failure): return .failure(failure)
            }
        }
    }

    /// Signs a JSON object as `server`; returns it signed, in canonical form.
    public func signJSON(server: String, json: [UInt8]) throws(SigilClientError) -> [UInt8] {
        guard case .signedJSON(let signed) = try send(.signJSON(server: server, json: json)) else { throw mismatch("sign_json") }
        return signed
    }

    public func signRaw(server: String, keyID: String? = nil, message: [UInt8]) throws(SigilClientError) -> (keyID: KeyID, signature: Signature) {
        guard case .signature(let id, let signature) = try send(.signRaw(server: server, keyID: keyID, message: message)) else {
            throw mismatch("sign_raw")
        }
        return (id, signature)
    }

    public func verify(_ params: VerifyParams) throws(SigilClientError) -> Bool {
        guard case .verified(let valid) = try send(.verify(params)) else { throw mismatch("verify") }
        return valid
    }

    public func verifyJSON(_ params: VerifyJSONParams) throws(SigilClientError) -> JSONVerdict {
        guard case .verifiedJSON(let verdict) = try send(.verifyJSON(params)) else { throw mismatch("verify_json") }
        return verdict
    }

    public func verifyRequest(_ params: VerifyRequestParams) throws(SigilClientError) -> RequestVerification {
        guard case .verifiedRequest(let result) = try send(.verifyRequest(params)) else { throw mismatch("verify_request") }
        return result
    }

    /// The signed `/_matrix/key/v2/server` body; `validUntilTS` 0 uses the configured validity.
    public func keyDocument(server: String, validUntilTS: UInt64 = 0) throws(SigilClientError) -> [UInt8] {
        guard case .keyDocument(let json) = try send(.keyDocument(server: server, validUntilTS: validUntilTS)) else {
            throw mismatch("key_document")
        }
        return json
    }

    /// The daemon's counters, as a JSON object.
    public func stats() throws(SigilClientError) -> [UInt8] {
        guard case .stats(let json) = try send(.stats) else { throw mismatch("stats") }
        return json
    }

    private func mismatch(_ op: String) -> SigilClientError {
        .protocolViolation("the answer to \(op) is of another operation")
    }
}
