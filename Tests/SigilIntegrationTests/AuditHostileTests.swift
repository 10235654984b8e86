import Foundation
import Glibc
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// The audit trail against hostile local callers and planted files (the 2026-12-04 review): its
/// memory and file stay bounded under floods of huge uris, a flood of refusals cannot push
/// another caller's signatures out of it, and a file or FIFO someone else planted at its path is
/// refused. Each test fails on the daemon before those fixes.
extension DaemonEndToEnd {
    @Suite("audit trail against hostile callers and planted files")
    struct AuditHostile {
        static var canSwitchUsers: Bool { HostileCallers.canSwitchUsers }

        /// Sends SIGN_REQUEST batches pipelined for `seconds` (replies drained by a thread);
        /// prints how many items it sent.
        static let flooder = """
            import socket, struct, sys, threading, time
            path, seconds, origin, uri_length, per_frame = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
            def s16(b): return struct.pack(">H", len(b)) + b
            prefix = "/_matrix/federation/v1/media/download/"
            uri = (prefix + "A" * max(0, uri_length - len(prefix))).encode()
            item = s16(origin.encode()) + s16(b"example.org") + s16(b"GET") + s16(uri) + struct.pack(">I", 0)
            body = struct.pack(">H", per_frame) + b"".join(struct.pack(">I", len(item)) + item for _ in range(per_frame))
            frame = struct.pack(">IBBBBI", 8 + len(body), 1, 0x10, 1, 0, 1) + body
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            def drain():
                try:
                    while s.recv(1 << 20): pass
                except OSError: pass
            threading.Thread(target=drain, daemon=True).start()
            end, sent = time.time() + seconds, 0
            try:
                while time.time() < end:
                    s.sendall(frame)
                    sent += per_frame
            except OSError: pass
            print(sent, flush=True)
            """

        /// Signs batches of 10 one after another for `seconds`; prints how many items were signed.
        static let signer = """
            import socket, struct, sys, time
            path, seconds = sys.argv[1], float(sys.argv[2])
            def s16(b): return struct.pack(">H", len(b)) + b
            item = s16(b"domain") + s16(b"example.org") + s16(b"GET") + s16(b"/_matrix/federation/v1/media/download/a") + struct.pack(">I", 0)
            body = struct.pack(">H", 10) + b"".join(struct.pack(">I", len(item)) + item for _ in range(10))
            frame = struct.pack(">IBBBBI", 8 + len(body), 1, 0x10, 1, 0, 1) + body
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            def exactly(n):
                data = b""
                while len(data) < n:
                    chunk = s.recv(n - len(data))
                    if not chunk: raise EOFError
                    data += chunk
                return data
            end, signed = time.time() + seconds, 0
            while time.time() < end:
                s.sendall(frame)
                length, _, _, _, status, _ = struct.unpack(">IBBBBI", exactly(12))
                reply = exactly(length - 8)
                if status != 0: continue
                count, offset = struct.unpack(">H", reply[:2])[0], 2
                for _ in range(count):
                    item_status, item_length = reply[offset], struct.unpack(">I", reply[offset + 1:offset + 5])[0]
                    signed += item_status == 0
                    offset += 5 + item_length
            print(signed, flush=True)
            """

        /// A field of /proc/PID/status, in kB.
        static func procStatus(_ pid: Int32, _ field: String) -> Int {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
            for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
                return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
            }
            return 0
        }

        static func config(audit: String, limits: String = "") -> String {
            """
            listen:
              - name: mmr
                path: {dir}/s.sock
                mode: "0666"
                access:
                  - uid: 4000
                    operations: [sign_request]
                    servers: [domain]
                    uri_prefixes: [/_matrix/federation/v1/media/download/]
                  - uid: 4001
                    operations: [sign_request]
                    servers: [domain]
                  - uid: 0
                    operations: [stats]
            servers:
              domain:
                keys: [{dir}/spec.key]
            memory_lock: warn
            limits:
              frame_timeout: 5s
            \(limits)
            \(audit)
            """
        }

        static func fileSize(_ path: String) -> Int {
            var status = stat()
            return stat(path, &status) == 0 ? Int(status.st_size) : 0
        }

