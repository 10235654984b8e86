import Logging
import SigilCore
import SigilPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The record of what was signed: one record per signature made, and one per signing request the
/// access rules refused (docs/operations.md, "Audit trail"). Off unless configured.
///
/// Signing never waits for it. A loop appends a compact binary record to its own bounded queue
/// under an uncontended lock; a writer thread takes the queues every 50 ms, formats the records
/// and writes them (JSON lines to a file, or journal entries). A full queue drops the new record
/// and counts it; STATS reports records written and dropped.
public final class AuditTrail: Sendable {
    enum Outcome: UInt8 {
        case ok = 0
        case denied = 1

        var name: String { self == .ok ? "ok" : "denied" }
    }

    private struct Queue {
        var bytes: [UInt8] = []
        var records = 0
    }

    struct Figures {
        var written: UInt64 = 0
        var dropped: UInt64 = 0
    }

    let configuration: Configuration.Audit
    private final class LockedQueue: Sendable {
        let mutex = Locked(Queue())
    }

    private let queues: [LockedQueue]
    private let perQueue: Int
    private let listenerNames: [String]
    private let counts = Locked(Figures())
    private let reopenRequested = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    private let writer = Locked<PosixThread?>(nil)
    private let logger: Logger

    /// Opens the destination now, so a daemon whose audit file cannot be opened does not start.
    init(configuration: Configuration.Audit, loops: Int, listenerNames: [String], logger: Logger) throws(LoadError) {
        self.configuration = configuration
        queues = (0..<max(loops, 1)).map { _ in LockedQueue() }
        perQueue = max(configuration.queue / max(loops, 1), 1)
        self.listenerNames = listenerNames
        self.logger = logger
        let sink: AuditSink
        do {
            sink = try AuditSink(configuration.destination)
        } catch {
            throw LoadError("audit: \(error)", location: "audit destination")
        }
        let thread: PosixThread
        do {
            thread = try PosixThread(name: "sigild-audit") { [self] in self.run(sink) }
        } catch {
            throw LoadError("audit: cannot start the writer thread: \(error)")
        }
        writer.withLock { $0 = thread }
    }

    var figures: Figures { counts.withLock { $0 } }

    /// Asks the writer to reopen the file (after logrotate moved it), on SIGHUP.
    func reopen() { reopenRequested.store(true, ordering: .releasing) }

    /// Writes what is queued and stops the writer.
    func stop() {
        stopRequested.store(true, ordering: .releasing)
        let thread = writer.withLock { thread -> PosixThread? in
            defer { thread = nil }
            return thread
        }
        thread?.join()
    }

    /// Queues one record. `request`: SIGN_REQUEST's fields (nil for SIGN_JSON and SIGN_RAW).
    func record(loop: Int, op: Opcode, caller: Caller, server: String, keyID: String, request: SignRequestFields?, outcome: Outcome = .ok) {
        let queue = queues[loop % queues.count]
        let accepted = queue.mutex.withLock { queue -> Bool in
            guard queue.records < perQueue else { return false }
            var w = WireWriter(capacity: 0)
            swap(&w.bytes, &queue.bytes)
            w.u64(UInt64(bitPattern: Posix.wallClockMilliseconds()))
            w.u8(op.rawValue)
            w.u8(outcome.rawValue)
            w.u16(UInt16(clamping: caller.listener.index))
            w.u32(caller.credentials.uid)
            w.u32(caller.credentials.gid)
            w.u32(UInt32(bitPattern: caller.credentials.pid))
            w.string(server)
            w.string(keyID)
            if let request {
                w.u8(1)
                w.string(request.method)
                w.string(request.destination)
                w.string(request.uri)
            } else {
                w.u8(0)
            }
            swap(&w.bytes, &queue.bytes)
            queue.records += 1
            return true
        }
        if !accepted { counts.withLock { $0.dropped &+= 1 } }
    }

    // MARK: The writer thread

