import Foundation
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// The client library's own guarantees, against a real sigild: requests it cannot encode are
/// refused (never a trap), timed-out requests leave nothing behind, closing is safe from any
/// thread (a completion handler included) and while other threads send, every request gets
/// exactly one completion, and SigilClient reconnects after the daemon comes back.
extension DaemonEndToEnd {
    @Suite("client library: SigilConnection and SigilClient")
    struct ClientLibrary {
        typealias FrameResult = Result<[Result<Response, WireFailure>], SigilClientError>

        /// 65536 bytes: one over a string field's limit.
        static let long = String(repeating: "a", count: 65_536)
        /// 40000 characters but 80000 bytes: the limit counts bytes.
        static let wide = String(repeating: "é", count: 40_000)
        static let key = SpecVectors.publicKey

        /// The same configuration as `DaemonFixture.quickStart()`, for a daemon restarted in the same directory.
        static let quickStartConfig = """
            listen:
              - name: main
                path: {dir}/s.sock
                mode: "0666"
            servers:
              domain:
                keys: [{dir}/spec.key]
            limits:
              frame_timeout: 2s
            log_level: debug
            """

        static func outcome<T>(_ body: () throws(SigilClientError) -> T) -> Result<T, SigilClientError> {
            Result(catching: body)
        }

        /// The message of an `.invalidRequest`, or nil (and an issue) for any other outcome.
        static func invalidRequestMessage<T>(
            _ name: String, _ result: Result<T, SigilClientError>, sourceLocation: SourceLocation = #_sourceLocation
        ) -> String? {
            if case .failure(.invalidRequest(let message)) = result { return message }
            Issue.record("\(name): expected invalidRequest, got \(result)", sourceLocation: sourceLocation)
            return nil
        }

        /// Whether every thread of a process is in the stopped state (SIGSTOP takes effect asynchronously).
        static func isStopped(pid: Int32) -> Bool {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            return !tasks.isEmpty
                && tasks.allSatisfy { task in
                    // The state follows the command name, which is in parentheses and may hold spaces.
                    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                        let close = stat.lastIndex(of: ")")
                    else { return false }
                    return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("T")
                }
        }

        static func isConnectionClosed<T>(_ result: Result<T, SigilClientError>) -> Bool {
            if case .failure(.connectionClosed) = result { return true }
            return false
        }

        /// One request of every kind with each 16-bit string or count over its limit, and the field
        /// the refusal must name.
        static var oversizeRequests: [(name: String, request: Request, field: String)] {
            let given = GivenKey(server: "domain", id: "ed25519:1", publicKey: key)
            func signRequest(origin: String = "domain", destination: String = "example.org", method: String = "GET", uri: String = "/")
                -> Request
            {
                .signRequest(SignRequestParams(origin: origin, destination: destination, method: method, uri: uri))
            }
            func verifyRequest(
                authorizations: [String] = ["X-Matrix origin=a"], method: String = "GET", uri: String = "/", destination: String = "domain",
                keys: [GivenKey] = []
            ) -> Request {
                .verifyRequest(
                    VerifyRequestParams(authorizations: authorizations, method: method, uri: uri, destination: destination, keys: keys))
            }
            return [
                ("hello", .hello(clientName: long), "client_name"),
                ("sign_request origin", signRequest(origin: long), "origin"),
                ("sign_request destination", signRequest(destination: long), "destination"),
                ("sign_request method", signRequest(method: long), "method"),
                ("sign_request uri of multi-byte characters", signRequest(uri: "/" + wide), "uri"),
                ("sign_json", .signJSON(server: long, json: Array("{}".utf8)), "server_name"),
                ("sign_raw server", .signRaw(server: long, keyID: nil, message: [1]), "server_name"),
                ("sign_raw key ID", .signRaw(server: "domain", keyID: long, message: [1]), "key_id"),
                (
                    "verify by key ID: server",
                    .verify(VerifyParams(key: .keyID(server: long, id: "ed25519:1"), message: [], signature: [])), "server_name"
                ),
                (
                    "verify by key ID: key ID", .verify(VerifyParams(key: .keyID(server: "domain", id: wide), message: [], signature: [])),
                    "key_id"
                ),
                ("verify_json server", .verifyJSON(VerifyJSONParams(server: long, keys: [], json: Array("{}".utf8))), "server_name"),
                (
                    "verify_json key ID", .verifyJSON(VerifyJSONParams(server: "domain", keys: [(long, key)], json: Array("{}".utf8))),
                    "key_id"
                ),
                (
                    "verify_json 65536 keys",
                    .verifyJSON(
                        VerifyJSONParams(
                            server: "domain", keys: Array(repeating: ("ed25519:1", key), count: 65_536), json: Array("{}".utf8))),
                    "key_count"
                ),
                (
                    "verify_request 65536 headers", verifyRequest(authorizations: Array(repeating: "X-Matrix", count: 65_536)),
                    "header_count"
                ),
                ("verify_request header", verifyRequest(authorizations: ["X-Matrix origin=a", long]), "authorization"),
                ("verify_request method", verifyRequest(method: long), "method"),
                ("verify_request uri", verifyRequest(uri: long), "uri"),
                ("verify_request destination", verifyRequest(destination: long), "destination"),
                ("verify_request 65536 keys", verifyRequest(keys: Array(repeating: given, count: 65_536)), "key_count"),
                (
                    "verify_request key origin", verifyRequest(keys: [given, GivenKey(server: long, id: "ed25519:1", publicKey: key)]),
                    "origin"
                ),
                ("verify_request key ID", verifyRequest(keys: [GivenKey(server: "domain", id: long, publicKey: key)]), "key_id"),
                ("key_document", .keyDocument(server: long, validUntilTS: 0), "server_name"),
            ]
        }

