import Foundation
import SigilClient
import SigilCore
import SigilTestSupport
import Testing

/// Many requests on one connection without waiting: answers are matched by request ID and may
/// come back out of order, because large batches run on the thread pool.
extension DaemonEndToEnd {
    @Suite("pipelining on one connection")
    struct Pipelining {
        static func start() throws -> DaemonFixture {
            try DaemonFixture.quickStart(limits: "  max_batch: 256\n  offload_batch_items: 16\n  max_frame: 1MiB")
        }

        /// The spec's signed request as a VERIFY item; odd items get a tampered message.
        static func verifyItems(_ count: Int) -> [Request] {
            let message = SpecVectors.requestJSON(uri: SpecVectors.mediaURI)
            let signature = Base64.decode(SpecVectors.mediaSignature)!
            return (0..<count).map { index in
                .verify(
                    VerifyParams(
                        key: .publicKey(SpecVectors.publicKey), message: index % 2 == 0 ? message : message + [0x20], signature: signature))
            }
        }

        @Test("a PING sent after a large offloaded batch is answered first")
        func outOfOrderCompletion() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let connection = try SigilConnection(path: daemon.socketPath)
            defer { connection.close() }
            let order = Shared<[String]>([])
            let batchResult = Shared<[Result<Response, WireFailure>]?>(nil)
            let done = DispatchSemaphore(value: 0)
            connection.submit(Self.verifyItems(256), batch: true) { result in
                order.update { $0.append("batch") }
                batchResult.update { $0 = try? result.get() }
                done.signal()
            }
            connection.submit([.ping(payload: Array("after".utf8))]) { result in
                order.update { $0.append("ping") }
                if case .success(let answers) = result, case .success(.pong(let payload)) = answers.first {
                    #expect(payload == Array("after".utf8))
                } else {
                    Issue.record("the ping failed: \(result)")
                }
                done.signal()
            }
            for _ in 0..<2 { #expect(done.wait(timeout: .now() + 10) == .success) }
            #expect(order.current == ["ping", "batch"], "the ping must not wait behind the batch on the thread pool")
            let items = try #require(batchResult.current)
            #expect(items.count == 256)
            for (index, item) in items.enumerated() {
                guard case .success(.verified(let valid)) = item else {
                    Issue.record("item \(index): \(item)")
                    continue
                }
                #expect(valid == (index % 2 == 0), "item \(index)")
            }
        }

        @Test("500 pipelined requests on one SigilConnection are all answered, each with its own answer")
        func fiveHundredThroughTheClient() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let connection = try SigilConnection(path: daemon.socketPath)
            defer { connection.close() }
            let count = 500
            let answers = Shared<[Int: Result<[Result<Response, WireFailure>], SigilClientError>]>([:])
            let done = DispatchSemaphore(value: 0)
            for index in 0..<count {
                let request: Request
                switch index % 3 {
                case 0: request = .ping(payload: Array("payload \(index)".utf8))
                case 1:
                    request = .signRequest(
                        SignRequestParams(
                            origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/media/download/\(index)"))
                default: request = .signRequest(SignRequestParams(origin: "nowhere.example", destination: "example.org", uri: "/\(index)"))
                }
                connection.submit([request]) { result in
                    answers.update { $0[index] = result }
                    done.signal()
                }
            }
            var arrived = 0
            while arrived < count, done.wait(timeout: .now() + 10) == .success { arrived += 1 }
            #expect(arrived == count)
            let all = answers.current
            #expect(all.count == count)
            for index in 0..<count {
                guard case .success(let results) = all[index], results.count == 1 else {
                    Issue.record("request \(index): \(String(describing: all[index]))")
                    continue
                }
                switch (index % 3, results[0]) {
                case (0, .success(.pong(let payload))):
                    #expect(payload == Array("payload \(index)".utf8), "request \(index)")
                case (1, .success(.signedRequest(let signed))):
                    #expect(SpecVectors.isSpecSignature(signed, uri: "/_matrix/federation/v1/media/download/\(index)"), "request \(index)")
                case (2, .failure(let failure)):
                    #expect(failure.status == .unknownServer, "request \(index)")
                    #expect(failure.message.contains("nowhere.example"))
                default:
                    Issue.record("request \(index) got the wrong answer: \(results[0])")
                }
            }
        }

        @Test("500 raw frames with scattered request IDs, written at once, come back matched by ID")
        func fiveHundredRawFrames() throws {
            let daemon = try Self.start()
            defer { daemon.stop() }
            let socket = try RawSocket(path: daemon.socketPath)
            let ids = (0..<500).map { UInt32(truncatingIfNeeded: $0 &* 2_654_435_761 &+ 17) }
            #expect(Set(ids).count == ids.count)
            var bytes: [UInt8] = []
            for (index, id) in ids.enumerated() {
                if index % 2 == 0 {
                    bytes += frameBytes(.ping(payload: withUnsafeBytes(of: id.bigEndian) { Array($0) }), id: id)
                } else {
                    bytes += frameBytes(
                        .signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: "/r/\(id)")), id: id)
                }
            }
            // Written from another thread, so a full socket buffer cannot deadlock us.
            sendInBackground(fd: socket.fd, bytes)
            var seen: [UInt32: Int] = [:]
            let expected = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
            for _ in 0..<ids.count {
                guard let frame = try socket.readFrame() else {
                    Issue.record("the connection closed after \(seen.count) answers")
                    break
                }
                let id = frame.header.requestID
                let index = try #require(expected[id], "an answer to an ID never sent: \(id)")
                seen[id, default: 0] += 1
                #expect(frame.header.status == 0)
                #expect(frame.header.flags == 0x80)
                let answer = try frame.body.withUnsafeBytes { try decodeResponseFrame(frame.header, body: $0) }
                if index % 2 == 0 {
                    #expect(answer == [.success(.pong(payload: withUnsafeBytes(of: id.bigEndian) { Array($0) }))])
                } else if case .success(.signedRequest(let signed)) = answer.first {
                    #expect(SpecVectors.isSpecSignature(signed, uri: "/r/\(id)"))
                } else {
                    Issue.record("request \(id): \(answer)")
                }
            }
            #expect(seen.count == ids.count)
            #expect(seen.values.allSatisfy { $0 == 1 })
        }
    }
}
