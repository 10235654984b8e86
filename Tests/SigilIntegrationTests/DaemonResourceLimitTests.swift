import Foundation
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// Running out of file descriptors, and the connection cap: the daemon refuses what it cannot
/// hold, does not spin on a listener it cannot accept from, and serves again once room is back.
extension DaemonEndToEnd {
    @Suite("resource limits")
    struct ResourceLimits {
        /// CPU time (user + system) of a process, in clock ticks, from /proc/PID/stat.
        static func cpuTicks(_ pid: Int32) -> Int {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = text.lastIndex(of: ")")
            else { return 0 }
            let fields = text[text.index(after: close)...].split(separator: " ")
            // After the command: state is field 3, utime 14 and stime 15 (1-based over the whole line).
            return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
        }

        /// Connects and pings once: the socket if answered, nil if the daemon refused it (its
        /// refusal frame with request ID 0 then EOF, a reset because our ping was unread, or a
        /// broken pipe if it was closed first).
        static func connectAndPing(_ path: String) throws -> RawSocket? {
            let socket = try RawSocket(path: path)
            do {
                try socket.send(frameBytes(.ping(payload: [1]), id: 1))
                guard let frame = try socket.readFrame() else { return nil }
                if frame.header.requestID == 0 {
                    #expect(frame.header.status == WireStatus.busy.rawValue, "a refusal for a cap is BUSY")
                    #expect(try socket.readFrame() == nil, "nothing follows a refusal but EOF")
                    return nil
                }
                #expect(frame.header.status == 0)
                return socket
            } catch let error as PosixError where [ECONNRESET, EPIPE].contains(error.errno) {
                return nil
            }
        }

        @Test(
            "out of descriptors (EMFILE): excess connections are dropped at once, the loop does not spin, service resumes",
            .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit"), "needs prlimit (util-linux)"))
        func outOfDescriptors() throws {
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
                files: ["spec.key": TestKeys.specSynapseFile], prefix: ["/usr/bin/prlimit", "--nofile=40:40"])
            defer { daemon.stop() }
            var held: [RawSocket] = []
            var dropped = 0
            for _ in 0..<80 {
                if let socket = try Self.connectAndPing(daemon.socketPath) { held.append(socket) } else { dropped += 1 }
            }
            #expect(!held.isEmpty)
            #expect(dropped > 0, "80 connections fit in 40 descriptors?")
            #expect(daemon.waitForLog("out of file descriptors"), "\(daemon.log)")
            // While the listener still has connections it cannot take, the loop must sleep.
            let pending = try (0..<10).map { _ in try RawSocket(path: daemon.socketPath) }
            let before = Self.cpuTicks(daemon.pid)
            usleep(1_000_000)
            let spent = Self.cpuTicks(daemon.pid) - before
            #expect(spent < 20, "the daemon used \(spent) ticks of CPU in a second with its listener backed up")
            _ = pending
            held.removeAll()
            // Room again: a new client is served.
            #expect(eventually(timeout: 5) { (try? SigilConnection(path: daemon.socketPath).send(.ping(payload: [9]))) == .pong(payload: [9]) })
        }

        @Test("max_connections: connections over the cap are closed at once and counted; the rest are served")
        func connectionCap() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    limits:
                      max_connections: 5
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            var kept: [SigilConnection] = []
            for _ in 0..<100 where kept.count < 5 {
                let connection = try SigilConnection(path: daemon.socketPath)
                if (try? connection.send(.ping(payload: [1]))) == .pong(payload: [1]) {
                    kept.append(connection)
                } else {
                    usleep(20_000)
                }
            }
            try #require(kept.count == 5)
            #expect(try Self.connectAndPing(daemon.socketPath) == nil, "a sixth connection was served")
            #expect(daemon.waitForLog("refused a connection on listener main from uid \(getuid())"), "\(daemon.log)")
            #expect(daemon.log.contains("the listener has 5 connections open (max_connections)"), "\(daemon.log)")
            for connection in kept { connection.close() }
            #expect(eventually(timeout: 5) { (try? SigilConnection(path: daemon.socketPath).send(.ping(payload: [3]))) == .pong(payload: [3]) })
            let stats = try JSONValue(parsing: try daemon.client().stats()).objectValue
            #expect(stats?["connections"]?.objectValue?["refused"]?.integerValue ?? 0 >= 1)
        }
    }
}
