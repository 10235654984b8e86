import Logging
import SigilCore
import SigilPosix

extension String {
    /// At most `limit` UTF-8 bytes, cut on a character boundary, with "…" when cut.
    func truncatedUTF8(_ limit: Int) -> String {
        guard utf8.count > limit else { return self }
        var result = ""
        for character in self {
            guard result.utf8.count + character.utf8.count <= limit - 3 else { break }
            result.append(character)
        }
        return result + "…"
    }
}

/// Answers requests whose frames `FrameCheck` has already accepted: it reads each operation's
/// own fields and appends the reply frame. No I/O. One per thread (it owns scratch buffers).
///
/// Counts are kept here and folded into the loop's shared counters once per turn
/// (`flushCounters`), so the per-frame path takes no lock.
struct Dispatcher {
    let context: ServingContext
    let counters: LoopCounters
    let logger: Logger
    let loop: Int
    private let signer = XMatrixSigner()
    private var header: [UInt8] = []
    private var pending: PendingCounts

    init(context: ServingContext, counters: LoopCounters, logger: Logger, loop: Int) {
        self.context = context
        self.counters = counters
        self.logger = logger
        self.loop = loop
        pending = PendingCounts(listenerCount: context.stats.listenerNames.count)
        header.reserveCapacity(256)
    }

    // MARK: Counting

    @inline(__always)
    mutating func countBytes(in count: Int = 0, out: Int = 0) {
        pending.bytesIn &+= UInt64(count)
        pending.bytesOut &+= UInt64(out)
        pending.dirty = true
    }

    @inline(__always)
    mutating func recordLatency(_ op: Opcode, nanoseconds: UInt64) {
        pending.recordLatency(op.ordinal, microseconds: nanoseconds / 1000)
    }

    /// Folds the pending counts into the loop's counters (one lock per turn, not per frame).
    mutating func flushCounters() {
        guard pending.dirty else { return }
        counters.update { pending.fold(into: &$0) }
        pending.reset()
    }

    // MARK: Replies to refused frames

    /// A refusal for a whole frame: the reply repeats the request's opcode and request ID, and
    /// its BATCH bit (every reply does).
    mutating func fail(_ status: WireStatus, _ message: String, frame: FrameHeader, listener: Int, out: inout WireWriter) {
        fail(
            status, message, opcode: frame.opcode, flags: frame.flags & Wire.flagBatch, requestID: frame.requestID, listener: listener,
            out: &out)
    }

    mutating func fail(
        _ status: WireStatus, _ message: String, opcode: UInt8, flags: UInt8, requestID: UInt32, listener: Int, out: inout WireWriter
    ) {
        Dispatcher.writeFailure(status, message, opcode: opcode, flags: flags, requestID: requestID, out: &out)
        pending.count(listener: listener, opcode: opcode, requests: 1, errors: 1)
        if status == .denied { pending.denied(listener) }
    }

    mutating func busy(_ message: String, frame: FrameHeader, listener: Int, rateLimited: Bool, out: inout WireWriter) {
        fail(.busy, message, frame: frame, listener: listener, out: &out)
        pending.busy(listener, rateLimited: rateLimited)
    }

    static func writeFailure(_ status: WireStatus, _ message: String, opcode: UInt8, flags: UInt8, requestID: UInt32, out: inout WireWriter)
    {
        let start = out.beginFrame(opcode: opcode, flags: Wire.flagResponse | flags, status: status.rawValue, requestID: requestID)
        WireFailure(status, message).encodeBody(into: &out)
        out.endFrame(at: start)
    }

    /// Logs a refusal (on the daemon's refusal budget) and counts it for STATS.
    func refuse(_ op: Opcode, _ why: String, caller: Caller) {
        context.refusals.refuse(
            listener: caller.listener.index, uid: caller.credentials.uid, kind: op.name, now: Posix.monotonicNanoseconds() / 1_000_000,
            "refused \(op) for \(caller.identity): \(why)")
    }

    // MARK: Requests