        @Test("fields over the 16-bit limits are refused as invalidRequest for every kind of request, without trapping or sending")
        func oversizeFieldsAreRefused() async throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let connection = try SigilConnection(path: daemon.socketPath)
            defer { connection.close() }
            for (name, request, field) in Self.oversizeRequests {
                let blocking = Self.outcome { () throws(SigilClientError) in try connection.send(request, timeout: 10) }
                if let message = Self.invalidRequestMessage(name, blocking) {
                    #expect(message.contains(request.opcode.name) && message.contains(field), "\(name): \(message)")
                }
                let asynchronous: Result<Response, SigilClientError>
                do {
                    asynchronous = .success(try await connection.send(request))
                } catch {
                    asynchronous = .failure(error)
                }
                _ = Self.invalidRequestMessage("\(name) (async)", asynchronous)
            }
            // In a batch, the refusal names the item; nothing of the batch is sent.
            let fine = Request.signRequest(
                SignRequestParams(origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/media/download/x"))
            let bad = Request.signRequest(SignRequestParams(origin: "domain", destination: Self.long, uri: "/"))
            let batch = Self.outcome { () throws(SigilClientError) in try connection.sendBatch([fine, fine, bad], timeout: 10) }
            if let message = Self.invalidRequestMessage("batch", batch) {
                #expect(message.contains("item 2") && message.contains("destination"), "\(message)")
            }
            // The same through SigilClient's typed operations.
            let client = daemon.client(timeout: 10)
            defer { client.close() }
            _ = Self.invalidRequestMessage(
                "SigilClient.hello", Self.outcome { () throws(SigilClientError) in try client.hello(clientName: Self.wide) })
            _ = Self.invalidRequestMessage(
                "SigilClient.signRequest",
                Self.outcome { () throws(SigilClientError) in
                    try client.signRequest(origin: "domain", destination: "example.org", uri: "/" + Self.long)
                })
            _ = Self.invalidRequestMessage(
                "SigilClient.verifyJSON",
                Self.outcome { () throws(SigilClientError) in
                    try client.verifyJSON(
                        VerifyJSONParams(server: "domain", keys: Array(repeating: ("ed25519:1", Self.key), count: 70_000), json: []))
                })
            _ = Self.invalidRequestMessage(
                "SigilClient.keyDocument", Self.outcome { () throws(SigilClientError) in try client.keyDocument(server: Self.long) })
            // Nothing was left waiting, and both still work.
            #expect(connection.pendingCount == 0)
            #expect(try connection.send(.ping(payload: [1]), timeout: 10) == .pong(payload: [1]))
            #expect(try client.ping([2]) == [2])
        }

        @Test("a string of exactly 65535 bytes is not refused by the client")
        func longestStringIsSent() throws {
            let daemon = try DaemonFixture.quickStart(limits: "  max_frame: 1MiB")
            defer { daemon.stop() }
            let client = daemon.client(timeout: 10)
            defer { client.close() }
            let uri = "/_matrix/federation/v1/media/download/" + String(repeating: "b", count: 65_535 - 38)
            #expect(uri.utf8.count == 65_535)
            let signed = try client.signRequest(origin: "domain", destination: "example.org", uri: uri)
            #expect(SpecVectors.isSpecSignature(signed, uri: uri))
        }

        @Test("a refused connection fails with the daemon's DENIED, whether the daemon closes before or after the request goes out")
        func refusedConnectionSaysWhy() throws {
            // A rule for another uid only: our connections are refused at once, with a DENIED
            // frame (request ID 0) and EOF. Sometimes the close comes before our PING is sent
            // (the send fails with EPIPE), sometimes after: the answer must be the same.
            let other = getuid() == 4_242 ? 4_243 : 4_242
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    access:
                      - uid: \(other)
                        operations: [ping]
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            var outcomes: [String: Int] = [:]
            for attempt in 0..<200 {
                let connection = try SigilConnection(path: daemon.socketPath)
                defer { connection.close() }
                // Half of the time, let the refusal arrive first.
                if attempt % 2 == 1 { usleep(2_000) }
                let result = Self.outcome { () throws(SigilClientError) in try connection.send(.ping(payload: [1]), timeout: 10) }
                switch result {
                case .failure(.rejected(let failure)) where failure.status == .denied:
                    outcomes["denied", default: 0] += 1
                default:
                    outcomes["\(result)", default: 0] += 1
                }
            }
            #expect(outcomes == ["denied": 200], "\(outcomes)")
        }

        @Test("a timed-out request leaves no waiter behind, and its late answer is ignored")
        func timedOutRequestsAreForgotten() throws {
            let daemon = try DaemonFixture.quickStart()
            defer {
                daemon.signal(SIGCONT)
                daemon.stop()
            }
            let connection = try SigilConnection(path: daemon.socketPath)
            defer { connection.close() }
            #expect(try connection.send(.ping(payload: [1]), timeout: 10) == .pong(payload: [1]))
            // A stopped daemon answers nothing until it continues.
            daemon.signal(SIGSTOP)
            #expect(eventually { Self.isStopped(pid: daemon.pid) }, "sigild did not stop")
            for index in 0..<5 {
                let late = Self.outcome { () throws(SigilClientError) in
                    try connection.send(.ping(payload: Array("late \(index)".utf8)), timeout: 0.2)
                }
                #expect(late == .failure(.timedOut(seconds: 0.2)))
                #expect(connection.pendingCount == 0)
            }
            let lateBatch = Self.outcome { () throws(SigilClientError) in
                try connection.sendBatch([.verify(VerifyParams(key: .publicKey(Self.key), message: [1], signature: []))], timeout: 0.2)
            }
            #expect(Self.outcome { () throws(SigilClientError) in try lateBatch.get().count } == .failure(.timedOut(seconds: 0.2)))
            #expect(connection.pendingCount == 0)
            // Through SigilClient too.
            let client = daemon.client(timeout: 0.2)
            defer { client.close() }
            #expect(Self.outcome { () throws(SigilClientError) in try client.ping([3]) } == .failure(.timedOut(seconds: 0.2)))
            #expect(try client.connected().pendingCount == 0)

            daemon.signal(SIGCONT)
            // The six late answers arrive first and are dropped; each new request gets its own.
            for index in 0..<3 {
                let payload = Array("next \(index)".utf8)
                #expect(try connection.send(.ping(payload: payload), timeout: 10) == .pong(payload: payload))
            }
            #expect(connection.pendingCount == 0)
            #expect(!connection.isClosed)
        }

        @Test("close() from a completion handler neither deadlocks nor loses a completion")
        func closeFromCompletionHandler() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let connection = try SigilConnection(path: daemon.socketPath)
            let count = 20
            let calls = Shared<[Int]>(Array(repeating: 0, count: count))
            let firstAnswer = Shared<FrameResult?>(nil)
            let closedInHandler = Shared<Bool>(false)
            let done = DispatchSemaphore(value: 0)
            for index in 0..<count {
                connection.submit([.ping(payload: [UInt8(index)])]) { result in
                    let first = calls.update { calls -> Bool in
                        calls[index] += 1
                        return calls.reduce(0, +) == 1
                    }
                    if first {
                        firstAnswer.update { $0 = result }
                        connection.close()  // on the reader thread
                        closedInHandler.update { $0 = connection.isClosed }
                    }
                    done.signal()
                }
            }
            for _ in 0..<count { #expect(done.wait(timeout: .now() + 10) == .success) }
            #expect(calls.current == Array(repeating: 1, count: count))
            let answer = try #require(firstAnswer.current)
            #expect(Self.outcome { () throws(SigilClientError) in try answer.get().count } == .success(1))
            #expect(closedInHandler.current)
            #expect(connection.isClosed)
            #expect(connection.pendingCount == 0)
            #expect(
                Self.isConnectionClosed(
                    Self.outcome { () throws(SigilClientError) in try connection.send(.ping(payload: []), timeout: 10) }))
            connection.close()  // again, from another thread: harmless
        }

