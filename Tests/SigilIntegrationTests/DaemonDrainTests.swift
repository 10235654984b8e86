import Foundation
import SigilClient
import SigilCore
import SigilTestSupport
import Testing

/// SIGTERM: stop accepting, answer everything that has arrived, close quiet connections,
/// remove the socket file, exit 0.
extension DaemonEndToEnd {
    @Suite("drain on SIGTERM")
    struct Drain {
        static func start() throws -> DaemonFixture {
            try DaemonFixture.quickStart(limits: "  drain_timeout: 5s\n  offload_batch_items: 8")
        }

        /// 1000 requests: sign requests and pings, with an offloaded VERIFY batch every 100th.
        static func pipelinedRequests() -> (bytes: [UInt8], ids: Set<UInt32>) {
            let message = SpecVectors.requestJSON(uri: SpecVectors.mediaURI)
            let signature = Base64.decode(SpecVectors.mediaSignature)!
            let verify = Request.verify(VerifyParams(key: .publicKey(SpecVectors.publicKey), message: message, signature: signature))
            var bytes: [UInt8] = []
            for id in UInt32(1)...1000 {
                if id % 100 == 0 {
                    var writer = WireWriter()
                    Request.encodeBatch(Array(repeating: verify, count: 32), requestID: id, into: &writer)
                    bytes += writer.bytes
                } else if id % 2 == 0 {
                    bytes += frameBytes(.ping(payload: withUnsafeBytes(of: id.bigEndian) { Array($0) }), id: id)
                } else {
                    bytes += frameBytes(
                        .signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: "/d/\(id)")), id: id)
                }
            }
            return (bytes, Set(1...1000))
        }

        /// Reads answers until every ID in `ids` has one; checks each.
        static func readAnswers(_ socket: RawSocket, ids: Set<UInt32>) throws -> Set<UInt32> {
            var seen: Set<UInt32> = []
            while seen.count < ids.count {
                guard let frame = try socket.readFrame() else { break }
                let id = frame.header.requestID
                #expect(ids.contains(id) && !seen.contains(id), "unexpected or repeated answer \(id)")
                seen.insert(id)
                #expect(frame.header.status == 0, "request \(id) got status \(frame.header.status)")
                let answer = try frame.body.withUnsafeBytes { try decodeResponseFrame(frame.header, body: $0) }
                if id % 100 == 0 {
                    #expect(answer.count == 32 && answer.allSatisfy { (try? $0.get()) == .verified(true) }, "batch \(id)")
                } else if id % 2 == 0 {
                    #expect(answer == [.success(.pong(payload: withUnsafeBytes(of: id.bigEndian) { Array($0) }))], "ping \(id)")
                } else if case .success(.signedRequest(let signed)) = answer.first {
                    #expect(SpecVectors.isSpecSignature(signed, uri: "/d/\(id)"), "sign \(id)")
                } else {
                    Issue.record("request \(id): \(answer)")
                }
            }
            return seen
        }

        @Test("1000 pipelined requests, SIGTERM at once: all answered, exit 0, socket file removed")
        func drainAnswersEverything() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let (bytes, ids) = Self.pipelinedRequests()
            let socket = try RawSocket(path: daemon.socketPath)
            try socket.send(bytes)
            daemon.signal(SIGTERM)
            let seen = try Self.readAnswers(socket, ids: ids)
            #expect(seen == ids, "\(ids.count - seen.count) requests were not answered")
            #expect(try socket.readEOF(), "the daemon closes the connection once it is quiet")
            let status = daemon.waitForExit(timeout: 10)
            #expect(status == 0, "\(daemon.log)")
            #expect(!FileManager.default.fileExists(atPath: daemon.socketPath), "the socket file is left behind")
            #expect(daemon.log.contains("SIGTERM: draining"))
            #expect(daemon.log.contains("stopped"))
        }

        @Test("a second SIGTERM while draining is harmless; a frame finishing during the drain is answered")
        func secondSIGTERM() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            // A frame half-sent before SIGTERM keeps the drain waiting for it.
            let late = try RawSocket(path: daemon.socketPath)
            let lateFrame = frameBytes(
                .signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)), id: 7)
            try late.send(Array(lateFrame.prefix(20)))
            let (bytes, ids) = Self.pipelinedRequests()
            let socket = try RawSocket(path: daemon.socketPath)
            try socket.send(bytes)

            daemon.signal(SIGTERM)
            #expect(daemon.waitForLog("SIGTERM: draining"))
            daemon.signal(SIGTERM)
            #expect(daemon.waitForLog("SIGTERM again while draining"), "\(daemon.log)")
            #expect(daemon.isRunning)
            // No new connections once draining.
            #expect((try? SigilConnection(path: daemon.socketPath)) == nil)

            let seen = try Self.readAnswers(socket, ids: ids)
            #expect(seen == ids, "\(ids.count - seen.count) requests were not answered")
            try late.send(Array(lateFrame.dropFirst(20)))
            let answer = try #require(try late.readFrame(), "the frame finished during the drain was not answered")
            #expect(answer.header.requestID == 7)
            #expect(answer.header.status == 0)
            let signed = try answer.body.withUnsafeBytes { try decodeResponseFrame(answer.header, body: $0) }
            if case .success(.signedRequest(let request)) = signed.first {
                #expect(request.header == SpecVectors.mediaHeader)
            } else {
                Issue.record("the late request: \(signed)")
            }
            #expect(daemon.waitForExit(timeout: 10) == 0, "\(daemon.log)")
            #expect(!FileManager.default.fileExists(atPath: daemon.socketPath))
        }
    }
}