    /// Answers one request.
    mutating func single(
        _ op: Opcode, frame: FrameHeader, body: UnsafeRawBufferPointer, caller: inout Caller, state: ServingState,
        limits: ConnectionLimits, out: inout WireWriter
    ) {
        let start = out.beginFrame(opcode: op.rawValue, flags: Wire.flagResponse, status: 0, requestID: frame.requestID)
        do {
            try answer(op, body: body, caller: &caller, state: state, limits: limits, out: &out)
            out.endFrame(at: start)
            pending.count(listener: caller.listener.index, opcode: op.rawValue, requests: 1, errors: 0)
        } catch {
            out.bytes.removeSubrange(start...)
            Dispatcher.writeFailure(error.status, error.message, opcode: op.rawValue, flags: 0, requestID: frame.requestID, out: &out)
            pending.count(listener: caller.listener.index, opcode: op.rawValue, requests: 1, errors: 1)
            if error.status == .denied { pending.denied(caller.listener.index) }
        }
    }

    /// Answers a batch whose shape `FrameCheck` accepted: each item on its own.
    mutating func batch(
        _ op: Opcode, frame: FrameHeader, body: UnsafeRawBufferPointer, items: [Range<Int>], caller: inout Caller,
        state: ServingState, limits: ConnectionLimits, out: inout WireWriter
    ) {
        let start = out.beginFrame(opcode: op.rawValue, flags: Wire.flagResponse | Wire.flagBatch, status: 0, requestID: frame.requestID)
        out.u16(UInt16(items.count))
        var errors: UInt64 = 0
        let looksAhead = op == .signRequest && state.keyring.looksUpByTable
        for (position, range) in items.enumerated() {
            if looksAhead { Self.lookAhead(state.keyring, body: body, items: items, after: position) }
            let itemStart = out.bytes.count
            out.u8(0)
            let length = out.placeholderU32()
            do {
                try answer(
                    op, body: UnsafeRawBufferPointer(rebasing: body[range]), caller: &caller, state: state, limits: limits, out: &out)
                out.patchLength(at: length)
            } catch {
                out.bytes.removeSubrange(itemStart...)
                out.u8(error.status.rawValue)
                let errorLength = out.placeholderU32()
                error.encodeBody(into: &out)
                out.patchLength(at: errorLength)
                errors += 1
                if error.status == .denied { pending.denied(caller.listener.index) }
            }
        }
        out.endFrame(at: start)
        pending.count(listener: caller.listener.index, opcode: op.rawValue, requests: UInt64(items.count), errors: errors)
    }

    /// `ConnectionEngine.lookAhead` over a batch of SIGN_REQUESTs: while item `position` is
    /// answered, the next item's key and the slot of the one after start loading.
    private static func lookAhead(_ keyring: Keyring, body: UnsafeRawBufferPointer, items: [Range<Int>], after position: Int) {
        for ahead in 1...2 where position + ahead < items.count {
            guard let origin = SignRequestFields.origin(peeking: UnsafeRawBufferPointer(rebasing: body[items[position + ahead]])) else {
                continue
            }
            if ahead == 1 { keyring.prefetchKey(forName: origin) } else { keyring.prefetchSlot(forName: origin) }
        }
    }

    /// The keys of `name`, if the caller may use them for `op`. Access is checked before
    /// existence, so a caller learns nothing about servers it may not use.
    private func server(_ name: String, _ op: Opcode, caller: Caller, state: ServingState) throws(WireFailure) -> ServerKeys {
        guard caller.allows(op, server: name) else {
            refuse(op, "server \(name) is not granted", caller: caller)
            if op.isSigning {
                context.audit?.record(loop: loop, op: op, caller: caller, server: name, keyID: "", request: nil, outcome: .denied)
            }
            throw WireFailure(.denied, "\(op) for server \(name) is not allowed for \(caller.identity)")
        }
        guard let keys = state.keyring.server(name) else { throw WireFailure(.unknownServer, "no keys for server \(name)") }
        return keys
    }

