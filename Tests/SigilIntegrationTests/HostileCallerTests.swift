import Foundation
import Glibc
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Synchronization
import Testing

/// Other local users attacking a running sigild (issue 9): a flood of connections, connections
/// that never read, refusal floods, descriptor exhaustion, and rate limits. Each test starts the
/// real daemon and fails on the daemon before those defences.
extension DaemonEndToEnd {
    @Suite("hostile local callers")
    struct HostileCallers {
        static var canSwitchUsers: Bool { Privileges.isRoot && Privileges.hasSetpriv && python != nil }
        /// Debian's python3 (a pyenv or venv one on PATH may live where other users cannot reach).
        static let python: String? = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : nil

        /// Opens `count` connections to `path`, holds them `hold` seconds, then prints how many
        /// connected and how many the daemon had closed by then (EOF or reset).
        static let holder = """
            import socket, sys, time
            path, count, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
            held, failed = [], 0
            for _ in range(count):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path)
                    held.append(s)
                except OSError:
                    failed += 1
            time.sleep(hold)
            # Per held socket: still open, or closed; and the status of the one frame a refused
            # connection gets first (request ID 0: 7 DENIED, 6 BUSY).
            closed, statuses = 0, {}
            for s in held:
                s.setblocking(False)
                data = b""
                try:
                    while True:
                        chunk = s.recv(4096)
                        if chunk == b"":
                            closed += 1
                            break
                        data += chunk
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
                if len(data) >= 12 and data[8:12] == bytes(4):
                    statuses[data[7]] = statuses.get(data[7], 0) + 1
            print(len(held), failed, closed, statuses.get(7, 0), statuses.get(6, 0), flush=True)
            """

        /// Connects and disconnects as fast as it can for `seconds`; prints how many times.
        static let reconnector = """
            import socket, sys, time
            path, seconds = sys.argv[1], float(sys.argv[2])
            end, count = time.time() + seconds, 0
            while time.time() < end:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path)
                    s.send(bytes([0, 0, 0, 8, 1, 2, 0, 0, 0, 0, 0, 1]))
                    s.recv(64)
                except OSError:
                    pass
                s.close()
                count += 1
            print(count, flush=True)
            """

        static func python(_ script: String, asUID uid: UInt32, groups: String? = nil, _ arguments: [String], directory: TemporaryDirectory)
            throws -> ChildProcess
        {
            let path = directory.write("script-\(UInt32.random(in: 0...UInt32.max)).py", script, mode: 0o644)
            let identity = ["--reuid=\(uid)", "--regid=\(uid)"] + (groups.map { ["--groups=\($0)"] } ?? ["--clear-groups"])
            return try ChildProcess(Privileges.setpriv, identity + [python!, path] + arguments)
        }

        static func twoListeners(limits: String = "", mmrExtra: String = "") -> String {
            """
            listen:
              - name: mmr
                path: {dir}/s.sock
                mode: "0666"
            \(mmrExtra)
                access:
                  - uid: 4000
                    operations: [sign_request]
                  - uid: 0
                    operations: [hello, ping, sign_request]
              - name: admin
                path: {dir}/a.sock
                mode: "0600"
                access:
                  - uid: 0
                    operations: [ping, stats, list_keys]
            servers:
              domain:
                keys: [{dir}/spec.key]
            limits:
              frame_timeout: 5s
            \(limits)
            """
        }

