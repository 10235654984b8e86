import Foundation
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// Malformed frames and bodies, each answered with an error or a close, while another
/// connection keeps getting answers the whole time.
extension DaemonEndToEnd {
    @Suite("malformed input")
    struct MalformedInput {
        static let maxFrame = 4096
        static let maxBatch = 8

        /// A daemon with small limits and a bystander connection pinging throughout; `body`
        /// gets the daemon. Afterwards the bystander must have had every ping answered, on
        /// its one connection (SigilConnection never reconnects).
        static func withBystander(_ body: (DaemonFixture) throws -> Void) throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        mode: "0600"
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    limits:
                      max_frame: \(maxFrame)
                      max_batch: \(maxBatch)
                      offload_batch_items: 4
                      frame_timeout: 300ms
                    log_level: debug
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let bystander = try SigilConnection(path: daemon.socketPath)
            defer { bystander.close() }
            let answered = Shared(0)
            let failures = Shared<[String]>([])
            let loop = BackgroundLoop(limit: 30) {
                do {
                    let response = try bystander.send(.ping(payload: [0xAB]), timeout: 5)
                    if response == .pong(payload: [0xAB]) {
                        answered.update { $0 += 1 }
                    } else {
                        failures.update { $0.append("\(response)") }
                    }
                } catch {
                    failures.update { $0.append("\(error)") }
                    usleep(50_000)
                }
            }
            #expect(eventually { answered.current > 0 }, "the bystander never got an answer")
            let before = answered.current
            try body(daemon)
            // Still answering after everything.
            #expect(eventually { answered.current > before + 5 })
            loop.stop()
            #expect(failures.current.isEmpty, "the bystander was disturbed: \(failures.current.prefix(3))")
            #expect(!bystander.isClosed)
            #expect(try bystander.send(.ping(payload: [1])) == .pong(payload: [1]))
        }

        /// Sends `bytes` on a fresh connection and reads one answer.
        static func answer(to bytes: [UInt8], on socket: RawSocket) throws -> (header: FrameHeader, message: String) {
            try socket.send(bytes)
            let frame = try #require(try socket.readFrame(), "no answer before the connection closed")
            #expect(frame.header.isResponse)
            let message = frame.body.withUnsafeBytes {
                WireFailure.decode(status: WireStatus(rawValue: frame.header.status) ?? .internalError, body: $0).message
            }
            return (frame.header, message)
        }

        /// True once the daemon has closed the connection (EOF, or ECONNRESET when it closed
        /// with our bytes still unread).
        static func isClosedByDaemon(_ socket: RawSocket) -> Bool {
            do {
                return try socket.readEOF()
            } catch {
                return (error as? PosixError)?.errno == ECONNRESET
            }
        }

        /// A second request on the same connection still works.
        static func expectStillOpen(_ socket: RawSocket, sourceLocation: SourceLocation = #_sourceLocation) throws {
            try socket.send(frameBytes(.ping(payload: [9, 9]), id: 4242))
            let frame = try #require(try socket.readFrame(), "the connection was closed", sourceLocation: sourceLocation)
            #expect(frame.header.requestID == 4242, sourceLocation: sourceLocation)
            #expect(frame.header.status == 0, sourceLocation: sourceLocation)
            #expect(frame.body == [0, 0, 0, 2, 9, 9], sourceLocation: sourceLocation)
        }

        @Test("a length below 8 gets BAD_FRAME, then the connection closes")
        func lengthTooSmall() throws {
            try Self.withBystander { daemon in
                for length: UInt8 in [0, 4, 7] {
                    let socket = try RawSocket(path: daemon.socketPath)
                    let (header, message) = try Self.answer(to: [0, 0, 0, length, 1, 2, 0, 0, 0, 0, 0, 1], on: socket)
                    #expect(header.status == WireStatus.badFrame.rawValue)
                    #expect(header.requestID == 0)
                    #expect(message.contains("below the 8-byte minimum"), "\(message)")
                    #expect(Self.isClosedByDaemon(socket))
                }
            }
        }