    private mutating func answer(
        _ op: Opcode, body: UnsafeRawBufferPointer, caller: inout Caller, state: ServingState, limits: ConnectionLimits,
        out: inout WireWriter
    ) throws(WireFailure) {
        let json = JSONLimits(maxDepth: limits.maxJSONDepth, maxBytes: Int(limits.maxFrameLength))
        if op == .signRequest {
            try signRequest(body, caller: caller, state: state, json: json, out: &out)
            return
        }
        let request: Request
        do {
            request = try Request.decode(op, body: body)
        } catch {
            throw WireFailure(.badRequest, error.message)
        }
        let response: Response
        switch request {
        case .hello(let clientName, let page):
            response = .hello(hello(caller: caller, state: state, limits: limits, clientName: clientName, page: page))
        case .ping(let payload):
            response = .pong(payload: payload)
        case .listKeys(let cursor):
            response = .keys(try listKeys(caller: caller, state: state, limits: limits, cursor: cursor))
        case .signRequest:
            preconditionFailure("handled above")
        case .signJSON(let name, let object):
            let keys = try server(name, op, caller: caller, state: state)
            do {
                response = .signedJSON(try JSONSigning.sign(object, serverName: name, keys: [keys.signingKey], limits: json))
            } catch {
                throw WireFailure(.invalidJSON, error.description)
            }
            context.audit?.record(loop: loop, op: op, caller: caller, server: name, keyID: keys.signingKey.id.description, request: nil)
        case .signRaw(let name, let keyID, let message):
            let keys = try server(name, op, caller: caller, state: state)
            let key: SigningKey
            if let keyID {
                // Retired keys never sign: only a server's active keys.
                guard let id = KeyID(keyID), let found = keys.activeKey(id) else {
                    throw WireFailure(.unknownKey, "server \(name) has no active key \(keyID)")
                }
                key = found
            } else {
                key = keys.signingKey
            }
            response = .signature(keyID: key.id, key.sign(message))
            context.audit?.record(loop: loop, op: op, caller: caller, server: name, keyID: key.id.description, request: nil)
        case .verify(let params):
            let publicKey: PublicKey
            switch params.key {
            case .publicKey(let given):
                publicKey = given
            case .keyID(let name, let id):
                let keys = try server(name, op, caller: caller, state: state)
                guard let keyID = KeyID(id), let found = keys.publicKey(keyID) else {
                    throw WireFailure(.unknownKey, "server \(name) has no key \(id)")
                }
                publicKey = found
            }
            response = .verified(publicKey.verify(signature: params.signature, message: params.message))
        case .verifyJSON(let params):
            response = .verifiedJSON(try verifyJSON(params, caller: caller, state: state, limits: json))
        case .verifyRequest(let params):
            response = .verifiedRequest(try verifyRequest(params, state: state, json: json))
        case .keyDocument(let name, let validUntil):
            let keys = try server(name, op, caller: caller, state: state)
            // Never sign a document valid for longer than the configured validity: a long-lived
            // signed document could be replayed to keep a retired key looking current. A time in
            // the past is signed as asked: such a document is already expired and vouches for nothing.
            let now = Posix.wallClockMilliseconds()
            let latest = now + state.documentValidity(for: name)
            let until = validUntil == 0 ? latest : min(Int64(clamping: validUntil), latest)
            response = .keyDocument(KeyDocument.build(for: keys, validUntilTS: until))
        case .stats:
            flushCounters()  // so the figures include this turn's requests, this one too
            response = .stats(StatsReport.json(context: context, state: state, budget: Int(limits.maxFrameLength) - 64))
        }
        response.encodeBody(into: &out)
    }