    private func run(_ initial: AuditSink) {
        var sink = initial
        var batch: [UInt8] = []
        while true {
            let stopping = stopRequested.load(ordering: .acquiring)
            if reopenRequested.exchange(false, ordering: .acquiring) {
                do {
                    let fresh = try AuditSink(configuration.destination)
                    sink.close()
                    sink = fresh
                    logger.info("audit: reopened \(configuration.destination)")
                } catch {
                    logger.error("audit: cannot reopen \(configuration.destination): \(error); still writing to the old file")
                }
            }
            var written: UInt64 = 0
            var failed: UInt64 = 0
            for queue in queues {
                let (bytes, count) = queue.mutex.withLock { queue -> ([UInt8], Int) in
                    defer {
                        queue.bytes = []
                        queue.records = 0
                    }
                    return (queue.bytes, queue.records)
                }
                guard count > 0 else { continue }
                batch.removeAll(keepingCapacity: true)
                let records = decode(bytes)
                for record in records {
                    switch sink.kind {
                    case .file: record.appendJSONLine(to: &batch, uriForm: configuration.uri)
                    case .journal:
                        if sink.sendJournalEntry(record.journalEntry(uriForm: configuration.uri)) { written &+= 1 } else { failed &+= 1 }
                    }
                }
                if case .file = sink.kind {
                    if sink.write(batch) { written &+= UInt64(records.count) } else { failed &+= UInt64(records.count) }
                }
            }
            if written > 0 || failed > 0 {
                counts.withLock {
                    $0.written &+= written
                    $0.dropped &+= failed
                }
            }
            if stopping { break }
            Posix.sleep(milliseconds: 50)
        }
        sink.close()
    }

    private func decode(_ bytes: [UInt8]) -> [AuditRecord] {
        var records: [AuditRecord] = []
        bytes.withUnsafeBytes { raw in
            var r = WireReader(raw)
            while r.remaining > 0 {
                guard let time = try? r.u64("time"), let op = try? r.u8("op"), let outcome = try? r.u8("outcome"),
                    let listener = try? r.u16("listener"), let uid = try? r.u32("uid"), let gid = try? r.u32("gid"),
                    let pid = try? r.u32("pid"), let server = try? r.rawStringBytes("server"), let keyID = try? r.rawStringBytes("key_id"),
                    let hasRequest = try? r.u8("request")
                else { return }
                var method: [UInt8]?
                var destination: [UInt8]?
                var uri: [UInt8]?
                if hasRequest == 1 {
                    guard let m = try? r.rawStringBytes("method"), let d = try? r.rawStringBytes("destination"),
                        let u = try? r.rawStringBytes("uri")
                    else { return }
                    method = Array(m)
                    destination = Array(d)
                    uri = Array(u)
                }
                records.append(
                    AuditRecord(
                        unixMilliseconds: Int64(bitPattern: time), op: Opcode(rawValue: op)?.name ?? "unknown",
                        outcome: Outcome(rawValue: outcome)?.name ?? "unknown",
                        listener: Int(listener) < listenerNames.count ? listenerNames[Int(listener)] : "?", uid: uid, gid: gid,
                        pid: Int32(bitPattern: pid), server: Array(server), keyID: Array(keyID), method: method, destination: destination,
                        uri: uri))
            }
        }
        return records
    }
}

/// One audit record, decoded by the writer.
struct AuditRecord {
    let unixMilliseconds: Int64
    let op: String
    let outcome: String
    let listener: String
    let uid: UInt32
    let gid: UInt32
    let pid: Int32
    let server: [UInt8]
    let keyID: [UInt8]
    let method: [UInt8]?
    let destination: [UInt8]?
    let uri: [UInt8]?

    /// `{"destination":…,"gid":…,…}`: canonical JSON (sorted keys), one line.
    func appendJSONLine(to out: inout [UInt8], uriForm: Configuration.Audit.URIForm) {
        var object = JSONObject()
        object["time"] = .string(LineLogHandler.timestamp(milliseconds: unixMilliseconds))
        object["ts"] = .integer(unixMilliseconds)
        object["op"] = .string(op)
        object["outcome"] = .string(outcome)
        object["listener"] = .string(listener)
        object["uid"] = .integer(Int64(uid))
        object["gid"] = .integer(Int64(gid))
        object["pid"] = .integer(Int64(pid))
        object["server"] = .string(String(decoding: server, as: UTF8.self))
        object["key_id"] = .string(String(decoding: keyID, as: UTF8.self))
        if let method { object["method"] = .string(String(decoding: method, as: UTF8.self)) }
        if let destination { object["destination"] = .string(String(decoding: destination, as: UTF8.self)) }
        if let uri {
            switch uriForm {
            case .full: object["uri"] = .string(String(decoding: uri, as: UTF8.self))
            case .digest: object["uri_sha256"] = .string(uri.withUnsafeBytes { SHA256.hex($0) })
            }
        }
        out.append(contentsOf: JSONValue.object(object).canonicalBytes)
        out.append(UInt8(ascii: "\n"))
    }