        @Test(
            "signed and refused requests with 60 KB uris: the daemon's memory and each record stay bounded, the uri is cut and marked",
            .enabled(if: canSwitchUsers, "needs root, setpriv and python3 to connect as another user"))
        func largeURIFlood() throws {
            let directory = TemporaryDirectory()
            let daemon = try DaemonFixture(
                config: Self.config(audit: "audit:\n  file: {dir}/audit.jsonl", limits: "  max_frame: 1MiB"),
                files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            let before = Self.procStatus(daemon.pid, "VmRSS")
            // Signed (a granted prefix) and refused (a server not granted), 15 items of 60,000
            // bytes to a frame, from two connections each.
            var floods: [ChildProcess] = []
            for origin in ["domain", "domain", "elsewhere.example", "elsewhere.example"] {
                floods.append(
                    try HostileCallers.python(
                        Self.flooder, asUID: 4000, [daemon.socketPath, "4", origin, "60000", "15"], directory: directory))
            }
            var peak = 0
            for _ in 0..<40 {
                usleep(100_000)
                peak = max(peak, Self.procStatus(daemon.pid, "VmRSS"))
            }
            let sent = floods.map { Int($0.finish(timeout: 30).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 }
            #expect(sent.allSatisfy { $0 > 0 }, "\(sent)")
            peak = max(peak, Self.procStatus(daemon.pid, "VmHWM"))
            let path = directory.file("audit.jsonl")
            let admin = daemon.client()
            var audit: [String: Any] = [:]
            _ = eventually(timeout: 10) {
                audit = (try? statsObject(admin))?["audit"] as? [String: Any] ?? [:]
                let records = audit["records"] as? Int ?? -1
                usleep(200_000)
                return records == ((try? statsObject(admin))?["audit"] as? [String: Any])?["records"] as? Int
            }
            // The queue holds at most 16 MiB of records; with connection buffers and the
            // writer's chunk the daemon stays far below 150 MiB of growth (before: gigabytes).
            // (Not under a sanitizer, whose allocator keeps freed memory resident.)
            if Sanitizer.none { #expect(peak - before < 150 * 1024, "RSS grew from \(before) kB to \(peak) kB") }
            let records = AuditTrail.records(path)
            let lines = (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n").count ?? 0
            // Each record is bounded: the uri is cut at 2,048 bytes and marked, with the whole
            // uri's length and digest.
            #expect(Self.fileSize(path) <= max(lines, 1) * 3000, "\(Self.fileSize(path)) bytes in \(lines) lines")
            let prefix = "/_matrix/federation/v1/media/download/"
            let whole = prefix + String(repeating: "A", count: 60000 - prefix.utf8.count)
            let digest = Array(whole.utf8).withUnsafeBytes { SHA256.hex($0) }
            let signed = records.filter { $0["outcome"] as? String == "ok" }
            #expect(!signed.isEmpty)
            let uncut = records.filter { record in
                let uri = record["uri"] as? String ?? ""
                return
                    !(uri.utf8.count == 2048 && whole.hasPrefix(uri) && record["uri_cut"] as? Bool == true
                    && record["uri_length"] as? Int == 60000 && record["uri_sha256"] as? String == digest)
            }
            let withURI = records.filter { $0["op"] as? String == "sign_request" }
            #expect(
                uncut.filter { $0["op"] as? String == "sign_request" }.isEmpty,
                "\(uncut.count) of \(withURI.count) records not cut as expected")
            // The refusals were recorded within their budget, the rest summarised.
            let denied = records.filter { $0["outcome"] as? String == "denied" && $0["op"] as? String == "sign_request" }
            #expect(denied.count <= 200, "\(denied.count) refused requests recorded one by one (100 per 10 s window)")
            #expect((audit["denied_unrecorded"] as? Int ?? 0) > 0, "\(audit)")
        }

        @Test(
            "one uid's flood of refusals cannot push another uid's signatures out of the trail; the refusals are summarised",
            .enabled(if: canSwitchUsers, "needs root, setpriv and python3 to connect as another user"))
        func refusalsCannotCrowdOutSignatures() throws {
            let directory = TemporaryDirectory()
            let daemon = try DaemonFixture(
                config: Self.config(audit: "audit:\n  file: {dir}/audit.jsonl\n  queue: 8192"),
                files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            var floods: [ChildProcess] = []
            for _ in 0..<3 {
                floods.append(
                    try HostileCallers.python(
                        Self.flooder, asUID: 4000, [daemon.socketPath, "5", "elsewhere.example", "40", "256"], directory: directory))
            }
            let signer = try HostileCallers.python(Self.signer, asUID: 4001, [daemon.socketPath, "5"], directory: directory)
            let result = signer.finish(timeout: 60)
            let signed = try #require(Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "\(result.output)")
            for flood in floods { _ = flood.finish(timeout: 30) }
            #expect(signed > 0)
            let path = directory.file("audit.jsonl")
            let admin = daemon.client()
            // Every refusal is a record or counted in a summary (written when the 10 s window
            // ends): as many as STATS counted for uid 4000.
            var records: [[String: Any]] = []
            var figures = (refused: 0, oneByOne: 0, inSummaries: 0)
            let accounted = eventually(timeout: 25) {
                guard let stats = try? statsObject(admin), let refused = stats.int("listeners", "mmr", "refusals_by_uid", "4000") else {
                    return false
                }
                records = AuditTrail.records(path)
                let oneByOne = records.filter { $0["uid"] as? Int == 4000 && $0["op"] as? String == "sign_request" }.count
                let inSummaries = records.filter { $0["uid"] as? Int == 4000 && $0["op"] as? String == "denied_unrecorded" }
                    .reduce(0) { $0 + ($1["count"] as? Int ?? 0) }
                figures = (refused, oneByOne, inSummaries)
                return oneByOne + inSummaries == refused
            }
            #expect(accounted, "\(figures.oneByOne) records + \(figures.inSummaries) summarised != \(figures.refused) refused")
            #expect(figures.oneByOne > 0 && figures.oneByOne <= 200, "\(figures.oneByOne) refusals recorded one by one (100 per window)")
            let ok = records.filter { $0["uid"] as? Int == 4001 && $0["outcome"] as? String == "ok" }.count
            #expect(ok == signed, "uid 4001 signed \(signed) times; \(ok) records")
            let audit = try statsObject(admin)["audit"] as? [String: Any] ?? [:]
            #expect(audit["dropped"] as? Int == 0, "\(audit)")
            #expect(audit["denied_unrecorded"] as? Int == figures.inSummaries, "\(audit)")
        }

        /// Starts a daemon whose audit file is `relative` in `directory`, expecting it not to start.
        static func refusedAtStart(_ directory: TemporaryDirectory, _ relative: String) throws -> String {
            let daemon = try DaemonFixture(
                config: AuditTrail.config("audit:\n  file: {dir}/\(relative)"), files: ["spec.key": TestKeys.specSynapseFile],
                directory: directory, waitForReady: false)
            defer { daemon.stop() }
            #expect(daemon.waitForExit(timeout: 10) == 1, "sigild did not stop: \(daemon.log)")
            return daemon.log
        }

        @Test(
            "an audit file or directory another user controls, or that is not a regular file, stops the start, naming the path and why",
            .enabled(if: Privileges.isRoot, "needs root to plant files as another user"))
        func plantedAtStart() throws {
            // A 0666 file another uid created in a directory it owns (the review's case).
            let planted = TemporaryDirectory()
            mkdir(planted.file("logs"), 0o755)
            chown(planted.file("logs"), 4000, 4000)
            let file = planted.file("logs/audit.jsonl")
            close(open(file, O_CREAT | O_WRONLY, 0o666))
            chmod(file, 0o666)
            chown(file, 4000, 4000)
            var log = try Self.refusedAtStart(planted, "logs/audit.jsonl")
            #expect(log.contains("audit: \(planted.file("logs")): owned by uid 4000"), "\(log)")

            // The same file in a directory of ours: the file's owner is named.
            let foreign = TemporaryDirectory()
            close(open(foreign.file("audit.jsonl"), O_CREAT | O_WRONLY, 0o600))
            chown(foreign.file("audit.jsonl"), 4000, 4000)
            log = try Self.refusedAtStart(foreign, "audit.jsonl")
            #expect(log.contains("audit: \(foreign.file("audit.jsonl")): owned by uid 4000"), "\(log)")

            // Ours, but anyone may write it.
            let open0666 = TemporaryDirectory()
            close(open(open0666.file("audit.jsonl"), O_CREAT | O_WRONLY, 0o600))
            chmod(open0666.file("audit.jsonl"), 0o666)
            log = try Self.refusedAtStart(open0666, "audit.jsonl")
            #expect(log.contains("audit: \(open0666.file("audit.jsonl")): writable by every user"), "\(log)")

            // Group-writable.
            let groupWritable = TemporaryDirectory()
            close(open(groupWritable.file("audit.jsonl"), O_CREAT | O_WRONLY, 0o600))
            chmod(groupWritable.file("audit.jsonl"), 0o620)
            chown(groupWritable.file("audit.jsonl"), 0, 4000)
            log = try Self.refusedAtStart(groupWritable, "audit.jsonl")
            #expect(log.contains("audit: \(groupWritable.file("audit.jsonl")): writable by group 4000"), "\(log)")

            // A directory everyone may write, without the sticky bit.
            let shared = TemporaryDirectory()
            mkdir(shared.file("logs"), 0o777)
            chmod(shared.file("logs"), 0o777)
            log = try Self.refusedAtStart(shared, "logs/audit.jsonl")
            #expect(log.contains("audit: \(shared.file("logs")): writable by other users without the sticky bit"), "\(log)")

            // A FIFO: refused at once, not waited on.
            let fifo = TemporaryDirectory()
            mkfifo(fifo.file("audit.jsonl"), 0o600)
            log = try Self.refusedAtStart(fifo, "audit.jsonl")
            #expect(log.contains("audit: \(fifo.file("audit.jsonl")): a FIFO, not a regular file"), "\(log)")
        }

        @Test(
            "a root-owned sticky directory others may write is accepted; the file is created 0600",
            .enabled(if: Privileges.isRoot, "needs root"))
        func stickyDirectoryAccepted() throws {
            let directory = TemporaryDirectory()
            mkdir(directory.file("logs"), 0o777)
            chmod(directory.file("logs"), 0o1777)
            let daemon = try DaemonFixture(
                config: AuditTrail.config("audit:\n  file: {dir}/logs/audit.jsonl"), files: ["spec.key": TestKeys.specSynapseFile],
                directory: directory)
            defer { daemon.stop() }
            _ = try daemon.client().signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            let path = directory.file("logs/audit.jsonl")
            #expect(eventually(timeout: 5) { AuditTrail.records(path).count == 1 })
            var status = stat()
            #expect(stat(path, &status) == 0 && status.st_mode & 0o7777 == 0o600, "mode \(String(status.st_mode & 0o7777, radix: 8))")
        }

        @Test(
            "SIGHUP with a FIFO or another user's file planted at the path: refused and logged, records go on to the old file, SIGTERM ends it",
            .enabled(if: Privileges.isRoot, "needs root to plant files as another user"))
        func plantedAtReopen() throws {
            let directory = TemporaryDirectory()
            let daemon = try DaemonFixture(
                config: AuditTrail.config("audit:\n  file: {dir}/audit.jsonl"), files: ["spec.key": TestKeys.specSynapseFile],
                directory: directory)
            defer { daemon.stop() }
            let client = daemon.client()
            let path = directory.file("audit.jsonl")
            _ = try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            #expect(eventually(timeout: 5) { AuditTrail.records(path).count == 1 })

            // Another user's 0666 file.
            #expect(rename(path, path + ".1") == 0)
            close(open(path, O_CREAT | O_WRONLY, 0o600))
            chmod(path, 0o666)
            chown(path, 4000, 4000)
            daemon.signal(SIGHUP)
            #expect(daemon.waitForLog("audit: cannot reopen \(path): \(path): owned by uid 4000"), "\(daemon.log)")
            _ = try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI + "1")
            #expect(eventually(timeout: 5) { AuditTrail.records(path + ".1").count == 2 })
            #expect(Self.fileSize(path) == 0)

            // A FIFO.
            unlink(path)
            mkfifo(path, 0o666)
            daemon.signal(SIGHUP)
            #expect(daemon.waitForLog("audit: cannot reopen \(path): \(path): a FIFO, not a regular file"), "\(daemon.log)")
            _ = try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI + "2")
            #expect(eventually(timeout: 5) { AuditTrail.records(path + ".1").count == 3 })
            daemon.signal(SIGTERM)
            #expect(daemon.waitForExit(timeout: 15) == 0, "sigild did not finish after SIGTERM: \(daemon.log)")
        }
    }
}