    private func hello(caller: Caller, state: ServingState, limits: ConnectionLimits, clientName: String, page: HelloPage?) -> HelloInfo {
        // The fixed fields, the daemon version and (when paging) the page trailer.
        let fixed = 12 + 1 + 4 + 2 + 4 + 2 + Opcode.allCases.count + 2 + 2 + context.daemonVersion.utf8.count + 4 + 2 + 255
        let budget = Int(limits.maxFrameLength) - fixed
        var info = HelloInfo(
            maxFrameLength: limits.maxFrameLength, maxBatchItems: UInt16(clamping: limits.maxBatchItems),
            maxInFlight: UInt32(clamping: limits.maxInFlight), operations: caller.grantedOperations(), servers: [],
            daemonVersion: context.daemonVersion)
        let visible = state.visibility(listener: caller.listener.name, rules: caller.ruleIndices, purpose: .hello)
        let listing = state.serverList(
            after: page?.cursor ?? "", limit: page == nil ? Int.max : ServerPaging.pageSize, budget: budget, visible: visible)
        info.servers = listing.names
        if page != nil {
            info.page = HelloInfo.Page(
                serverTotal: UInt32(clamping: visible.count(of: state.keyring.servers.count)), nextCursor: listing.nextCursor)
        }
        return info
    }

    private func listKeys(caller: Caller, state: ServingState, limits: ConnectionLimits, cursor: String?) throws(WireFailure) -> KeyListing
    {
        let budget = Int(limits.maxFrameLength) - 12 - 2 - 2 - 255
        var listing = KeyListing(servers: [])
        var used = 0
        var last: String?
        var more = false
        let visible = state.visibility(listener: caller.listener.name, rules: caller.ruleIndices, purpose: .listKeys)
        let servers = state.keyring.servers
        for position in visible.positions(from: state.keyring.firstIndex(after: cursor ?? ""), total: servers.count) {
            let server = servers[position]
            let entry = KeyListing.Server(
                name: server.serverName,
                keys: server.activeKeys.enumerated().map { index, key in
                    KeyListing.Key(id: key.id.description, publicKey: key.publicKey, state: index == 0 ? .signing : .active, expiredTS: 0)
                }
                    + server.retiredKeys.map {
                        KeyListing.Key(id: $0.id.description, publicKey: $0.publicKey, state: .retired, expiredTS: UInt64($0.expiredTS))
                    })
            let size = entry.encodedSize
            if used + size > budget || listing.servers.count == ServerPaging.pageSize || listing.servers.count == Int(UInt16.max) {
                more = true
                break
            }
            used += size
            listing.servers.append(entry)
            last = server.serverName
        }
        guard cursor != nil else {
            if more {
                throw WireFailure(
                    .badRequest,
                    "the key listing does not fit in one reply of max_frame \(limits.maxFrameLength) bytes; send a cursor to page through it (PROTOCOL.md, LIST_KEYS)"
                )
            }
            return listing
        }
        listing.nextCursor = more ? (last ?? "") : ""
        if more && last == nil {
            throw WireFailure(.badRequest, "one server's keys do not fit in one reply of max_frame \(limits.maxFrameLength) bytes")
        }
        return listing
    }

    private func verifyJSON(_ params: VerifyJSONParams, caller: Caller, state: ServingState, limits: JSONLimits) throws(WireFailure)
        -> JSONVerdict
    {
        var keys: [KeyID: PublicKey] = [:]
        var retired: [KeyID: (publicKey: PublicKey, expiredTS: Int64)] = [:]
        if params.keys.isEmpty {
            let own = try server(params.server, .verifyJSON, caller: caller, state: state)
            for key in own.activeKeys { keys[key.id] = key.publicKey }
            for key in own.retiredKeys { retired[key.id] = (key.publicKey, key.expiredTS) }
        } else {
            for given in params.keys {
                guard let id = KeyID(given.id) else { throw WireFailure(.badRequest, "key_id '\(given.id)' is not ed25519:VERSION") }
                keys[id] = given.publicKey
            }
        }
        let verification: JSONSigning.Verification
        do {
            verification = try JSONSigning.verify(
                params.json, serverName: params.server, publicKeys: keys, retiredKeys: retired, limits: limits)
        } catch {
            throw WireFailure(.invalidJSON, error.description)
        }
        let outcomes =
            verification.valid.map { ($0.description, SignatureOutcome.valid) }
            + verification.invalid.map { ($0.description, SignatureOutcome.invalid) }
            + verification.missing.map { ($0.description, SignatureOutcome.missing) }
        return JSONVerdict(isValid: verification.isValid, outcomes: outcomes.map { (id: $0.0, outcome: $0.1) })
    }