        @Test("a length above max_frame gets FRAME_TOO_LARGE with the request ID, then the connection closes")
        func frameTooLarge() throws {
            try Self.withBystander { daemon in
                // Exactly max_frame is fine: a PING whose frame length is 4096.
                let fits = try RawSocket(path: daemon.socketPath)
                let payload = [UInt8](repeating: 7, count: Self.maxFrame - 12)
                try fits.send(frameBytes(.ping(payload: payload), id: 5))
                let echoed = try #require(try fits.readFrame())
                #expect(echoed.header.status == 0)
                #expect(echoed.header.length == UInt32(Self.maxFrame))

                // One byte more, with the whole header sent: the answer carries the request ID.
                let socket = try RawSocket(path: daemon.socketPath)
                let (header, message) = try Self.answer(to: rawFrame(length: UInt32(Self.maxFrame + 1), opcode: 0x02, id: 77), on: socket)
                #expect(header.status == WireStatus.frameTooLarge.rawValue)
                #expect(header.requestID == 77)
                #expect(message.contains("exceeds the limit of \(Self.maxFrame)"), "\(message)")
                #expect(Self.isClosedByDaemon(socket))

                // Only the length arrived: request ID 0.
                let early = try RawSocket(path: daemon.socketPath)
                let (earlyHeader, _) = try Self.answer(to: [0x7f, 0xff, 0xff, 0xff], on: early)
                #expect(earlyHeader.status == WireStatus.frameTooLarge.rawValue)
                #expect(earlyHeader.requestID == 0)
                #expect(Self.isClosedByDaemon(early))
            }
        }

        @Test("after BAD_FRAME or FRAME_TOO_LARGE the connection closes at once, not at frame_timeout")
        func fatalErrorsCloseAtOnce() throws {
            let daemon = try DaemonFixture.quickStart(limits: "  max_frame: 4096")  // frame_timeout 2s
            defer { daemon.stop() }
            let cases: [(String, [UInt8], WireStatus)] = [
                ("length 4", [0, 0, 0, 4], .badFrame),
                ("length 4 and more bytes", [0, 0, 0, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9], .badFrame),
                ("length over max_frame", rawFrame(length: 5000, opcode: 0x02, id: 3), .frameTooLarge),
                ("length over max_frame, header only", [0, 0, 0x13, 0x88], .frameTooLarge),
            ]
            for (name, bytes, status) in cases {
                let socket = try RawSocket(path: daemon.socketPath)
                try Posix.setReceiveTimeout(socket.fd, seconds: 5)
                let start = Date()
                let (header, _) = try Self.answer(to: bytes, on: socket)
                #expect(header.status == status.rawValue, "\(name)")
                #expect(Self.isClosedByDaemon(socket), "\(name)")
                let elapsed = Date().timeIntervalSince(start)
                #expect(elapsed < 1, "\(name): closed only after \(elapsed) s")
            }
        }

        @Test("unknown opcode, bad version, response flag, unknown flags and non-zero status: an error, the connection stays open")
        func headerErrors() throws {
            try Self.withBystander { daemon in
                let socket = try RawSocket(path: daemon.socketPath)
                let cases: [(String, [UInt8], WireStatus, String)] = [
                    ("unknown opcode", rawFrame(opcode: 0x7f, id: 1), .unknownOpcode, "unknown opcode 0x7f"),
                    ("opcode 0", rawFrame(opcode: 0x00, id: 2), .unknownOpcode, "unknown opcode 0x0"),
                    ("version 2", rawFrame(version: 2, opcode: 0x02, id: 3, body: [0, 0, 0, 0]), .unsupportedVersion, "version 2"),
                    ("version 0", rawFrame(version: 0, opcode: 0x02, id: 4, body: [0, 0, 0, 0]), .unsupportedVersion, "version 0"),
                    ("response flag", rawFrame(opcode: 0x02, flags: 0x80, id: 5, body: [0, 0, 0, 0]), .badFrame, "flags 0x80"),
                    ("unknown flag bit", rawFrame(opcode: 0x02, flags: 0x02, id: 6, body: [0, 0, 0, 0]), .badFrame, "flags 0x2"),
                    ("non-zero status", rawFrame(opcode: 0x02, status: 5, id: 7, body: [0, 0, 0, 0]), .badFrame, "status 0"),
                ]
                for (name, bytes, status, text) in cases {
                    let (header, message) = try Self.answer(to: bytes, on: socket)
                    #expect(header.status == status.rawValue, "\(name)")
                    #expect(header.requestID == UInt32(bytes[11]), "\(name)")
                    #expect(message.contains(text), "\(name): \(message)")
                    try Self.expectStillOpen(socket)
                }
            }
        }

