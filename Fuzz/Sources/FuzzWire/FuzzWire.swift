import FuzzSupport
import SigilCore

@_cdecl("FuzzWire_main")
public func fuzzWireMain(argc: Int32, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzMain(WireTarget.self, argc: argc, argv: argv)
}

/// The binary protocol (docs/PROTOCOL.md). The first byte picks what the rest is:
///
/// - 0: a byte stream for `FrameDecoder`, fed whole, one byte at a time and in chunks whose
///   sizes come from the second byte: the same frames and the same error every way;
/// - 1: a request body for the opcode in the second byte: decodes or is refused, and what
///   decodes encodes back to the same bytes;
/// - 2: a response body for that opcode: what decodes survives encode and decode;
/// - 3: a response frame header (status, flags, opcode) and body for `decodeResponseFrame`;
/// - 4: a batch body for `decodeBatchItems`.
enum WireTarget: FuzzTarget {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard input.count >= 2 else { return }
        let rest = UnsafeRawBufferPointer(rebasing: input[2...])
        switch input[0] % 5 {
        case 0: FrameStreams.check(rest, chunking: input[1])
        case 1: checkRequest(opcode: input[1], body: rest)
        case 2: checkResponse(opcode: input[1], body: rest)
        case 3: checkResponseFrame(flags: input[1], rest)
        default: checkBatch(maxItems: Int(input[1]), body: rest)
        }
    }

    static func checkRequest(opcode raw: UInt8, body: UnsafeRawBufferPointer) {
        guard let opcode = Opcode(rawValue: raw) else { return }
        let request: Request
        do {
            request = try Request.decode(opcode, body: body)
        } catch {
            fuzzCheck(!error.message.isEmpty, "an empty error message")
            // The daemon's own path reads the layout only; what decode refuses beyond that
            // (invalid UTF-8) must then fail the fields' grammar.
            if opcode == .signRequest, let fields = try? SignRequestFields(reading: body) {
                fuzzCheck(fields.problem != nil, "the daemon's path would take a SIGN_REQUEST that decode refuses: \(error)")
            }
            return
        }
        fuzzCheck(request.opcode == opcode, "decoded \(request.opcode) from \(opcode)")
        var writer = WireWriter()
        request.encodeBody(into: &writer)
        fuzzCheck(writer.bytes.elementsEqual(body), "\(opcode) re-encodes to \(printable(writer.bytes)), not \(printable(body))")
        if case .signRequest(let params) = request {
            let fields = try? SignRequestFields(reading: body)
            fuzzCheck(fields != nil, "SignRequestFields refused what decode read")
            // Both paths judge the fields alike.
            fuzzCheck(
                fields?.problem == expectedProblem(params),
                "the daemon's grammar check says \(String(describing: fields?.problem)), the spec's grammar \(String(describing: expectedProblem(params)))"
            )
            if let fields {
                fuzzCheck(
                    fields.origin.elementsEqual(params.origin.utf8) && fields.uri.elementsEqual(params.uri.utf8), "the field views differ")
                fuzzCheck(fields.content.map { Array($0) } == params.content, "content differs")
            }
        }
        // As a whole frame too, through the decoder.
        var frame = WireWriter()
        request.encodeFrame(requestID: 0x0102_0304, into: &frame)
        var decoder = FrameDecoder(maxLength: UInt32.max)
        decoder.append(frame.bytes)
        guard case .frame(let header, let range)? = try? decoder.next() else {
            fuzzCheck(false, "an encoded frame does not decode")
            return
        }
        fuzzCheck(
            header.opcode == opcode.rawValue && header.requestID == 0x0102_0304 && !header.isBatch && !header.isResponse,
            "frame header \(header)")
        fuzzCheck(decoder.buffer[range].elementsEqual(body), "frame body differs")
    }

    /// SIGN_REQUEST's field grammar, from the spec (FuzzSupport's Grammar), in request order.
    static func expectedProblem(_ p: SignRequestParams) -> XMatrixRequestError? {
        if !Grammar.isServerName(p.origin.utf8) { return .invalidOrigin }
        if !Grammar.isServerName(p.destination.utf8) { return .invalidDestination }
        if !Grammar.isMethod(p.method.utf8) { return .invalidMethod }
        if !Grammar.isURI(p.uri.utf8) { return .invalidURI }
        return nil
    }

    static func checkResponse(opcode raw: UInt8, body: UnsafeRawBufferPointer) {
        guard let opcode = Opcode(rawValue: raw) else { return }
        guard let response = try? Response.decode(opcode, body: body) else { return }
        var writer = WireWriter()
        response.encodeBody(into: &writer)
        let again = writer.bytes.withUnsafeBytes { try? Response.decode(opcode, body: $0) }
        fuzzCheck(again == response, "\(opcode) response does not survive encode and decode")
        var second = WireWriter()
        again?.encodeBody(into: &second)
        fuzzCheck(second.bytes == writer.bytes, "re-encoding is not stable")
    }

    static func checkResponseFrame(flags: UInt8, _ rest: UnsafeRawBufferPointer) {
        guard rest.count >= 2 else { return }
        let header = FrameHeader(length: UInt32(8 + rest.count - 2), opcode: rest[0], flags: flags, status: rest[1], requestID: 7)
        let body = UnsafeRawBufferPointer(rebasing: rest[2...])
        guard let results = try? decodeResponseFrame(header, body: body) else { return }
        fuzzCheck(!results.isEmpty || header.isBatch, "no result for a single response")
        if WireStatus(rawValue: header.status) != .ok { fuzzCheck(results.count == 1, "an error frame gave \(results.count) results") }
    }

    static func checkBatch(maxItems: Int, body: UnsafeRawBufferPointer) {
        guard let items = try? decodeBatchItems(body, maxItems: maxItems) else { return }
        fuzzCheck(!items.isEmpty && items.count <= maxItems, "\(items.count) items for a limit of \(maxItems)")
        var writer = WireWriter()
        writer.u16(UInt16(items.count))
        for item in items { writer.bytesField(item) }
        fuzzCheck(writer.bytes.elementsEqual(body), "batch items do not re-encode to the body")
        for item in items {
            let inside =
                body.baseAddress! <= item.baseAddress ?? body.baseAddress!
                && (item.baseAddress ?? body.baseAddress!) + item.count <= body.baseAddress! + body.count
            fuzzCheck(inside, "an item outside the body")
        }
    }

    static var seeds: [[UInt8]] {
        let key = PublicKey(base64: "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI")!
        let signature = Signature(base64: "UxgQZoKQVT7ekj4hjL7QlLRJwA7YaGP7mDBBXDITiGiVDxcGOep/LlSrlzfWGQ6GvgeMdydmBp2v9r+rHdKhDA")!
        let requests: [Request] = [
            .hello(clientName: "mmr-worker"), .hello(clientName: "pager", page: HelloPage(cursor: "example.org")),
            .ping(payload: [1, 2, 3]),
            .listKeys(), .listKeys(cursor: ""), .listKeys(cursor: "example.org"), .stats,
            .signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/media/download/abc")),
            .signRequest(
                SignRequestParams(origin: "domain", destination: "example.org", method: "PUT", uri: "/x", content: Array(#"{"a":1}"#.utf8))),
            .signJSON(server: "domain", json: Array(#"{"a":1}"#.utf8)),
            .signRaw(server: "domain", keyID: "ed25519:1", message: [0, 1]), .signRaw(server: "domain", keyID: nil, message: []),
            .verify(VerifyParams(key: .publicKey(key), message: [1], signature: signature.bytes)),
            .verify(VerifyParams(key: .keyID(server: "domain", id: "ed25519:1"), message: [1], signature: signature.bytes)),
            .verifyJSON(VerifyJSONParams(server: "domain", keys: [("ed25519:1", key)], json: Array("{}".utf8))),
            .verifyRequest(
                VerifyRequestParams(
                    authorizations: ["X-Matrix origin=domain,key=ed25519:1,sig=\(signature.base64)"], method: "GET", uri: "/x",
                    destination: "example.org",
                    keys: [GivenKey(server: "domain", id: "ed25519:1", publicKey: key)])),
            .keyDocument(server: "domain", validUntilTS: 1_700_000_000_000),
        ]
        let responses: [(Opcode, Response)] = [
            (
                .hello,
                .hello(
                    HelloInfo(
                        maxFrameLength: 65536, maxBatchItems: 256, maxInFlight: 16, operations: Opcode.allCases, servers: ["domain"],
                        daemonVersion: "0.1"))
            ),
            (.ping, .pong(payload: [9])),
            (
                .listKeys,
                .keys(
                    KeyListing(servers: [
                        KeyListing.Server(
                            name: "domain", keys: [KeyListing.Key(id: "ed25519:1", publicKey: key, state: .signing, expiredTS: 0)])
                    ]))
            ),
            (.signRaw, .signature(keyID: KeyID("ed25519:1")!, signature)), (.verify, .verified(true)),
            (.verifyJSON, .verifiedJSON(JSONVerdict(isValid: false, outcomes: [("ed25519:1", .invalid)]))),
            (
                .verifyRequest,
                .verifiedRequest(RequestVerification(verdict: .badSignature, origin: "domain", keyID: "ed25519:1", detail: "no"))
            ),
            (.signJSON, .signedJSON(Array("{}".utf8))),
        ]
        var seeds: [[UInt8]] = []
        var stream: [UInt8] = []
        for (index, request) in requests.enumerated() {
            var body = WireWriter()
            request.encodeBody(into: &body)
            seeds.append([1, request.opcode.rawValue] + body.bytes)
            var frame = WireWriter()
            request.encodeFrame(requestID: UInt32(index), into: &frame)
            stream += frame.bytes
        }
        seeds.append([0, 0x11] + stream)
        seeds.append([0, 0x00] + stream.prefix(40) + [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4, 5, 6, 7, 8])
        seeds.append([0, 0x03] + [0, 0, 0, 4])
        for (opcode, response) in responses {
            var body = WireWriter()
            response.encodeBody(into: &body)
            seeds.append([2, opcode.rawValue] + body.bytes)
            seeds.append([3, 0x80, opcode.rawValue, 0] + body.bytes)
            seeds.append(
                [3, 0x81, opcode.rawValue, 0, 0, 2, 0, 0, 0, UInt8(body.bytes.count)] + body.bytes + [5, 0, 0, 0, 4, 0, 2, 0x68, 0x69])
        }
        var batch = WireWriter()
        Request.encodeBatch(
            [.signRaw(server: "d", keyID: nil, message: [1]), .signRaw(server: "d", keyID: nil, message: [])], requestID: 1, into: &batch)
        seeds.append([4, 8] + batch.bytes.dropFirst(Wire.headerSize))
        return seeds
    }
}