    /// Inbound request authentication: with the given keys, or with the daemon's own active keys.
    /// Retired keys never authenticate a request: a revoked key must stop working at once.
    private func verifyRequest(_ params: VerifyRequestParams, state: ServingState, json: JSONLimits) throws(WireFailure)
        -> RequestVerification
    {
        var given: [String: [KeyID: PublicKey]] = [:]
        for key in params.keys {
            guard let id = KeyID(key.id) else { throw WireFailure(.badRequest, "key_id '\(key.id)' is not ed25519:VERSION") }
            given[key.server, default: [:]][id] = key.publicKey
        }
        let keyring = state.keyring
        let useKeyring = params.keys.isEmpty
        let result = XMatrixVerifier.verify(
            authorizations: params.authorizations, method: params.method, uri: params.uri, destination: params.destination,
            content: params.content, limits: json
        ) { origin, id in
            useKeyring ? keyring.server(origin)?.activeKey(id)?.publicKey : given[origin]?[id]
        }
        var origin = ""
        var keyID = ""
        switch result {
        case .valid(let o, let k):
            origin = o
            keyID = k.description
        case .unknownKey(let k), .badSignature(let k):
            keyID = k.description
        default: break
        }
        if origin.isEmpty, let first = params.authorizations.lazy.compactMap({ try? XMatrixAuthorization(parsing: $0) }).first {
            origin = first.origin
        }
        // The detail can quote the request (a header parameter, a JSON key): keep it short.
        return RequestVerification(
            verdict: RequestVerdict(result), origin: origin, keyID: keyID, detail: result.description.truncatedUTF8(512))
    }

    /// The hot path: fields read in place and checked once, no String copies beyond the origin's
    /// lookup key.
    private mutating func signRequest(
        _ body: UnsafeRawBufferPointer, caller: Caller, state: ServingState, json: JSONLimits, out: inout WireWriter
    ) throws(WireFailure) {
        let fields: SignRequestFields
        do {
            fields = try SignRequestFields(reading: body)
        } catch {
            throw WireFailure(.badRequest, error.message)
        }
        // Usually the origin is one of our servers: then the keyring's own String serves the
        // access check, and its grammar was checked when the keyring was loaded. The String is
        // read only when needed (a rule that names servers, a refusal, the audit).
        let keyring = state.keyring
        let known = keyring.serverIndex(forName: fields.origin)
        if let problem = fields.problem(originKnown: known != nil) { throw WireFailure(.badRequest, problem.description) }
        let origin = { known.map { keyring.servers[$0].serverName } ?? String(decoding: fields.origin, as: UTF8.self) }
        guard caller.allowsSignRequest(server: origin, method: fields.method, uri: fields.uri) else {
            let origin = origin()
            let why =
                caller.allows(.signRequest, server: origin)
                ? "method or uri outside the granted prefixes" : "server \(origin) is not granted"
            refuse(.signRequest, why, caller: caller)
            context.audit?.record(
                loop: loop, op: .signRequest, caller: caller, server: origin,
                keyID: known.map { keyring.signingKeys[$0].id.description } ?? "", request: fields, outcome: .denied)
            throw WireFailure(.denied, "sign_request for \(origin) (\(why)) is not allowed for \(caller.identity)")
        }
        guard let known else { throw WireFailure(.unknownServer, "no keys for server \(origin())") }
        var signature: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        header.removeAll(keepingCapacity: true)
        let key = keyring.signingKeys[known]
        do {
            try withUnsafeMutableBytes(of: &signature) { (sig) throws(XMatrixRequestError) in
                try signer.sign(
                    origin: fields.origin, destination: fields.destination, method: fields.method, uri: fields.uri,
                    content: fields.content, key: key, signature: sig.baseAddress!,
                    header: &header, prevalidated: true, limits: json)
            }
        } catch {
            if case .invalidContent = error { throw WireFailure(.invalidJSON, error.description) }
            throw WireFailure(.badRequest, error.description)
        }
        out.string(key.id.description)
        withUnsafeBytes(of: &signature) { out.bytes.append(contentsOf: $0) }
        header.withUnsafeBytes { out.string($0) }
        if let audit = context.audit {
            audit.record(loop: loop, op: .signRequest, caller: caller, server: origin(), keyID: key.id.description, request: fields)
        }
    }
}