        @Test("truncated or overlong bodies, bad fields and misused batch flags: BAD_REQUEST naming the field")
        func badBodies() throws {
            try Self.withBystander { daemon in
                let socket = try RawSocket(path: daemon.socketPath)
                var origin = WireWriter()
                origin.u16(10)
                origin.fixed(Array("dom".utf8))
                var signPrefix = WireWriter()
                Request.signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: "/x")).encodeBody(
                    into: &signPrefix)
                let cases: [(String, [UInt8], String)] = [
                    ("a string cut short", rawFrame(opcode: 0x10, id: 11, body: origin.bytes), "origin"),
                    (
                        "a sign_request missing its content", rawFrame(opcode: 0x10, id: 12, body: Array(signPrefix.bytes.dropLast(4))),
                        "content"
                    ),
                    ("a bytes field longer than the body", rawFrame(opcode: 0x02, id: 13, body: [0, 0, 0, 100, 1, 2]), "payload"),
                    ("a byte after the last field", rawFrame(opcode: 0x02, id: 14, body: [0, 0, 0, 1, 1, 0xEE]), "unexpected bytes"),
                    ("an empty key_document body", rawFrame(opcode: 0x30, id: 15), "server_name"),
                    ("a key_document without valid_until_ts", rawFrame(opcode: 0x30, id: 16, body: [0, 1, 0x61, 0, 0]), "valid_until_ts"),
                    ("verify with key_mode 7", rawFrame(opcode: 0x20, id: 17, body: [7] + [UInt8](repeating: 0, count: 40)), "key_mode"),
                    ("a batch flag on PING", rawFrame(opcode: 0x02, flags: 0x01, id: 18, body: [0, 1, 0, 0, 0, 4, 0, 0, 0, 0]), "batch"),
                    (
                        "a batch whose count exceeds its items", rawFrame(opcode: 0x20, flags: 0x01, id: 19, body: [0, 3, 0, 0, 0, 0]),
                        "batch"
                    ),
                    ("a batch of 0 items", rawFrame(opcode: 0x20, flags: 0x01, id: 20, body: [0, 0]), "at least one item"),
                ]
                for (name, bytes, text) in cases {
                    let (header, message) = try Self.answer(to: bytes, on: socket)
                    #expect(header.status == WireStatus.badRequest.rawValue, "\(name): status \(header.status), \(message)")
                    #expect(header.requestID == UInt32(bytes[11]), "\(name)")
                    #expect(message.contains(text), "\(name): \(message)")
                    try Self.expectStillOpen(socket)
                }
            }
        }

        @Test("invalid UTF-8 in a text field is a BAD_REQUEST; in SIGN_REQUEST's ASCII fields, their grammar refuses it")
        func invalidUTF8() throws {
            try Self.withBystander { daemon in
                let socket = try RawSocket(path: daemon.socketPath)
                let hello = rawFrame(opcode: 0x01, id: 21, body: [0, 2, 0xFF, 0xFE])
                let (helloHeader, helloMessage) = try Self.answer(to: hello, on: socket)
                #expect(helloHeader.status == WireStatus.badRequest.rawValue)
                #expect(helloMessage.contains("client_name is not valid UTF-8"), "\(helloMessage)")
                try Self.expectStillOpen(socket)

                var body = WireWriter()
                body.u16(3)
                body.fixed([0x64, 0xC3, 0x28])  // "d" then a broken two-byte sequence
                body.string("example.org")
                body.string("GET")
                body.string("/x")
                body.bytesField([UInt8]())
                let (signHeader, signMessage) = try Self.answer(to: rawFrame(opcode: 0x10, id: 22, body: body.bytes), on: socket)
                #expect(signHeader.status == WireStatus.badRequest.rawValue)
                #expect(signMessage.contains("origin is not a valid Matrix server name"), "\(signMessage)")

                var uri = WireWriter()
                uri.string("domain")
                uri.string("example.org")
                uri.string("GET")
                uri.u16(4)
                uri.fixed([0x2F, 0xED, 0xA0, 0x80])  // an encoded surrogate
                uri.bytesField([UInt8]())
                let (uriHeader, uriMessage) = try Self.answer(to: rawFrame(opcode: 0x10, id: 23, body: uri.bytes), on: socket)
                #expect(uriHeader.status == WireStatus.badRequest.rawValue)
                #expect(uriMessage.contains("uri must be the request target exactly as sent"), "\(uriMessage)")
                try Self.expectStillOpen(socket)
            }
        }

        @Test("a batch over max_batch gets BATCH_TOO_LARGE; a bad item fails alone")
        func batchTooLarge() throws {
            try Self.withBystander { daemon in
                let socket = try RawSocket(path: daemon.socketPath)
                let message = SpecVectors.requestJSON(uri: SpecVectors.mediaURI)
                let signature = Base64.decode(SpecVectors.mediaSignature)!
                let item = Request.verify(VerifyParams(key: .publicKey(SpecVectors.publicKey), message: message, signature: signature))
                // max_batch + 1 items; then the same items under a count of 60000 (the count is
                // checked before any item is read).
                for count in [Self.maxBatch + 1, 60000] {
                    var batch = WireWriter()
                    Request.encodeBatch(Array(repeating: item, count: Self.maxBatch + 1), requestID: 31, into: &batch)
                    batch.bytes[12] = UInt8(count >> 8)
                    batch.bytes[13] = UInt8(count & 0xFF)
                    let (header, text) = try Self.answer(to: batch.bytes, on: socket)
                    #expect(header.status == WireStatus.batchTooLarge.rawValue, "\(count) items")
                    #expect(header.requestID == 31)
                    #expect(text.contains("batch of \(count) items exceeds the limit of \(Self.maxBatch)"), "\(text)")
                    try Self.expectStillOpen(socket)
                }
                // Exactly max_batch (offloaded to the pool), one item malformed.
                var items = WireWriter()
                items.u16(UInt16(Self.maxBatch))
                for index in 0..<Self.maxBatch {
                    var one = WireWriter()
                    if index == 3 { one.u8(9) } else { item.encodeBody(into: &one) }
                    items.bytesField(one.bytes)
                }
                try socket.send(rawFrame(opcode: 0x20, flags: 0x01, id: 32, body: items.bytes))
                let frame = try #require(try socket.readFrame())
                #expect(frame.header.status == 0)
                #expect(frame.header.flags == 0x81)
                let results = try frame.body.withUnsafeBytes { try decodeResponseFrame(frame.header, body: $0) }
                #expect(results.count == Self.maxBatch)
                for (index, result) in results.enumerated() {
                    if index == 3 {
                        #expect((try? result.get()) == nil)
                        if case .failure(let failure) = result { #expect(failure.status == .badRequest) }
                    } else {
                        #expect(try result.get() == .verified(true), "item \(index)")
                    }
                }
            }
        }

        @Test("a frame that stops arriving is closed after frame_timeout")
        func stalledFrame() throws {
            try Self.withBystander { daemon in
                let full = frameBytes(.ping(payload: Array("stalled".utf8)), id: 41)
                // Cut in the length, in the header, and in the body; all stalled at once.
                let start = Date()
                var sockets: [(Int, RawSocket)] = []
                for cut in [2, 6, 14] {
                    let socket = try RawSocket(path: daemon.socketPath)
                    try Posix.setReceiveTimeout(socket.fd, seconds: 5)
                    try socket.send(Array(full.prefix(cut)))
                    sockets.append((cut, socket))
                }
                for (cut, socket) in sockets {
                    #expect(Self.isClosedByDaemon(socket), "after \(cut) bytes")
                    let elapsed = Date().timeIntervalSince(start)
                    #expect(elapsed >= 0.3, "closed after \(elapsed) s, before frame_timeout")
                    #expect(elapsed < 3, "closed only after \(elapsed) s")
                }
                #expect(daemon.waitForLog("a frame took over 300 ms to arrive"))
                // A frame sent slowly but within the timeout is fine.
                let slow = try RawSocket(path: daemon.socketPath)
                try slow.send(Array(full.prefix(5)))
                usleep(100_000)
                try slow.send(Array(full.dropFirst(5)))
                let answer = try #require(try slow.readFrame())
                #expect(answer.header.requestID == 41)
                #expect(answer.header.status == 0)
            }
        }

        @Test("garbage bytes are answered with an error and a close")
        func garbage() throws {
            try Self.withBystander { daemon in
                // Someone speaking HTTP to the socket: "GET " read as a length is far over max_frame.
                let http = try RawSocket(path: daemon.socketPath)
                let (header, _) = try Self.answer(to: Array("GET / HTTP/1.1\r\nHost: sigil\r\n\r\n".utf8), on: http)
                #expect(header.status == WireStatus.frameTooLarge.rawValue)
                #expect(Self.isClosedByDaemon(http))

                // 64 KiB of pseudo-random bytes, written from another thread: error frames, then a close.
                var generator = SystemRandomNumberGenerator()
                let noise = (0..<65536).map { _ in UInt8.random(in: 0...255, using: &generator) }
                let random = try RawSocket(path: daemon.socketPath)
                sendInBackground(fd: random.fd, noise)
                var frames = 0
                var closed = false
                let deadline = Date().addingTimeInterval(5)
                while Date() < deadline {
                    let frame: (header: FrameHeader, body: [UInt8])?
                    do {
                        frame = try random.readFrame()
                    } catch {
                        closed = (error as? PosixError)?.errno == ECONNRESET
                        break
                    }
                    guard let frame else {
                        closed = true
                        break
                    }
                    frames += 1
                    #expect(frame.header.status != 0)
                }
                #expect(closed)
                #expect(frames >= 1)

                // Plausible lengths with junk headers: errors, and the connection stays usable.
                let junk = try RawSocket(path: daemon.socketPath)
                let (junkHeader, _) = try Self.answer(to: [0, 0, 0, 9, 0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0, 1, 0x55], on: junk)
                #expect(junkHeader.status == WireStatus.unsupportedVersion.rawValue)
                try Self.expectStillOpen(junk)
            }
        }
    }
}