        @Test("a connection dropped without close() is closed, from any thread, even from its own completion handler")
        func droppedConnectionsClose() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let statsClient = daemon.client(timeout: 10)
            defer { statsClient.close() }
            func openConnections() -> Int? { (try? statsObject(statsClient))?.int("connections", "open") }
            // The stats client's own connection; the fixture's start-up probe may take a moment to go.
            let baseline = 1
            #expect(eventually { openConnections() == baseline })

            // Dropped by the test's thread.
            weak var dropped: SigilConnection?
            do {
                let connection = try SigilConnection(path: daemon.socketPath)
                dropped = connection
                #expect(try connection.send(.ping(payload: [1]), timeout: 10) == .pong(payload: [1]))
                #expect(openConnections() == baseline + 1)
            }
            #expect(dropped == nil)
            #expect(eventually { openConnections() == baseline }, "the daemon must see the dropped connection close")

            // Dropped by its own completion handler, on the reader thread.
            final class Holder: @unchecked Sendable {
                var connection: SigilConnection?
            }
            weak var droppedInHandler: SigilConnection?
            let holder = Holder()
            let done = DispatchSemaphore(value: 0)
            do {
                let connection = try SigilConnection(path: daemon.socketPath)
                droppedInHandler = connection
                holder.connection = connection
                connection.submit([.ping(payload: [2])]) { _ in
                    holder.connection = nil
                    done.signal()
                }
            }
            #expect(done.wait(timeout: .now() + 10) == .success)
            #expect(eventually { droppedInHandler == nil })
            #expect(eventually { openConnections() == baseline }, "the daemon must see the connection dropped in its handler close")
        }