/// Counts a dispatcher keeps between folds into its loop's counters.
struct PendingCounts {
    private var requests: [UInt64]
    private var errors: [UInt64]
    /// Indexes (listener × 256 + opcode) with counts.
    private var touched: [Int] = []
    private var denied: [UInt64]
    private var busy: [UInt64]
    private var rateLimited: [UInt64]
    private var latency: [UInt64]
    private var latencySum: [UInt64]
    private var latencyCount: [UInt64]
    var bytesIn: UInt64 = 0
    var bytesOut: UInt64 = 0
    var dirty = false

    init(listenerCount: Int) {
        let count = max(listenerCount, 1)
        requests = Array(repeating: 0, count: count * 256)
        errors = Array(repeating: 0, count: count * 256)
        denied = Array(repeating: 0, count: count)
        busy = Array(repeating: 0, count: count)
        rateLimited = Array(repeating: 0, count: count)
        latency = Array(repeating: 0, count: Opcode.allCases.count * LatencyBuckets.count)
        latencySum = Array(repeating: 0, count: Opcode.allCases.count)
        latencyCount = Array(repeating: 0, count: Opcode.allCases.count)
        touched.reserveCapacity(16)
    }

    @inline(__always)
    mutating func count(listener: Int, opcode: UInt8, requests added: UInt64, errors failed: UInt64) {
        let index = listener * 256 + Int(opcode)
        if requests[index] == 0 && errors[index] == 0 { touched.append(index) }
        requests[index] &+= added
        errors[index] &+= failed
        dirty = true
    }

    mutating func denied(_ listener: Int) {
        denied[listener] &+= 1
        dirty = true
    }

    mutating func busy(_ listener: Int, rateLimited limited: Bool) {
        if limited { rateLimited[listener] &+= 1 } else { busy[listener] &+= 1 }
        dirty = true
    }

    @inline(__always)
    mutating func recordLatency(_ ordinal: Int, microseconds: UInt64) {
        latency[ordinal * LatencyBuckets.count + LatencyBuckets.index(microseconds: microseconds)] &+= 1
        latencySum[ordinal] &+= microseconds
        latencyCount[ordinal] &+= 1
        dirty = true
    }

    func fold(into values: inout LoopCounters.Values) {
        for index in touched {
            let listener = index / 256
            guard listener < values.listeners.count else { continue }
            values.listeners[listener].requests[index % 256] &+= requests[index]
            values.listeners[listener].errors[index % 256] &+= errors[index]
        }
        for listener in values.listeners.indices where listener < denied.count {
            values.listeners[listener].denied &+= denied[listener]
            values.listeners[listener].busy &+= busy[listener]
            values.listeners[listener].rateLimited &+= rateLimited[listener]
        }
        for op in 0..<latencyCount.count where latencyCount[op] > 0 {
            for bucket in 0..<LatencyBuckets.count { values.latency[op][bucket] &+= latency[op * LatencyBuckets.count + bucket] }
            values.latencySum[op] &+= latencySum[op]
            values.latencyCount[op] &+= latencyCount[op]
        }
        values.bytesIn &+= bytesIn
        values.bytesOut &+= bytesOut
    }

    mutating func reset() {
        for index in touched {
            requests[index] = 0
            errors[index] = 0
        }
        touched.removeAll(keepingCapacity: true)
        for listener in denied.indices {
            denied[listener] = 0
            busy[listener] = 0
            rateLimited[listener] = 0
        }
        for op in 0..<latencyCount.count where latencyCount[op] > 0 {
            for bucket in 0..<LatencyBuckets.count { latency[op * LatencyBuckets.count + bucket] = 0 }
            latencySum[op] = 0
            latencyCount[op] = 0
        }
        bytesIn = 0
        bytesOut = 0
        dirty = false
    }
}
