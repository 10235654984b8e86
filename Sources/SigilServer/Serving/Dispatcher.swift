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

/// Turns one request frame into one response frame. No I/O: the loop hands it bytes and gets
/// bytes back, so it is tested directly as well as through the daemon. One per thread (it owns
/// scratch buffers).
struct Dispatcher {
    let logger: Logger
    let stats: StatsRegistry
    let counters: LoopCounters
    let daemonVersion: String
    private let signer = XMatrixSigner()
    private var header: [UInt8] = []
    /// Request and error counts not yet folded into the loop's shared counters: the per-frame
    /// path takes no lock; `flushCounters()` runs once per turn.
    private var pendingRequests = [UInt64](repeating: 0, count: 256)
    private var pendingErrors = [UInt64](repeating: 0, count: 256)
    private var touched: [Int] = []

    init(logger: Logger, stats: StatsRegistry, counters: LoopCounters, daemonVersion: String) {
        self.logger = logger
        self.stats = stats
        self.counters = counters
        self.daemonVersion = daemonVersion
        header.reserveCapacity(256)
        touched.reserveCapacity(16)
    }

    @inline(__always)
    private mutating func count(_ opcode: UInt8, requests: UInt64 = 0, errors: UInt64 = 0) {
        let index = Int(opcode)
        if pendingRequests[index] == 0 && pendingErrors[index] == 0 { touched.append(index) }
        pendingRequests[index] += requests
        pendingErrors[index] += errors
    }

    /// Folds the pending counts into the loop's counters (one lock per turn, not per frame).
    mutating func flushCounters() {
        guard !touched.isEmpty else { return }
        counters.update { values in
            for index in touched {
                values.requests[index] += pendingRequests[index]
                values.errors[index] += pendingErrors[index]
            }
        }
        for index in touched {
            pendingRequests[index] = 0
            pendingErrors[index] = 0
        }
        touched.removeAll(keepingCapacity: true)
    }

    /// Appends the response to `frame` to `out`. Returns the number of requests it held
    /// (batch items count one each).
    @discardableResult
    mutating func handle(
        _ frame: FrameHeader, body: UnsafeRawBufferPointer, caller: inout Caller, state: ServingState, out: inout WireWriter
    ) -> Int {
        caller.refresh(state)
        let opcodeForReply = frame.opcode
        func fail(_ status: WireStatus, _ message: String, _ dispatcher: inout Dispatcher) -> Int {
            Dispatcher.writeFailure(status, message, opcode: opcodeForReply, flags: 0, requestID: frame.requestID, out: &out)
            dispatcher.count(opcodeForReply, errors: 1)
            return 1
        }
        guard frame.version == Wire.version else {
            return fail(.unsupportedVersion, "protocol version \(frame.version) is not supported; this daemon speaks version \(Wire.version)", &self)
        }
        guard frame.flags & ~Wire.flagBatch == 0 else {
            return fail(.badFrame, "unknown or response flags 0x\(String(frame.flags, radix: 16)) in a request", &self)
        }
        guard frame.status == 0 else { return fail(.badFrame, "requests carry status 0", &self) }
        guard let op = Opcode(rawValue: frame.opcode) else {
            return fail(.unknownOpcode, "unknown opcode 0x\(String(frame.opcode, radix: 16))", &self)
        }
        guard caller.allows(op) else {
            refuse(op, "operation \(op) is not granted", caller: &caller)
            count(op.rawValue, requests: 1)
            return fail(.denied, "\(op) is not allowed for \(caller.identity)", &self)
        }
        let flags = Wire.flagResponse | (frame.flags & Wire.flagBatch)
        let start = out.beginFrame(opcode: op.rawValue, flags: flags, status: 0, requestID: frame.requestID)
        if !frame.isBatch {
            count(op.rawValue, requests: 1)
            do {
                try handleOne(op, body: body, caller: &caller, state: state, out: &out)
                out.endFrame(at: start)
            } catch {
                out.bytes.removeSubrange(start...)
                Dispatcher.writeFailure(error.status, error.message, opcode: op.rawValue, flags: 0, requestID: frame.requestID, out: &out)
                count(op.rawValue, errors: 1)
            }
            return 1
        }
        guard op.acceptsBatch else {
            out.bytes.removeSubrange(start...)
            return fail(.badRequest, "\(op) does not take batch frames", &self)
        }
        let limit = state.configuration.limits.maxBatchItems
        let items: [UnsafeRawBufferPointer]
        do {
            var reader = WireReader(body)
            let count = Int(try reader.u16("item_count"))
            guard count <= limit else {
                out.bytes.removeSubrange(start...)
                return fail(.batchTooLarge, "batch of \(count) items exceeds the limit of \(limit)", &self)
            }
            items = try decodeBatchItems(body, maxItems: limit)
        } catch {
            out.bytes.removeSubrange(start...)
            return fail(.badRequest, "malformed batch: \(error)", &self)
        }
        out.u16(UInt16(items.count))
        var errors: UInt64 = 0
        for item in items {
            let itemStart = out.bytes.count
            out.u8(0)
            let length = out.placeholderU32()
            do {
                try handleOne(op, body: item, caller: &caller, state: state, out: &out)
            } catch {
                out.bytes.removeSubrange(itemStart...)
                out.u8(error.status.rawValue)
                let errorLength = out.placeholderU32()
                error.encodeBody(into: &out)
                out.patchLength(at: errorLength)
                errors += 1
                continue
            }
            out.patchLength(at: length)
        }
        out.endFrame(at: start)
        count(op.rawValue, requests: UInt64(items.count), errors: errors)
        return items.count
    }