        @Test("threads submitting while another closes: no crash, no stray writes, exactly one completion per request")
        func submitWhileClosing() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let submitters = 4
            let perThread = 50
            let unexpected = Shared<[String]>([])
            let answered = Shared<Int>(0)
            let refused = Shared<Int>(0)
            let strayBytes = Shared<Int>(0)
            // Descriptors freed by a closing connection are reused by these socket pairs at once:
            // a write or shutdown on a stale descriptor would show up here.
            let victims = BackgroundLoop(limit: 60) {
                var pair: [Int32] = [-1, -1]
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else { return }
                defer {
                    Posix.close(pair[0])
                    Posix.close(pair[1])
                }
                var marker: UInt8 = 0x56
                var received = [UInt8](repeating: 0, count: 64)
                var extra = [UInt8](repeating: 0, count: 64)
                let sent = Glibc.send(pair[0], &marker, 1, Int32(MSG_NOSIGNAL))
                let got = Glibc.recv(pair[1], &received, received.count, Int32(MSG_DONTWAIT))
                let extraOnFirst = Glibc.recv(pair[0], &extra, extra.count, Int32(MSG_DONTWAIT))
                if sent != 1 || got != 1 || received[0] != 0x56 || extraOnFirst >= 0 {
                    strayBytes.update { $0 += 1 }
                }
            }
            defer { victims.stop() }
            for iteration in 0..<25 {
                let connection = try SigilConnection(path: daemon.socketPath)
                let calls = Shared<[Int]>(Array(repeating: 0, count: submitters * perThread))
                let finished = onThreads(submitters + 2, timeout: 60) { thread in
                    switch thread {
                    case submitters:
                        // The closer, at a different moment each iteration; in the first, only
                        // once something was answered, so that on a loaded machine both sides of
                        // the race still happen at least once.
                        if iteration == 0 { _ = eventually(timeout: 10) { answered.current > 0 } }
                        usleep(UInt32(iteration % 5) * 300)
                        connection.close()
                    case submitters + 1:
                        // Blocking sends with timeouts short enough to race their answers.
                        for _ in 0..<perThread {
                            let result = Self.outcome { () throws(SigilClientError) in
                                try connection.send(.ping(payload: [9]), timeout: 0.001)
                            }
                            switch result {
                            case .success(.pong): answered.update { $0 += 1 }
                            case .failure(.connectionClosed): refused.update { $0 += 1 }
                            case .failure(.timedOut): break
                            default: unexpected.update { $0.append("blocking send: \(result)") }
                            }
                        }
                    default:
                        for n in 0..<perThread {
                            let slot = thread * perThread + n
                            let request: Request =
                                n % 3 == 0
                                ? .signRequest(
                                    SignRequestParams(
                                        origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/media/download/\(n)"))
                                : .ping(payload: Array("\(slot)".utf8))
                            connection.submit([request]) { result in
                                calls.update { $0[slot] += 1 }
                                switch result {
                                case .success(let answers) where answers.count == 1: answered.update { $0 += 1 }
                                case .failure(.connectionClosed): refused.update { $0 += 1 }
                                default: unexpected.update { $0.append("submit: \(result)") }
                                }
                            }
                        }
                    }
                }
                #expect(finished)
                // The closer joined the reader, which failed whatever was still waiting.
                #expect(calls.current.allSatisfy { $0 == 1 }, "iteration \(iteration): completions per request \(Set(calls.current))")
                #expect(connection.isClosed)
                #expect(connection.pendingCount == 0)
                #expect(
                    Self.isConnectionClosed(
                        Self.outcome { () throws(SigilClientError) in try connection.send(.ping(payload: []), timeout: 10) }))
            }
            victims.stop()
            // Both sides of the race happened: some requests were answered, some cut off by the close.
            #expect(answered.current > 0 && refused.current > 0, "answered \(answered.current), refused \(refused.current)")
            #expect(unexpected.current.isEmpty, "\(unexpected.current.prefix(5))")
            #expect(strayBytes.current == 0, "a socket pair saw bytes or a shutdown it did not cause")
            // The daemon is unharmed.
            #expect(try daemon.client(timeout: 10).ping([5]) == [5])
        }

