import SigilCore

/// Typical sessions, built with the real request encoders: every operation, small and large
/// batches, refusals, and the two connection-fatal length prefixes, under programs that read in
/// odd chunks, stop reading replies, let timeouts pass, run batches out of order and drain.
enum EngineSeeds {
    typealias Event = ConnectionEngineTarget.Event

    static func op(_ event: Event, _ argument: Int = 0) -> UInt8 { event.rawValue | UInt8(argument) << 3 }

    static func frame(_ request: Request, id: UInt32) -> [UInt8] {
        var writer = WireWriter()
        request.encodeFrame(requestID: id, into: &writer)
        return writer.bytes
    }

    static func batch(_ requests: [Request], id: UInt32) -> [UInt8] {
        var writer = WireWriter()
        Request.encodeBatch(requests, requestID: id, into: &writer)
        return writer.bytes
    }

    static func raw(
        length: UInt32, version: UInt8 = Wire.version, opcode: UInt8, flags: UInt8 = 0, status: UInt8 = 0, id: UInt32, body: [UInt8] = []
    ) -> [UInt8] {
        var writer = WireWriter()
        writer.u32(length)
        writer.u8(version)
        writer.u8(opcode)
        writer.u8(flags)
        writer.u8(status)
        writer.u32(id)
        return writer.bytes + body
    }

    static let signing = Request.signRequest(
        SignRequestParams(origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/media/download/abc"))

    static var requests: [Request] {
        let key = PublicKey(base64: "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI")!
        let signature = Signature(base64: "UxgQZoKQVT7ekj4hjL7QlLRJwA7YaGP7mDBBXDITiGiVDxcGOep/LlSrlzfWGQ6GvgeMdydmBp2v9r+rHdKhDA")!
        return [
            .hello(clientName: "fuzz"), .ping(payload: [1, 2, 3]), .listKeys(), .stats, signing,
            .signRequest(
                SignRequestParams(
                    origin: "domain", destination: "example.org", method: "PUT", uri: "/_matrix/federation/v1/send/1",
                    content: Array(#"{"a":1}"#.utf8))),
            .signJSON(server: "domain", json: Array(#"{"b":[1,2],"a":"x"}"#.utf8)),
            .signRaw(server: "domain", keyID: nil, message: [0, 1]),
            .verify(VerifyParams(key: .publicKey(key), message: [1], signature: signature.bytes)),
            .verifyJSON(VerifyJSONParams(server: "domain", keys: [("ed25519:1", key)], json: Array("{}".utf8))),
            .verifyRequest(
                VerifyRequestParams(
                    authorizations: ["X-Matrix origin=domain,key=ed25519:1,sig=\(signature.base64)"], method: "GET", uri: "/x",
                    destination: "example.org",
                    keys: [GivenKey(server: "domain", id: "ed25519:1", publicKey: key)])),
            .keyDocument(server: "domain", validUntilTS: 1_700_000_000_000),
        ]
    }

    /// Streams a client might send.
    static var streams: [[UInt8]] {
        let all = requests.enumerated().flatMap { frame($1, id: UInt32($0 + 1)) }
        let batches =
            batch([signing, signing], id: 20) + batch(Array(repeating: signing, count: 4), id: 21)
            + batch(Array(repeating: .signRaw(server: "domain", keyID: nil, message: [7]), count: 3), id: 22)
            + batch(Array(repeating: signing, count: 17), id: 23) + raw(length: 14, opcode: 2, flags: 1, id: 24, body: [0, 1, 0, 0, 0, 0])
            + batch(Array(repeating: signing, count: 4), id: 25) + frame(.ping(payload: [9]), id: 26)
        let refused =
            raw(length: 8, version: 9, opcode: 2, id: 30) + raw(length: 8, opcode: 0x7F, id: 31)
            + raw(length: 8, opcode: 2, flags: 0x80, id: 32) + raw(length: 8, opcode: 2, status: 3, id: 33)
            + raw(length: 10, opcode: 2, flags: 1, id: 34, body: [0, 0])
        let pings = (1...40).flatMap { frame(.ping(payload: [UInt8]($0 % 2 == 0 ? [] : [1])), id: UInt32($0)) }
        let bigPings = (1...8).flatMap { frame(.ping(payload: [UInt8](repeating: 0x55, count: 1000)), id: UInt32($0)) }
        // Pipelined SIGN_REQUESTs for many origins (the look-ahead in the setups with more
        // servers): known, unknown, one whose origin length runs past its body, one too short
        // to hold the length, and a batch of mixed origins.
        let origins = ["domain", "unknown.example"] + EngineSetup.moreServerNames
        let signings = origins.map {
            Request.signRequest(SignRequestParams(origin: $0, destination: "example.org", uri: "/_matrix/media/x"))
        }
        let lookAhead =
            signings.enumerated().flatMap { frame($1, id: UInt32(40 + $0)) }
            + raw(length: 12, opcode: 0x10, id: 60, body: [0xFF, 0xFF, 0, 0]) + raw(length: 9, opcode: 0x10, id: 61, body: [0])
            + batch(signings, id: 62) + signings.reversed().enumerated().flatMap { frame($1, id: UInt32(70 + $0)) }
        return [
            all, batches, refused, pings, bigPings, lookAhead,
            all + raw(length: 0xFFFF_FFF0, opcode: 2, id: 99) + pings,
            frame(.ping(payload: [1]), id: 1) + [0, 0, 0, 7] + pings,
            frame(signing, id: 1) + Array(raw(length: 0x0100_0000, opcode: 0x10, id: 5).prefix(6)),
        ]
    }

    /// Programs: what the client, the kernel, the clock and the pool do.
    static var programs: [[UInt8]] {
        let oddReads = [1, 2, 4, 6, 9, 11, 13, 15, 18, 22, 24].map { op(.read, $0) }
        return [
            [],
            oddReads + oddReads,
            // A client that stops reading its replies, then the write timeout.
            [op(.kernel, 2)] + Array(repeating: op(.read, 29), count: 6) + [op(.tick, 17), op(.tick, 18)],
            // Backpressure released: the client catches up.
            [op(.kernel, 0)] + Array(repeating: op(.read, 31), count: 4) + [op(.writeCompletes), op(.kernel, 9), op(.read, 31)],
            // A backlog worked through in turns; batches finish out of order.
            [op(.read, 31), op(.continueTurn), op(.runJob, 1), op(.continueTurn), op(.runJob, 0), op(.continueTurn), op(.runJob, 3)],
            // Half a frame, then the frame timeout; an idle connection.
            [op(.other, 5), op(.tick, 13), op(.tick, 15), op(.tick, 22)],
            // EOF in the middle, then a drain.
            [op(.read, 20), op(.other, 0), op(.tick, 25), op(.runJob), op(.tick, 31)],
            // Shed for memory while not reading; an I/O error.
            [op(.kernel, 0), op(.read, 31), op(.other, 2), op(.other, 1)],
        ]
    }

    static var all: [[UInt8]] {
        var seeds: [[UInt8]] = []
        for (index, stream) in streams.enumerated() {
            for (number, program) in programs.enumerated() where (index + number) % 2 == 0 || number < 2 {
                let setup = UInt8((index + number) % EngineSetup.all.count)
                seeds.append([setup, UInt8(program.count)] + program + stream)
            }
        }
        return seeds
    }
}