    static func writeFailure(_ status: WireStatus, _ message: String, opcode: UInt8, flags: UInt8, requestID: UInt32, out: inout WireWriter) {
        let start = out.beginFrame(opcode: opcode, flags: Wire.flagResponse | flags, status: status.rawValue, requestID: requestID)
        WireFailure(status, message).encodeBody(into: &out)
        out.endFrame(at: start)
    }

    private func refuse(_ op: Opcode, _ why: String, caller: inout Caller) {
        counters.update { $0.denied += 1 }
        if caller.refusals.logged < Caller.refusalsLoggedIndividually {
            caller.refusals.logged += 1
            logger.warning("refused \(op) for \(caller.identity): \(why)")
            if caller.refusals.logged == Caller.refusalsLoggedIndividually {
                logger.warning("further refusals for \(caller.identity) on this connection are summarised every 10 s")
            }
        } else {
            caller.refusals.count(op.name)
        }
    }

    private func server(_ name: String, _ op: Opcode, caller: inout Caller, state: ServingState) throws(WireFailure) -> ServerKeys {
        guard caller.allows(op, server: name) else {
            refuse(op, "server \(name) is not granted", caller: &caller)
            throw WireFailure(.denied, "\(op) for server \(name) is not allowed for \(caller.identity)")
        }
        guard let keys = state.keyring.server(name) else { throw WireFailure(.unknownServer, "no keys for server \(name)") }
        return keys
    }

