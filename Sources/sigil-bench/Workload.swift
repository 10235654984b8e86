import CSodium
import SigilCore

/// The operations sigil-bench can send.
enum BenchOperation: String, CaseIterable {
    case signRequest = "sign-request"
    case signJSON = "sign-json"
    case verify = "verify"
    case verifyRequest = "verify-request"

    var opcode: Opcode {
        switch self {
        case .signRequest: return .signRequest
        case .signJSON: return .signJSON
        case .verify: return .verify
        case .verifyRequest: return .verifyRequest
        }
    }
}

/// A weighted mix of operations, e.g. `sign-request:8,verify:2`.
struct OperationMix: CustomStringConvertible {
    let entries: [(operation: BenchOperation, weight: Int)]

    init(parsing text: String) throws {
        var entries: [(BenchOperation, Int)] = []
        for part in text.split(separator: ",") {
            let pieces = part.split(separator: ":", maxSplits: 1)
            guard let op = BenchOperation(rawValue: String(pieces[0])) else {
                throw BenchError(
                    "unknown operation '\(pieces[0])'; known: \(BenchOperation.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let weight = pieces.count == 2 ? Int(pieces[1]) : 1
            guard let weight, weight > 0 else { throw BenchError("weight in '\(part)' must be a positive integer") }
            entries.append((op, weight))
        }
        guard !entries.isEmpty else { throw BenchError("--op needs at least one operation") }
        self.entries = entries
    }

    var description: String {
        entries.count == 1 ? entries[0].operation.rawValue : entries.map { "\($0.operation.rawValue):\($0.weight)" }.joined(separator: ",")
    }

    /// The operation for the n-th request: a fixed interleaving that honours the weights.
    func operation(at index: Int) -> BenchOperation {
        let total = entries.reduce(0) { $0 + $1.weight }
        var slot = index % total
        for entry in entries {
            if slot < entry.weight { return entry.operation }
            slot -= entry.weight
        }
        return entries[0].operation
    }
}

/// Pre-encoded request frames; only the request ID changes between sends, so the client
/// spends its time on the socket, not on encoding.
struct Workload {
    /// One frame per operation; the ID is patched in at offset 8.
    let templates: [BenchOperation: [UInt8]]
    /// SIGN_REQUEST frames for each origin of `--origins` (empty: `templates` only), used in turn.
    let originVariants: [[UInt8]]
    /// What the daemon signs or verifies for each operation: the in-process baseline uses the same bytes.
    let signedBytes: [BenchOperation: [UInt8]]
    let batch: Int

    /// A throwaway key for verify workloads: signatures made here, checked by the daemon.
    static func throwawayKey() -> SigningKey {
        var builder = try! KeyArena.Builder(capacity: 1, lockPolicy: .warn)
        let (slot, publicKey) = builder.addRandom()
        return SigningKey(id: KeyID(version: "bench")!, publicKey: publicKey, arena: builder.finish(), slot: slot)
    }

    /// The frame for the n-th request of `operation`.
    @inline(__always)
    func template(_ operation: BenchOperation, sequence: Int) -> [UInt8] {
        if operation == .signRequest && !originVariants.isEmpty { return originVariants[sequence % originVariants.count] }
        return templates[operation]!
    }

    init(mix: OperationMix, server: String, contentSize: Int, messageSize: Int, batch: Int, origins: [String] = []) {
        self.batch = batch
        let destination = "bench.example.org"
        let uri = "/_matrix/federation/v1/media/download/" + String(repeating: "m", count: 24)
        let content: [UInt8]? =
            contentSize > 0 ? Array("{\"data\":\"\(String(repeating: "x", count: max(0, contentSize - 11)))\"}".utf8) : nil
        let method = content == nil ? "GET" : "PUT"
        let message = [UInt8](repeating: 0x61, count: messageSize)
        let key = Workload.throwawayKey()
        var templates: [BenchOperation: [UInt8]] = [:]
        var signed: [BenchOperation: [UInt8]] = [:]
        for entry in mix.entries {
            let request: Request
            switch entry.operation {
            case .signRequest:
                request = .signRequest(
                    SignRequestParams(origin: server, destination: destination, method: method, uri: uri, content: content))
                var object = JSONObject()
                if let content { object["content"] = try! JSONValue(parsing: content) }
                object["destination"] = .string(destination)
                object["method"] = .string(method)
                object["origin"] = .string(server)
                object["uri"] = .string(uri)
                signed[.signRequest] = object.canonicalBytes
            case .signJSON:
                var object = JSONObject()
                object["content"] = ["body": .string(String(repeating: "x", count: max(0, messageSize - 24)))]
                object["type"] = "m.bench"
                signed[.signJSON] = object.canonicalBytes
                request = .signJSON(server: server, json: object.canonicalBytes)
            case .verify:
                let signature = key.sign(message)
                request = .verify(VerifyParams(key: .publicKey(key.publicKey), message: message, signature: signature.bytes))
                signed[.verify] = message
            case .verifyRequest:
                let signer = XMatrixSigner()
                let header = try! signer.sign(
                    origin: "remote.example", destination: server, method: method, uri: uri, content: content, key: key)
                request = .verifyRequest(
                    VerifyRequestParams(
                        authorizations: [header.header], method: method, uri: uri, destination: server, content: content,
                        keys: [GivenKey(server: "remote.example", id: key.id.description, publicKey: key.publicKey)]))
                var object = JSONObject()
                if let content { object["content"] = try! JSONValue(parsing: content) }
                object["destination"] = .string(server)
                object["method"] = .string(method)
                object["origin"] = "remote.example"
                object["uri"] = .string(uri)
                signed[.verifyRequest] = object.canonicalBytes
            }
            var writer = WireWriter()
            if batch > 1 {
                Request.encodeBatch(Array(repeating: request, count: batch), requestID: 0, into: &writer)
            } else {
                request.encodeFrame(requestID: 0, into: &writer)
            }
            templates[entry.operation] = writer.bytes
        }
        self.templates = templates
        self.signedBytes = signed
        originVariants = origins.map { origin in
            let request = Request.signRequest(
                SignRequestParams(origin: origin, destination: destination, method: method, uri: uri, content: content))
            var writer = WireWriter()
            if batch > 1 {
                Request.encodeBatch(Array(repeating: request, count: batch), requestID: 0, into: &writer)
            } else {
                request.encodeFrame(requestID: 0, into: &writer)
            }
            return writer.bytes
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