        @Test(
            "thousands of connections from a uid no rule can match are refused at once; root's admin PING and an MMR HELLO still work",
            .enabled(if: canSwitchUsers, "needs root, setpriv and python3 to connect as another user"))
        func noRuleFlood() throws {
            let directory = TemporaryDirectory()
            Privileges.openDirectory(directory)
            let daemon = try DaemonFixture(config: Self.twoListeners(), files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            let flood = try Self.python(Self.holder, asUID: Privileges.nobody, [daemon.socketPath, "3000", "3"], directory: directory)
            usleep(1_500_000)
            // While the flood holds its sockets: the operator and MMR are served.
            let admin = SigilClient(socketPath: directory.file("a.sock"), timeout: 5)
            defer { admin.close() }
            #expect(try admin.ping([1]) == [1])
            let mmr = SigilClient(socketPath: daemon.socketPath, timeout: 5)
            defer { mmr.close() }
            #expect(try mmr.hello().operations.contains(.signRequest))
            let result = flood.finish(timeout: 30)
            let figures = result.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            try #require(figures.count == 5, "\(result.output)")
            #expect(figures[2] == figures[0], "the daemon kept \(figures[0] - figures[2]) of uid 65534's connections open")
            // Each was told why before EOF: DENIED, with request ID 0.
            #expect(figures[3] == figures[0], "\(figures[3]) of \(figures[0]) refused connections got a DENIED frame")
            let stats = try statsObject(admin)
            #expect((stats.int("connections", "refused") ?? 0) >= figures[0])
            #expect(stats.int("connections", "open") ?? 99 <= 2)
        }

        @Test(
            "a uid a rule matches is capped per listener; the admin listener keeps its reserve when the daemon-wide cap is reached",
            .enabled(if: canSwitchUsers, "needs root, setpriv and python3 to connect as another user"))
        func capsAndReserve() throws {
            let directory = TemporaryDirectory()
            Privileges.openDirectory(directory)
            let daemon = try DaemonFixture(
                config: Self.twoListeners(limits: "  max_connections: 60\n  max_connections_per_uid: 40"),
                files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            // uid 4000 (MMR's rule) opens 100 connections and holds them.
            let worker = try Self.python(Self.holder, asUID: 4000, [daemon.socketPath, "100", "3"], directory: directory)
            usleep(1_500_000)
            // Root fills what is left of the daemon-wide cap on the same listener.
            var rootConnections: [SigilConnection] = []
            for _ in 0..<60 {
                guard let connection = try? SigilConnection(path: daemon.socketPath),
                    (try? connection.send(.ping(payload: [1]))) == .pong(payload: [1])
                else { continue }
                rootConnections.append(connection)
            }
            // The admin listener's reserve (8 by default, here 60/8 = 7) is still there.
            let admin = SigilClient(socketPath: directory.file("a.sock"), timeout: 5)
            defer { admin.close() }
            #expect(try admin.ping([2]) == [2])
            let stats = try statsObject(admin)
            let open = try #require(stats.int("connections", "open"))
            #expect(open <= 60, "\(open) connections open with max_connections 60")
            let result = worker.finish(timeout: 30)
            let figures = result.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            try #require(figures.count == 5, "\(result.output)")
            #expect(figures[0] - figures[2] == 40, "uid 4000 kept \(figures[0] - figures[2]) connections; its cap is 40")
            #expect(figures[4] == figures[2], "\(figures[4]) of \(figures[2]) connections past the cap got a BUSY frame")
            #expect(rootConnections.count + 40 <= 60 - 7, "root took \(rootConnections.count) connections past the admin reserve")
            #expect(daemon.log.contains("max_connections_per_uid"), "\(daemon.log)")
        }

        @Test(
            "sigild raises its soft descriptor limit to the hard limit",
            .enabled(if: Privileges.hasPrlimit, "needs prlimit (util-linux)"))
        func descriptorLimitRaised() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    """,
                files: ["spec.key": TestKeys.specSynapseFile], prefix: [Privileges.prlimit, "--nofile=512:8192"])
            defer { daemon.stop() }
            let limits = try String(contentsOfFile: "/proc/\(daemon.pid)/limits", encoding: .utf8)
            let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") } ?? ""
            let numbers = line.split(separator: " ").compactMap { Int($0) }
            #expect(numbers == [8192, 8192], "\(line)")
            #expect(daemon.log.contains("up to 8192 descriptors"), "\(daemon.log)")
        }

        @Test(
            "many connections that never read: the buffered-memory budget closes the largest, RSS stays bounded, the admin socket answers",
            .enabled(
                if: Sanitizer.none,
                "a sanitizer's allocator (ASan's quarantine, TSan's shadow memory) keeps memory resident, so RSS says nothing about the budget"
            ))
        func nonReaders() throws {
            let directory = TemporaryDirectory()
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        mode: "0600"
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    workers: 1
                    limits:
                      max_pending_output: 1MiB
                      max_buffered: 16MiB
                      max_buffered_per_uid: 8MiB
                    """,
                files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            let observer = daemon.client()
            let rssBefore = try #require(try statsObject(observer).int("rss_bytes"))
            // 200 connections, each pipelining 4 MB of PINGs and reading nothing.
            let payload = [UInt8](repeating: 0x5A, count: 60_000)
            var flood: [UInt8] = []
            for id in 1...70 { flood += frameBytes(.ping(payload: payload), id: UInt32(id)) }
            let sockets = try (0..<200).map { _ in try RawSocket(path: daemon.socketPath) }
            let done = Atomic<Int>(0)
            let bytes = flood
            for socket in sockets {
                let fd = socket.fd
                Thread.detachNewThread {
                    bytes.withUnsafeBytes { raw in
                        var offset = 0
                        let deadline = Date().addingTimeInterval(8)
                        while offset < raw.count && Date() < deadline {
                            let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                            if n > 0 {
                                offset += n
                            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                                usleep(2000)
                            } else {
                                break
                            }
                        }
                    }
                    done.add(1, ordering: .relaxed)
                }
            }
            #expect(eventually(timeout: 15) { done.load(ordering: .relaxed) == sockets.count })
            let stats = try statsObject(observer)
            let rss = try #require(stats.int("rss_bytes"))
            #expect(rss - rssBefore < 48 << 20, "RSS grew from \(rssBefore) to \(rss) bytes with 200 non-readers (budget 16 MiB)")
            #expect((stats.int("buffered_bytes") ?? .max) <= 17 << 20, "\(stats.object)")
            #expect((stats.int("connections", "closed_for_memory") ?? 0) > 0, "no connection was closed for the budget")
            #expect(daemon.log.contains("limits.max_buffered"), "\(daemon.log)")
            // A reader is still served at once.
            let before = Date()
            #expect(try observer.ping([1]) == [1])
            #expect(Date().timeIntervalSince(before) < 2)
            _ = sockets
        }

        @Test(
            "a uid reconnecting after every refusal cannot flood the log: lines per uid and in all are bounded, with a summary",
            .enabled(if: canSwitchUsers, "needs root, setpriv and python3 to connect as another user"))
        func refusalLogFlood() throws {
            let directory = TemporaryDirectory()
            Privileges.openDirectory(directory)
            let daemon = try DaemonFixture(config: Self.twoListeners(), files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            // Two attackers at once: one matching no rule, one denied PING on every connection.
            let stranger = try Self.python(Self.reconnector, asUID: Privileges.nobody, [daemon.socketPath, "4"], directory: directory)
            let worker = try Self.python(Self.reconnector, asUID: 4000, [daemon.socketPath, "4"], directory: directory)
            let strangerRuns = Int(stranger.finish(timeout: 30).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            let workerRuns = Int(worker.finish(timeout: 30).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            #expect(strangerRuns > 200 && workerRuns > 200, "\(strangerRuns) and \(workerRuns) attempts")
            #expect(daemon.waitForLog("more time(s) for uid 65534 in the last 10 s", timeout: 15), "\(daemon.log)")
            #expect(daemon.waitForLog("more time(s) for uid 4000 in the last 10 s", timeout: 15), "\(daemon.log)")
            let lines = daemon.log.split(separator: "\n").filter { $0.contains("refused") }
            // 5 per uid per window, at most 30 in all, plus one summary per uid per window.
            #expect(lines.count <= 2 * (5 + 1) * 2, "\(lines.count) refusal lines for \(strangerRuns + workerRuns) refusals")
            let stats = try statsObject(SigilClient(socketPath: directory.file("a.sock"), timeout: 5))
            #expect((stats.int("connections", "refused") ?? 0) >= strangerRuns)
            #expect((stats.int("denied") ?? 0) >= workerRuns)
        }

        @Test(
            "out of descriptors with no spare to drop connections with: accepting pauses on a timer instead of spinning, then resumes",
            .enabled(if: Privileges.hasPrlimit, "needs prlimit (util-linux)"),
            .enabled(
                if: Sanitizer.none,
                "a sanitizer's runtime opens descriptors of its own, so the test cannot make the last one the spare"))
        func descriptorsExhaustedWithoutReserve() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    workers: 1
                    """,
                files: ["spec.key": TestKeys.specSynapseFile], prefix: [Privileges.prlimit, "--nofile=64:64"])
            defer { daemon.stop() }
            // The spare descriptor is the last one sigild opened. With the soft limit lowered to
            // its number, freeing it frees nothing usable: the next connection finds no
            // descriptor, and neither does the spare's reopening.
            let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/fd").compactMap { Int($0) }
            let spare = try #require(descriptors.max())
            let lowered = try run(Privileges.prlimit, ["--pid", "\(daemon.pid)", "--nofile=\(spare):64"])
            try #require(lowered.status == 0, "\(lowered.output)")
            let waiting = try (0..<5).map { _ in try RawSocket(path: daemon.socketPath) }
            #expect(daemon.waitForLog("not accepting for"), "\(daemon.log)")
            let before = ResourceLimits.cpuTicks(daemon.pid)
            usleep(1_000_000)
            let spent = ResourceLimits.cpuTicks(daemon.pid) - before
            #expect(spent < 20, "the daemon used \(spent) ticks of CPU in a second with its listener backed up")
            // Descriptors to spare again: the timer finds them, accepting resumes, and the clients
            // that waited are served.
            let raised = try run(Privileges.prlimit, ["--pid", "\(daemon.pid)", "--nofile=64:64"])
            try #require(raised.status == 0, "\(raised.output)")
            #expect(daemon.waitForLog("file descriptors available again: accepting", timeout: 5), "\(daemon.log)")
            for (index, socket) in waiting.enumerated() {
                try socket.send(frameBytes(.ping(payload: [UInt8(index)]), id: UInt32(index)))
                let answer = try #require(try socket.readFrame())
                #expect(answer.header.status == 0)
            }
        }

        @Test("a per-uid rate limit on a listener answers BUSY past its burst, counted in STATS")
        func rateLimit() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        rate_limit: { per_second: 1, burst: 5 }
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let client = daemon.client()
            var signed = 0
            var busy = 0
            for index in 0..<10 {
                do {
                    _ = try client.signRequest(
                        origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/media/download/\(index)")
                    signed += 1
                } catch {
                    #expect(error.status == .busy, "\(error)")
                    if case .rejected(let failure) = error {
                        #expect(failure.message.contains("rate limit for uid \(getuid())"), "\(failure.message)")
                    }
                    busy += 1
                }
            }
            #expect(signed == 5 && busy == 5, "\(signed) signed, \(busy) busy")
            // Other operations are not limited.
            #expect(try client.ping([1]) == [1])
            let stats = try statsObject(client)
            #expect(stats.int("rate_limited") == 5)
            #expect(stats.int("listeners", "main", "rate_limited") == 5)
        }
    }
}