        @Test("after the daemon stops, requests fail with connectionClosed; SigilClient reconnects when it is back")
        func reconnectAfterRestart() throws {
            let directory = TemporaryDirectory()
            let files = ["spec.key": TestKeys.specSynapseFile]
            let first = try DaemonFixture(config: Self.quickStartConfig, files: files, directory: directory)
            let client = first.client(timeout: 10)
            defer { client.close() }
            #expect(try client.ping([1]) == [1])
            let connection = try SigilConnection(path: first.socketPath)
            defer { connection.close() }
            #expect(try connection.send(.ping(payload: [2]), timeout: 10) == .pong(payload: [2]))

            #expect(first.stop() == 0)
            #expect(eventually { connection.isClosed }, "the reader must notice the daemon closing the connection")
            #expect(
                Self.isConnectionClosed(
                    Self.outcome { () throws(SigilClientError) in try connection.send(.ping(payload: [3]), timeout: 10) }))
            #expect(connection.pendingCount == 0)
            // While the daemon is down, the client's requests fail: on its old connection, or connecting anew.
            let whileDown = Self.outcome { () throws(SigilClientError) in try client.ping([4]) }
            switch whileDown {
            case .failure(.connectionClosed), .failure(.connect): break
            default: Issue.record("while the daemon is down: \(whileDown)")
            }

            let second = try DaemonFixture(config: Self.quickStartConfig, files: files, directory: directory)
            defer { second.stop() }
            #expect(second.socketPath == first.socketPath)
            #expect(try client.ping([5]) == [5], "SigilClient must reconnect to the restarted daemon")
            #expect(try client.connected().isClosed == false)
            // The old connection stays closed; a new one works.
            #expect(connection.isClosed)
            let fresh = try SigilConnection(path: second.socketPath)
            defer { fresh.close() }
            #expect(try fresh.send(.ping(payload: [6]), timeout: 10) == .pong(payload: [6]))
        }
    }
}
