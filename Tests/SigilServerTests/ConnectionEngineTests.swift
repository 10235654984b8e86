import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

@testable import SigilServer

/// The connection engine with no process and no socket: frames in, the bytes a connection would
/// write out, with the clock, the client's reading and the thread pool played by the test.
@Suite("Connection engine")
struct ConnectionEngineTests {
    static let allOperations = """
          - uid: \(Posix.effectiveUID)
            operations: [hello, ping, list_keys, sign_request, sign_json, sign_raw, verify, verify_json, verify_request, key_document, stats]
        """

    @Test("a round trip for every opcode")
    func everyOpcode() throws {
        let harness = try EngineHarness(access: Self.allOperations)
        let key = PublicKey(base64: TestKeys.specPublicKey)!
        let requests: [Request] = [
            .hello(clientName: "t"), .ping(payload: [1]), .listKeys(), signRequest(), .signJSON(server: "domain", json: Array("{}".utf8)),
            .signRaw(server: "domain", keyID: nil, message: [1]), .verify(VerifyParams(key: .publicKey(key), message: [1], signature: [2])),
            .verifyJSON(VerifyJSONParams(server: "domain", keys: [], json: Array("{}".utf8))),
            .verifyRequest(VerifyRequestParams(authorizations: [], method: "GET", uri: "/x", destination: "domain", keys: [])),
            .keyDocument(server: "domain", validUntilTS: 0), .stats,
        ]
        #expect(Set(requests.map(\.opcode)) == Set(Opcode.allCases))
        for (index, request) in requests.enumerated() {
            let results = try harness.answer(request, id: UInt32(index + 1))
            #expect(results.count == 1)
            guard case .success = results[0] else {
                Issue.record("\(request.opcode): \(results[0])")
                continue
            }
        }
        // The spec vector, exactly.
        guard
            case .success(.signedRequest(let signed)) = try harness.answer(
                signRequest("/_matrix/federation/v1/media/download/abc123"), id: 99
            ).first
        else {
            Issue.record("no signature")
            return
        }
        #expect(signed.header.hasPrefix(#"X-Matrix origin="domain",destination="example.org",key="ed25519:1",sig="UxgQZoKQ"#))
    }