    /// Journal fields (native protocol: `NAME=value` lines; no value here holds a newline, since
    /// every field is ASCII without control characters, checked before signing).
    func journalEntry(uriForm: Configuration.Audit.URIForm) -> [UInt8] {
        var line: [UInt8] = []
        appendJSONLine(to: &line, uriForm: uriForm)
        var fields: [(String, [UInt8])] = [
            ("MESSAGE", Array(line.dropLast())), ("PRIORITY", Array("6".utf8)), ("SYSLOG_IDENTIFIER", Array("sigild-audit".utf8)),
            ("SIGIL_AUDIT", Array("1".utf8)), ("SIGIL_OP", Array(op.utf8)), ("SIGIL_OUTCOME", Array(outcome.utf8)),
            ("SIGIL_LISTENER", Array(listener.utf8)), ("SIGIL_UID", Array(String(uid).utf8)), ("SIGIL_GID", Array(String(gid).utf8)),
            ("SIGIL_PID", Array(String(pid).utf8)), ("SIGIL_SERVER", server), ("SIGIL_KEY_ID", keyID),
        ]
        if let method { fields.append(("SIGIL_METHOD", method)) }
        if let destination { fields.append(("SIGIL_DESTINATION", destination)) }
        if let uri {
            switch uriForm {
            case .full: fields.append(("SIGIL_URI", uri))
            case .digest: fields.append(("SIGIL_URI_SHA256", Array(uri.withUnsafeBytes { SHA256.hex($0) }.utf8)))
            }
        }
        var out: [UInt8] = []
        for (name, value) in fields {
            out.append(contentsOf: name.utf8)
            out.append(UInt8(ascii: "="))
            out.append(contentsOf: value.map { $0 == 0x0A ? 0x20 : $0 })
            out.append(0x0A)
        }
        return out
    }
}

/// Where audit records go.
struct AuditSink {
    enum Kind {
        case file(Int32)
        /// The journal's socket path, and our datagram socket.
        case journal(String, Int32)
    }

    let kind: Kind

    init(_ destination: Configuration.Audit.Destination) throws(PosixError) {
        switch destination {
        case .file(let path):
            // O_NOFOLLOW: a symlink planted at the path must not redirect records (or our writes).
            let fd = try Posix.open(path, flags: O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NOCTTY, mode: 0o640)
            let status = try Posix.fstat(fd)
            guard status.isRegularFile else {
                Posix.close(fd)
                throw PosixError("\(path): not a regular file", errno: EINVAL)
            }
            kind = .file(fd)
        case .journal(let socket):
            kind = .journal(socket, try Posix.socket(type: Int32(SOCK_DGRAM.rawValue)))
        }
    }

    func write(_ bytes: [UInt8]) -> Bool {
        guard case .file(let fd) = kind, !bytes.isEmpty else { return true }
        return (try? bytes.withUnsafeBytes { try Posix.writeAll(fd, $0) }) != nil
    }

    func sendJournalEntry(_ entry: [UInt8]) -> Bool {
        guard case .journal(let socket, let fd) = kind else { return false }
        return (try? Posix.sendDatagram(entry, to: socket, through: fd)) != nil
    }

    func close() {
        switch kind {
        case .file(let fd), .journal(_, let fd): Posix.close(fd)
        }
    }
}

extension Configuration.Audit.Destination: CustomStringConvertible {
    public var description: String {
        switch self {
        case .file(let path): return path
        case .journal(let socket): return "the journal (\(socket))"
        }
    }
}