    private mutating func handleOne(
        _ op: Opcode, body: UnsafeRawBufferPointer, caller: inout Caller, state: ServingState, out: inout WireWriter
    ) throws(WireFailure) {
        if op == .signRequest {
            try signRequest(body, caller: &caller, state: state, out: &out)
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
        case .hello:
            response = .hello(
                HelloInfo(
                    maxFrameLength: state.configuration.limits.maxFrameLength,
                    maxBatchItems: UInt16(clamping: state.configuration.limits.maxBatchItems),
                    maxInFlight: UInt32(clamping: state.configuration.limits.maxInFlight),
                    operations: caller.grantedOperations(), servers: caller.grantedServers(state.keyring),
                    daemonVersion: daemonVersion))
        case .ping(let payload):
            guard payload.count <= 65536 else { throw WireFailure(.badRequest, "ping payload over 64 KiB") }
            response = .pong(payload: payload)
        case .listKeys:
            let servers = state.keyring.servers.filter { caller.allows(.listKeys, server: $0.serverName) }.map { server in
                KeyListing.Server(
                    name: server.serverName,
                    keys: server.activeKeys.enumerated().map { index, key in
                        KeyListing.Key(id: key.id.description, publicKey: key.publicKey, state: index == 0 ? .signing : .active, expiredTS: 0)
                    }
                        + server.retiredKeys.map {
                            KeyListing.Key(id: $0.id.description, publicKey: $0.publicKey, state: .retired, expiredTS: UInt64($0.expiredTS))
                        })
            }
            response = .keys(KeyListing(servers: servers))
        case .signRequest:
            preconditionFailure("handled above")
        case .signJSON(let name, let json):
            let keys = try server(name, op, caller: &caller, state: state)
            do {
                response = .signedJSON(try JSONSigning.sign(json, serverName: name, keys: [keys.signingKey]))
            } catch {
                throw WireFailure(.invalidJSON, error.description)
            }
        case .signRaw(let name, let keyID, let message):
            let keys = try server(name, op, caller: &caller, state: state)
            let key: SigningKey
            if let keyID {
                guard let id = KeyID(keyID), let found = keys.activeKey(id) else {
                    throw WireFailure(.unknownKey, "server \(name) has no active key \(keyID)")
                }
                key = found
            } else {
                key = keys.signingKey
            }
            response = .signature(keyID: key.id, key.sign(message))
        case .verify(let params):
            let publicKey: PublicKey
            switch params.key {
            case .publicKey(let given):
                publicKey = given
            case .keyID(let name, let id):
                let keys = try server(name, op, caller: &caller, state: state)
                guard let keyID = KeyID(id), let found = keys.publicKey(keyID) else {
                    throw WireFailure(.unknownKey, "server \(name) has no key \(id)")
                }
                publicKey = found
            }
            response = .verified(publicKey.verify(signature: params.signature, message: params.message))
        case .verifyJSON(let params):
            var keys: [KeyID: PublicKey] = [:]
            if params.keys.isEmpty {
                let own = try server(params.server, op, caller: &caller, state: state)
                for key in own.activeKeys { keys[key.id] = key.publicKey }
                for key in own.retiredKeys { keys[key.id] = key.publicKey }
            } else {
                for given in params.keys {
                    guard let id = KeyID(given.id) else { throw WireFailure(.badRequest, "key_id '\(given.id)' is not ed25519:VERSION") }
                    keys[id] = given.publicKey
                }
            }
            let verification: JSONSigning.Verification
            do {
                verification = try JSONSigning.verify(params.json, serverName: params.server, publicKeys: keys)
            } catch {
                throw WireFailure(.invalidJSON, error.description)
            }
            let outcomes = verification.valid.map { ($0.description, SignatureOutcome.valid) }
                + verification.invalid.map { ($0.description, SignatureOutcome.invalid) }
                + verification.missing.map { ($0.description, SignatureOutcome.missing) }
            response = .verifiedJSON(JSONVerdict(isValid: verification.isValid, outcomes: outcomes.map { (id: $0.0, outcome: $0.1) }))
        case .verifyRequest(let params):
            var given: [String: [KeyID: PublicKey]] = [:]
            for key in params.keys {
                guard let id = KeyID(key.id) else { throw WireFailure(.badRequest, "key_id '\(key.id)' is not ed25519:VERSION") }
                given[key.server, default: [:]][id] = key.publicKey
            }
            let keyring = state.keyring
            let useKeyring = params.keys.isEmpty
            let result = XMatrixVerifier.verify(
                authorizations: params.authorizations, method: params.method, uri: params.uri, destination: params.destination,
                content: params.content
            ) { origin, id in
                useKeyring ? keyring.server(origin)?.publicKey(id) : given[origin]?[id]
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
            response = .verifiedRequest(
                RequestVerification(verdict: RequestVerdict(result), origin: origin, keyID: keyID, detail: result.description.truncatedUTF8(1024)))
        case .keyDocument(let name, let validUntil):
            let keys = try server(name, op, caller: &caller, state: state)
            // Never sign a document for longer than the configured validity (at most 7 days): a
            // long-lived signed document could be replayed to keep a retired key looking current.
            let now = Posix.wallClockMilliseconds()
            let latest = now + (state.documentValidity[name] ?? 86_400_000)
            let until = validUntil == 0 ? latest : min(Int64(clamping: validUntil), latest)
            response = .keyDocument(KeyDocument.build(for: keys, validUntilTS: until))
        case .stats:
            flushCounters()  // so the figures include this turn's requests, this one too
            response = .stats(stats.json(state: state, now: Posix.monotonicNanoseconds(), rssBytes: ProcessFigures.residentBytes()))
        }
        response.encodeBody(into: &out)
    }

    /// The hot path: fields read in place, no String copies beyond the origin's lookup key.
    private mutating func signRequest(
        _ body: UnsafeRawBufferPointer, caller: inout Caller, state: ServingState, out: inout WireWriter
    ) throws(WireFailure) {
        let fields: SignRequestFields
        do {
            fields = try SignRequestFields(reading: body)
        } catch {
            throw WireFailure(.badRequest, error.message)
        }
        // Usually the origin is one of our servers: then the keyring's own String serves the
        // access check, and the name needs no new check.
        let keyring = state.keyring
        let known = keyring.serverIndex(forName: fields.origin)
        let origin = known.map { keyring.servers[$0].serverName } ?? String(decoding: fields.origin, as: UTF8.self)
        guard caller.allowsSignRequest(server: origin, method: fields.method, uri: fields.uri) else {
            let why = caller.allows(.signRequest, server: origin)
                ? "method or uri outside the granted prefixes" : "server \(origin) is not granted"
            refuse(.signRequest, why, caller: &caller)
            throw WireFailure(.denied, "sign_request for \(origin) (\(why)) is not allowed for \(caller.identity)")
        }
        guard let known else { throw WireFailure(.unknownServer, "no keys for server \(origin)") }
        var signature: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        header.removeAll(keepingCapacity: true)
        do {
            try withUnsafeMutableBytes(of: &signature) { (sig) throws(XMatrixRequestError) in
                try signer.sign(
                    origin: fields.origin, destination: fields.destination, method: fields.method, uri: fields.uri,
                    content: fields.content, key: keyring.servers[known].activeKeys[0], signature: sig.baseAddress!,
                    header: &header, originIsKnown: true)
            }
        } catch {
            if case .invalidContent = error { throw WireFailure(.invalidJSON, error.description) }
            throw WireFailure(.badRequest, error.description)
        }
        out.string(keyring.servers[known].activeKeys[0].id.description)
        withUnsafeBytes(of: &signature) { out.bytes.append(contentsOf: $0) }
        header.withUnsafeBytes { out.string($0) }
    }
}