    @Test("frames split anywhere give the same answers")
    func splitInput() throws {
        var stream: [UInt8] = []
        for id in 1...20 { stream += frameBytes(id % 2 == 0 ? signRequest() : .ping(payload: [UInt8(id)]), id: UInt32(id)) }
        let whole = try EngineHarness()
        whole.send(stream)
        let expected = try whole.responses()
        var random = SeededGenerator("engine split input")
        for _ in 0..<20 {
            let harness = try EngineHarness()
            var start = 0
            while start < stream.count {
                let length = Int.random(in: 1...max(1, min(300, stream.count - start)), using: &random)
                harness.send(Array(stream[start..<(start + length)]))
                start += length
            }
            let got = try harness.responses()
            #expect(
                got.count == expected.count && zip(got, expected).allSatisfy { $0.header == $1.header && $0.body == $1.body },
                "seed \(random.seed)")
        }
    }

    @Test("many servers: pipelined SIGN_REQUESTs (looked ahead at) get the answers they get one at a time, malformed ones included")
    func lookAheadAnswersTheSame() throws {
        // Over four servers the engine looks at the next two frames while answering one; it
        // must change nothing, whatever those frames hold. Each server has its own key.
        let servers = (0..<40).map { "s\($0).example.org" } + [String(repeating: "long", count: 20) + ".example.org"]
        let all = ["domain"] + servers
        var frames: [[UInt8]] = []
        /// The origins and uri of each frame's SIGN_REQUESTs (a batch's items in order).
        var sent: [[(origin: String, uri: String)]] = []
        var random = SeededGenerator("engine look-ahead")
        for id in 1...300 {
            let origin = all.randomElement(using: &random)!
            let uri = "/_matrix/media/v3/x\(id)"
            switch Int.random(in: 0..<12, using: &random) {
            case 0:
                frames.append(frameBytes(signRequest(uri, origin: "unknown.example.org"), id: UInt32(id)))
                sent.append([("unknown.example.org", uri)])
            case 1:
                // A batch of mixed origins (looked ahead at item by item), one of them unknown.
                var writer = WireWriter()
                let origins = [origin, all.randomElement(using: &random)!, "unknown.example.org", all.randomElement(using: &random)!]
                Request.encodeBatch(origins.map { signRequest(uri, origin: $0) }, requestID: UInt32(id), into: &writer)
                frames.append(writer.bytes)
                sent.append(origins.map { ($0, uri) })
            case 2:
                frames.append(frameBytes(.ping(payload: [UInt8(id & 0xFF)]), id: UInt32(id)))
                sent.append([])
            case 3:
                // A SIGN_REQUEST whose origin's length runs past the body, or a body too short
                // to hold the length at all.
                var frame = frameBytes(signRequest(uri, origin: origin), id: UInt32(id))
                if id % 2 == 0 {
                    frame[12] = 0xFF
                    frame[13] = 0xFF
                } else {
                    frame = Array(frame[0..<13])
                    frame.replaceSubrange(0..<4, with: [0, 0, 0, 9])
                }
                frames.append(frame)
                sent.append([])
            default:
                frames.append(frameBytes(signRequest(uri, origin: origin), id: UInt32(id)))
                sent.append([(origin, uri)])
            }
        }
        let pipelined = try EngineHarness(servers: servers)
        let keyring = pipelined.state.keyring
        #expect(keyring.looksUpByTable)
        pipelined.send(frames.joined().map { $0 })
        while pipelined.wantsMoreTurns { pipelined.nextTurn() }
        pipelined.runJobs()
        let got = try pipelined.responses()
        let single = try EngineHarness(servers: servers)
        var expected: [(header: FrameHeader, body: [UInt8])] = []
        for frame in frames {
            single.send(frame)
            single.runJobs()
            expected += try single.responses()
        }
        #expect(got.count == frames.count)
        #expect(got.count == expected.count && zip(got, expected).allSatisfy { $0.header == $1.header && $0.body == $1.body })
        // And each answer is its own request's: signed for its origin, with that server's own
        // key, and verifying with that key's public half.
        var signed = 0
        var unknown = 0
        for (requests, reply) in zip(sent, got) where !requests.isEmpty {
            let results = try reply.body.withUnsafeBytes { try decodeResponseFrame(reply.header, body: $0) }
            #expect(results.count == requests.count)
            for (request, result) in zip(requests, results) {
                guard let server = keyring.server(request.origin) else {
                    guard case .failure(let failure) = result else {
                        Issue.record("signed for unknown \(request.origin)")
                        continue
                    }
                    #expect(failure.status == .unknownServer)
                    unknown += 1
                    continue
                }
                guard case .success(.signedRequest(let answer)) = result else {
                    Issue.record("\(request.origin): \(result)")
                    continue
                }
                #expect(answer.keyID == server.signingKey.id)
                let prefix = "X-Matrix origin=\"\(request.origin)\",destination=\"example.org\",key=\"\(server.signingKey.id)\","
                #expect(answer.header.hasPrefix(prefix))
                let verdict = XMatrixVerifier.verify(
                    authorizations: [answer.header], method: "GET", uri: request.uri, destination: "example.org", content: nil
                ) { origin, id in keyring.server(origin)?.publicKey(id) }
                #expect(verdict == .valid(origin: request.origin, keyID: server.signingKey.id))
                signed += 1
            }
        }
        #expect(signed > 150)
        #expect(unknown > 10)
        #expect(Set(servers.compactMap { keyring.server($0)?.signingKey.id }).count == servers.count)
    }

    @Test("one turn handles frames_per_turn frames; the rest wait, with their replies held back")
    func fairness() throws {
        let harness = try EngineHarness(limits: "  frames_per_turn: 4")
        var bytes: [UInt8] = []
        for id in 1...10 { bytes += frameBytes(.ping(payload: [1]), id: UInt32(id)) }
        harness.send(bytes)
        #expect(harness.wantsMoreTurns)
        #expect(!harness.engine.wantsInput, "a backlog is not read further")
        #expect(try harness.responses().isEmpty, "replies wait for the backlog (they go out together)")
        harness.nextTurn()
        harness.nextTurn()
        #expect(!harness.wantsMoreTurns)
        #expect(harness.engine.wantsInput)
        #expect(try harness.responses().map(\.header.requestID) == Array(1...10))
    }

    @Test("a client that does not read stops being read once its replies pass max_pending_output, and is read again when it catches up")
    func backpressure() throws {
        let harness = try EngineHarness(limits: "  max_pending_output: 64KiB")
        harness.clientReads = false
        let payload = [UInt8](repeating: 1, count: 20_000)
        var id: UInt32 = 0
        while harness.engine.wantsInput && id < 100 {
            id += 1
            harness.send(.ping(payload: payload), id: id)
        }
        #expect(!harness.engine.wantsInput, "still reading with \(harness.engine.bufferedBytes) bytes unsent")
        #expect(harness.engine.backpressured)
        #expect(harness.engine.isNotReading)
        harness.clientDrains()
        #expect(harness.engine.wantsInput)
        #expect(try harness.responses().count == Int(id))
    }

    @Test("one read of small requests for large replies: answering stops at max_pending_output and resumes, in order, as the client reads")
    func outputCapHoldsWithinARead() throws {
        let harness = try EngineHarness(limits: "  max_pending_output: 64KiB")
        harness.clientReads = false
        let payload = [UInt8](repeating: 7, count: 20_000)
        let cap = 64 << 10
        let oneReply = 4 + Wire.headerSize + payload.count + 64
        // Twenty PINGs in one read (under frames_per_turn): before, all twenty were answered at
        // once, 400 KB waiting for a client that reads nothing.
        harness.send((1...20).flatMap { frameBytes(.ping(payload: payload), id: UInt32($0)) })
        var pending: Int { harness.engine.queuedBytes + harness.engine.output.bytes.count }
        #expect(pending <= cap + oneReply, "\(pending) bytes pending")
        #expect(harness.engine.stalled)
        #expect(!harness.engine.wantsInput)
        #expect(!harness.wantsMoreTurns, "a stalled connection waits for the client, not for a turn")
        #expect(harness.nextTurn().isEmpty, "an unscheduled turn answers nothing")
        var answered = try harness.responses().map(\.header.requestID)
        #expect(answered.count < 20)
        var rounds = 0
        while answered.count < 20 && rounds < 50 {
            rounds += 1
            harness.clientDrains()
            harness.clientReads = false
            while harness.wantsMoreTurns { harness.nextTurn() }
            #expect(pending <= cap + oneReply, "\(pending) bytes pending")
            answered += try harness.responses().map(\.header.requestID)
        }
        #expect(answered == Array(1...20), "every PING answered once, in order")
        #expect(!harness.engine.stalled)
        harness.clientDrains()
        #expect(harness.engine.wantsInput)
        #expect(harness.engine.isIdle)
    }

    @Test("a stalled connection that half-closes still gets every answer, then closes")
    func stalledThenEOF() throws {
        let harness = try EngineHarness(limits: "  max_pending_output: 64KiB")
        harness.clientReads = false
        let payload = [UInt8](repeating: 7, count: 20_000)
        harness.send((1...12).flatMap { frameBytes(.ping(payload: payload), id: UInt32($0)) })
        harness.endOfInput()
        #expect(harness.engine.stalled)
        #expect(!harness.engine.isClosed)
        var answered: [UInt32] = []
        var rounds = 0
        while !harness.engine.isClosed && rounds < 50 {
            rounds += 1
            answered += try harness.responses().map(\.header.requestID)
            harness.clientDrains()
            while harness.wantsMoreTurns { harness.nextTurn() }
        }
        answered += try harness.responses().map(\.header.requestID)
        #expect(answered == Array(1...12))
        #expect(harness.engine.isClosed)
        #expect(harness.engine.closeReason == .peerClosed)
    }

    @Test("a connection-fatal frame behind stalled frames is answered after every earlier reply, then the connection lingers")
    func stalledThenFatal() throws {
        let harness = try EngineHarness(limits: "  max_pending_output: 64KiB")
        harness.clientReads = false
        let payload = [UInt8](repeating: 7, count: 20_000)
        harness.send(
            (1...12).flatMap { frameBytes(.ping(payload: payload), id: UInt32($0)) }
                + rawFrame(length: 70_000, opcode: 0x02, flags: 0, id: 99))
        #expect(harness.engine.stalled)
        var answered: [FrameHeader] = []
        var rounds = 0
        while rounds < 50 {
            rounds += 1
            answered += try harness.responses().map(\.header)
            if case .lingering = harness.engine.phase { break }
            harness.clientDrains()
            harness.clientReads = false
            while harness.wantsMoreTurns { harness.nextTurn() }
        }
        #expect(answered.map(\.requestID) == Array(1...12) + [99])
        #expect(answered.last?.status == WireStatus.frameTooLarge.rawValue)
        guard case .lingering = harness.engine.phase else {
            Issue.record("not lingering: \(harness.engine.phase)")
            return
        }
    }

    @Test("large batches that finish while the connection is stalled are answered, and so is everything after them")
    func stalledWithBatchesInFlight() throws {
        let harness = try EngineHarness(limits: "  max_pending_output: 64KiB\n  offload_batch_items: 4\n  max_in_flight: 4")
        harness.clientReads = false
        let payload = [UInt8](repeating: 7, count: 20_000)
        var bytes = batchFrame(signRequest(), count: 8, id: 100) + batchFrame(signRequest(), count: 8, id: 101)
        bytes += (1...10).flatMap { frameBytes(.ping(payload: payload), id: UInt32($0)) }
        bytes += batchFrame(signRequest(), count: 8, id: 102)
        harness.send(bytes)
        #expect(harness.engine.stalled)
        harness.runJobs()
        var answered: [UInt32] = []
        var rounds = 0
        while answered.count < 13 && rounds < 50 {
            rounds += 1
            answered += try harness.responses().map(\.header.requestID)
            harness.clientDrains()
            harness.clientReads = false
            while harness.wantsMoreTurns { harness.nextTurn() }
            harness.runJobs()
        }
        answered += try harness.responses().map(\.header.requestID)
        #expect(answered.sorted() == Array(1...10) + [100, 101, 102])
        harness.clientDrains()
        #expect(harness.engine.isIdle && harness.engine.wantsInput)
    }

    @Test("a stalled client that reads nothing is cut off by write_timeout, and a drain waits for it until the deadline")
    func stalledNonReader() throws {
        let payload = [UInt8](repeating: 7, count: 20_000)
        let burst = (1...12).flatMap { frameBytes(.ping(payload: payload), id: UInt32($0)) }
        let harness = try EngineHarness(limits: "  max_pending_output: 64KiB\n  write_timeout: 2s")
        harness.clientReads = false
        harness.send(burst)
        #expect(harness.engine.stalled && harness.engine.queuedBytes > 0)
        harness.advance(1500)
        #expect(!harness.engine.isClosed)
        harness.advance(1500)
        #expect(harness.engine.closeReason == .writeTimeout(2000))

        let draining = try EngineHarness(limits: "  max_pending_output: 64KiB")
        draining.clientReads = false
        draining.send(burst)
        draining.advance(5000, draining: true)
        #expect(!draining.engine.isClosed, "a stalled connection is not quiet")
    }

    @Test(
        "a client that reads as fast as we write: the stall resumes on turns (the kernel took it all), in order, then reading resumes and EOF closes"
    )
    func stallResumesWhenTheKernelTakesAll() throws {
        let harness = try EngineHarness(limits: "  max_pending_output: 64KiB\n  frames_per_turn: 1000")
        let payload = [UInt8](repeating: 7, count: 20_000)
        harness.send((1...40).flatMap { frameBytes(.ping(payload: payload), id: UInt32($0)) })
        #expect(!harness.engine.wantsInput)
        var turns = 0
        while harness.wantsMoreTurns && turns < 100 {
            turns += 1
            harness.nextTurn()
        }
        #expect(turns > 1, "the replies past the cap wait for a turn")
        #expect(try harness.responses().map(\.header.requestID) == Array(1...40))
        #expect(harness.engine.wantsInput && harness.engine.isIdle)
        harness.endOfInput()
        #expect(harness.engine.closeReason == .peerClosed)
    }

    @Test("large batches count towards max_in_flight and get BUSY past it; PINGs, single requests and small batches never do")
    func busy() throws {
        let harness = try EngineHarness(limits: "  max_in_flight: 2\n  offload_batch_items: 16")
        let item = signRequest()
        harness.send(batchFrame(item, count: 16, id: 1))
        harness.send(batchFrame(item, count: 16, id: 2))
        harness.send(batchFrame(item, count: 16, id: 3))
        #expect(harness.pendingJobs.count == 2)
        // While two run: a third large batch is BUSY; the rest are answered.
        harness.send(.ping(payload: [1]), id: 4)
        harness.send(item, id: 5)
        harness.send(batchFrame(item, count: 15, id: 6))
        let early = try harness.responses()
        #expect(early.map(\.header.requestID).sorted() == [3, 4, 5, 6])
        let busy = try #require(early.first { $0.header.requestID == 3 })
        #expect(busy.header.status == WireStatus.busy.rawValue)
        #expect(busy.header.flags == Wire.flagResponse | Wire.flagBatch, "a refused batch frame keeps its BATCH bit")
        #expect(busy.header.opcode == Opcode.signRequest.rawValue)
        for frame in early where frame.header.requestID != 3 { #expect(frame.header.status == 0) }
        harness.runJobs()
        let late = try harness.responses()
        #expect(late.map(\.header.requestID).sorted() == [1, 2])
        #expect(late.allSatisfy { $0.header.status == 0 && $0.header.flags == 0x81 })
        // Room again.
        harness.send(batchFrame(item, count: 16, id: 7))
        #expect(harness.pendingJobs.count == 1)
        harness.runJobs()
        #expect(try harness.responses().first?.header.status == 0)
        harness.services.dispatcher.flushCounters()
        #expect(harness.services.counters.values.withLock { $0.listeners[0].busy } == 1)
    }

    @Test("a batch answers each item on its own; inline and offloaded batches answer the same")
    func batches() throws {
        let items: [Request] = [signRequest(), signRequest("/_matrix/x", origin: "nowhere.example"), signRequest("no-slash")]
        var inline: [UInt8] = []
        var offloaded: [UInt8] = []
        for (limit, output) in [(100, 0), (1, 1)] {
            let harness = try EngineHarness(limits: "  offload_batch_items: \(limit)")
            var writer = WireWriter()
            Request.encodeBatch(items, requestID: 9, into: &writer)
            harness.send(writer.bytes)
            harness.runJobs()
            let frames = try harness.responses()
            #expect(frames.count == 1)
            let results = try frames[0].body.withUnsafeBytes { try decodeResponseFrame(frames[0].header, body: $0) }
            #expect(results.count == 3)
            #expect((try? results[0].get()) != nil)
            #expect(results[1] == .failure(WireFailure(.unknownServer, "no keys for server nowhere.example")))
            if case .failure(let failure) = results[2] { #expect(failure.status == .badRequest) } else { Issue.record("item 3 signed") }
            if output == 0 { inline = frames[0].body } else { offloaded = frames[0].body }
        }
        #expect(inline == offloaded)
    }

    @Test("whole-frame refusals: the reply repeats the opcode, the request ID and the BATCH bit")
    func frameRefusals() throws {
        let harness = try EngineHarness(limits: "  max_batch: 4")
        let cases: [([UInt8], WireStatus)] = [
            (rawFrame(version: 2, opcode: 0x02, id: 1, body: [0, 0, 0, 0]), .unsupportedVersion),
            (rawFrame(opcode: 0x02, flags: 0x40, id: 2, body: [0, 0, 0, 0]), .badFrame),
            (rawFrame(opcode: 0x02, status: 3, id: 3, body: [0, 0, 0, 0]), .badFrame),
            (rawFrame(opcode: 0x7F, id: 4), .unknownOpcode),
            (rawFrame(opcode: 0x02, flags: 0x01, id: 5, body: [0, 1, 0, 0, 0, 0]), .badRequest),
            (rawFrame(opcode: 0x10, flags: 0x01, id: 6, body: [0, 0]), .badRequest),
            (batchFrame(signRequest(), count: 5, id: 7), .batchTooLarge),
            (rawFrame(opcode: 0x10, flags: 0x01, id: 8, body: [0, 1, 0, 0, 0, 9]), .badRequest),
            (rawFrame(opcode: 0x12, id: 9, body: [0, 0, 0, 0, 0, 0, 0, 0]), .denied),
        ]
        for (bytes, _) in cases { harness.send(bytes) }
        let frames = try harness.responses()
        #expect(frames.count == cases.count)
        for (frame, (bytes, status)) in zip(frames, cases) {
            #expect(frame.header.status == status.rawValue, "\(frame.header.requestID)")
            #expect(frame.header.opcode == bytes[5])
            #expect(frame.header.flags == Wire.flagResponse | (bytes[6] & Wire.flagBatch), "\(frame.header.requestID)")
            #expect(frame.header.version == 1, "replies carry the daemon's version, even to UNSUPPORTED_VERSION")
        }
        #expect(harness.engine.wantsInput, "none of these closes the connection")
    }

    @Test("FRAME_TOO_LARGE names the request when its header arrived, then the connection lingers, dropping input, and closes")
    func frameTooLarge() throws {
        let harness = try EngineHarness()
        var header = rawFrame(length: 70_000, opcode: 0x02, flags: 0, id: 77)
        header += [UInt8](repeating: 0, count: 1000)
        harness.send(header)
        let frames = try harness.responses()
        #expect(frames.count == 1)
        #expect(frames[0].header.status == WireStatus.frameTooLarge.rawValue)
        #expect(frames[0].header.opcode == 0x02 && frames[0].header.requestID == 77)
        #expect(harness.lastActions.contains(.shutdownWrite))
        guard case .lingering = harness.engine.phase else {
            Issue.record("not lingering: \(harness.engine.phase)")
            return
        }
        harness.send([UInt8](repeating: 0, count: 5000))
        #expect(try harness.responses().isEmpty, "nothing more is answered")
        #expect(!harness.engine.isClosed)
        harness.endOfInput()
        #expect(harness.engine.isClosed)
    }

    @Test("a lingering connection closes after a second even if the client keeps sending")
    func lingerTimeout() throws {
        let harness = try EngineHarness()
        harness.send([0, 0, 0, 3])
        #expect(try harness.responses().first?.header.status == WireStatus.badFrame.rawValue)
        harness.advance(500)
        #expect(!harness.engine.isClosed)
        harness.advance(600)
        #expect(harness.engine.isClosed)
    }

    @Test("a frame that stops arriving times out (the clock is the test's); time we did not read is not counted")
    func frameTimeout() throws {
        let harness = try EngineHarness(limits: "  frame_timeout: 2s")
        harness.send(Array(frameBytes(.ping(payload: [1, 2, 3]), id: 1).prefix(8)))
        harness.advance(1500)
        #expect(!harness.engine.isClosed)
        harness.advance(600)
        #expect(harness.engine.closeReason == .frameTimeout(2000))
        #expect(harness.engine.isClosed)
    }

    @Test("an idle connection closes after idle_timeout; a busy one does not")
    func idleTimeout() throws {
        let harness = try EngineHarness(limits: "  idle_timeout: 5s")
        harness.send(.ping(payload: []), id: 1)
        harness.advance(4000)
        harness.send(.ping(payload: []), id: 2)
        harness.advance(4000)
        #expect(!harness.engine.isClosed)
        harness.advance(1500)
        #expect(harness.engine.closeReason == .idle)
    }

    @Test("a client that reads none of its queued replies for write_timeout is cut off")
    func writeTimeout() throws {
        let harness = try EngineHarness(limits: "  write_timeout: 3s")
        harness.clientReads = false
        harness.send(.ping(payload: [1]), id: 1)
        #expect(harness.engine.queuedBytes > 0)
        harness.advance(2000)
        #expect(!harness.engine.isClosed)
        harness.advance(1500)
        #expect(harness.engine.closeReason == .writeTimeout(3000))
    }

    @Test("EOF after a burst: every whole frame is answered, then the connection closes")
    func halfClose() throws {
        let harness = try EngineHarness(limits: "  frames_per_turn: 3")
        var bytes: [UInt8] = []
        for id in 1...7 { bytes += frameBytes(.ping(payload: [UInt8(id)]), id: UInt32(id)) }
        bytes += Array(frameBytes(.ping(payload: [9]), id: 8).prefix(5))
        harness.send(bytes)
        harness.endOfInput()
        while harness.wantsMoreTurns { harness.nextTurn() }
        #expect(try harness.responses().map(\.header.requestID) == Array(1...7))
        #expect(harness.engine.closeReason == .peerClosed)
        #expect(harness.engine.isClosed)
    }

    @Test("HELLO tells the limits of its own connection, not a reloaded configuration's")
    func helloAfterReload() throws {
        let harness = try EngineHarness(limits: "  max_frame: 64KiB")
        let reloaded = try ConfigLoader.parse(
            """
            servers:
              domain:
                keys: [\(harness.directory.file("spec.key"))]
            memory_lock: warn
            limits:
              max_frame: 1MiB
              max_batch: 7
            """, path: "reloaded.yaml")
        harness.context.replace(try ServingState.load(reloaded, generation: 2))
        guard case .success(.hello(let info)) = try harness.answer(.hello(clientName: ""), id: 1).first else {
            Issue.record("no HELLO")
            return
        }
        #expect(info.maxFrameLength == 65536)
        #expect(info.maxBatchItems == 256)
        // And what HELLO says is what the connection enforces.
        harness.send(rawFrame(length: 65537, opcode: 0x02, id: 2))
        #expect(try harness.responses().first?.header.status == WireStatus.frameTooLarge.rawValue)
    }

    @Test("a per-uid rate limit answers BUSY, from the header alone, and refills")
    func rateLimit() throws {
        let harness = try EngineHarness()
        let limited = try ConfigLoader.parse(
            """
            listen:
              - name: main
                path: /tmp/unused.sock
                rate_limit: { per_second: 10, burst: 3 }
            servers:
              domain:
                keys: [\(harness.directory.file("spec.key"))]
            memory_lock: warn
            """, path: "limited.yaml")
        harness.context.replace(try ServingState.load(limited, generation: 2))
        for id in 1...4 { harness.send(signRequest(), id: UInt32(id)) }
        harness.send(.ping(payload: []), id: 5)
        let frames = try harness.responses()
        #expect(frames.map(\.header.status) == [0, 0, 0, WireStatus.busy.rawValue, 0])
        let message = frames[3].body.withUnsafeBytes { WireFailure.decode(status: .busy, body: $0).message }
        #expect(message.contains("rate limit"), "\(message)")
        // A batch costs one token per item: 3 items need 300 ms of refill.
        harness.nanoseconds += 200_000_000
        harness.send(batchFrame(signRequest(), count: 3, id: 6))
        #expect(try harness.responses().first?.header.status == WireStatus.busy.rawValue)
        harness.nanoseconds += 200_000_000
        harness.send(batchFrame(signRequest(), count: 3, id: 7))
        #expect(try harness.responses().first?.header.status == 0)
        harness.services.dispatcher.flushCounters()
        #expect(harness.services.counters.values.withLock { $0.listeners[0].rateLimited } == 2)
    }

    @Test("retired keys never authenticate a request; they verify events signed before they expired")
    func retiredKeys() throws {
        let harness = try EngineHarness(access: Self.allOperations)
        let retiredSeedFile = harness.directory.write("old.key", "ed25519 old \(TestKeys.specSeed)\n")
        let fresh = harness.directory.write("new.key", "ed25519 new nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\n")
        let config = try ConfigLoader.parse(
            """
            servers:
              domain:
                keys: [\(fresh)]
                retired:
                  - { id: "ed25519:old", key: "\(TestKeys.specPublicKey)", expired_ts: 1600000000000 }
            access:
            \(Self.allOperations)
            memory_lock: warn
            """, path: "retired.yaml")
        _ = retiredSeedFile
        harness.context.replace(try ServingState.load(config, generation: 2))
        // A request signed with the old key (the spec key): refused.
        let header =
            #"X-Matrix origin="domain",destination="example.org",key="ed25519:old",sig="UxgQZoKQVT7ekj4hjL7QlLRJwA7YaGP7mDBBXDITiGiVDxcGOep/LlSrlzfWGQ6GvgeMdydmBp2v9r+rHdKhDA""#
        let check = Request.verifyRequest(
            VerifyRequestParams(
                authorizations: [header], method: "GET", uri: "/_matrix/federation/v1/media/download/abc123", destination: "example.org",
                keys: []))
        guard case .success(.verifiedRequest(let verdict)) = try harness.answer(check, id: 1).first else {
            Issue.record("no verdict")
            return
        }
        #expect(verdict.verdict == .unknownKey, "\(verdict)")
        // The same key, given explicitly, verifies: the signature itself is good.
        let given = Request.verifyRequest(
            VerifyRequestParams(
                authorizations: [header], method: "GET", uri: "/_matrix/federation/v1/media/download/abc123", destination: "example.org",
                keys: [GivenKey(server: "domain", id: "ed25519:old", publicKey: PublicKey(base64: TestKeys.specPublicKey)!)]))
        guard case .success(.verifiedRequest(let explicit)) = try harness.answer(given, id: 2).first else {
            Issue.record("no verdict")
            return
        }
        #expect(explicit.verdict == .valid)
    }
}
