import Logging
import SigilCore
import SigilPosix
import Synchronization

/// The record of what was signed: one record per signature made, and one per signing request the
/// access rules refused (docs/operations.md, "Audit trail"). Off unless configured.
///
/// Signing never waits for it. A loop appends a compact binary record to its own queue under an
/// uncontended lock; a writer thread takes the queues every 50 ms, formats the records and writes
/// them (JSON lines to a file in chunks of at most 64 KiB, or journal entries). What waits is
/// bounded in records and in bytes (including what the writer holds), and each record is bounded:
/// a uri past 2 KiB is cut (with the whole one's length and SHA-256), a digest is taken when the
/// record is queued. Past a bound the new record is dropped and counted. Refusals go through a
/// per-uid budget (`AuditDenials`) and may use only half of a queue, so they cannot crowd out
/// signatures.
public final class AuditTrail: Sendable {
    enum Outcome: UInt8 {
        case ok = 0
        case denied = 1

        var name: String { self == .ok ? "ok" : "denied" }
    }

    /// The longest uri a record keeps.
    static let maxURIBytes = 2048
    /// The longest server name a record keeps (a refused SIGN_JSON or SIGN_RAW may name anything).
    static let maxServerBytes = 300
    /// More than any one record takes: the fixed fields, a cut server and uri, a key ID (at most
    /// 255 bytes), a method (32), a destination (261), a length and a digest.
    static let maxRecordBytes = 4096
    /// Formatted lines are written when this much is buffered.
    static let chunkBytes = 64 << 10

    private enum Flag {
        static let request: UInt8 = 1
        static let serverCut: UInt8 = 2
        static let uriCut: UInt8 = 4
        static let uriDigest: UInt8 = 8
    }

    private struct Queue {
        var bytes: [UInt8] = []
        var records = 0
        /// What the writer took from this queue and has not finished writing.
        var writingBytes = 0
        var writingRecords = 0
    }

    struct Figures {
        var written: UInt64 = 0
        var dropped: UInt64 = 0
        var deniedUnrecorded: UInt64 = 0
    }

    let configuration: Configuration.Audit
    private final class LockedQueue: Sendable {
        let mutex = Locked(Queue())
    }

    private let queues: [LockedQueue]
    private let perQueue: Int
    private let perQueueBytes: Int
    private let denials: AuditDenials
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
        perQueueBytes = max(configuration.queueBytes / max(loops, 1), Self.maxRecordBytes * 2)
        denials = AuditDenials(now: Posix.monotonicNanoseconds() / 1_000_000)
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
            sink.close()
            throw LoadError("audit: cannot start the writer thread: \(error)")
        }
        writer.withLock { $0 = thread }
    }

    var figures: Figures {
        var figures = counts.withLock { $0 }
        figures.deniedUnrecorded = denials.unrecordedTotal
        return figures
    }

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
        let uid = caller.credentials.uid
        if outcome == .denied && !denials.admit(uid: uid) { return }
        // Digests are taken here, outside the lock, so the queue never holds a long uri.
        var digest: [UInt8] = []
        if let request, configuration.uri == .digest || request.uri.count > Self.maxURIBytes {
            SHA256.appendDigest(of: request.uri, to: &digest)
        }
        // Refusals may fill only half a queue: the other half is kept for signatures.
        let share = outcome == .denied ? 2 : 1
        let queue = queues[loop % queues.count]
        let accepted = queue.mutex.withLock { queue -> Bool in
            guard (queue.records + queue.writingRecords) * share < perQueue,
                (queue.bytes.count + queue.writingBytes + Self.maxRecordBytes) * share <= perQueueBytes
            else { return false }
            var w = WireWriter(capacity: 0)
            swap(&w.bytes, &queue.bytes)
            defer { swap(&w.bytes, &queue.bytes) }
            w.u64(UInt64(bitPattern: Posix.wallClockMilliseconds()))
            w.u8(op.rawValue)
            w.u8(outcome.rawValue)
            w.u16(UInt16(clamping: caller.listener.index))
            w.u32(uid)
            w.u32(caller.credentials.gid)
            w.u32(UInt32(bitPattern: caller.credentials.pid))
            var flags: UInt8 = 0
            let serverBytes = Self.cut(server, at: Self.maxServerBytes)
            if serverBytes != nil { flags |= Flag.serverCut }
            if let request {
                flags |= Flag.request
                if configuration.uri == .digest {
                    flags |= Flag.uriDigest
                } else if request.uri.count > Self.maxURIBytes {
                    flags |= Flag.uriCut
                }
            }
            w.u8(flags)
            if let serverBytes { serverBytes.withUnsafeBytes { w.string($0) } } else { w.string(server) }
            w.string(keyID)
            if let request {
                w.string(request.method)
                w.string(request.destination)
                if flags & Flag.uriDigest != 0 {
                    w.bytes.append(contentsOf: digest)
                } else if flags & Flag.uriCut != 0 {
                    w.string(UnsafeRawBufferPointer(rebasing: request.uri[..<Self.maxURIBytes]))
                    w.u32(UInt32(request.uri.count))
                    w.bytes.append(contentsOf: digest)
                } else {
                    w.string(request.uri)
                }
            }
            queue.records += 1
            return true
        }
        if !accepted {
            if outcome == .denied { denials.countUnrecorded(uid: uid) } else { counts.withLock { $0.dropped &+= 1 } }
        }
    }

    /// The first `limit` bytes of `text`, ending on a whole character, if it is longer.
    private static func cut(_ text: String, at limit: Int) -> [UInt8]? {
        let utf8 = text.utf8
        guard utf8.count > limit else { return nil }
        var bytes = Array(utf8.prefix(limit))
        while let last = bytes.last, last & 0xC0 == 0x80 { bytes.removeLast() }
        if let last = bytes.last, last >= 0xC0 { bytes.removeLast() }
        return bytes
    }

    // MARK: The writer thread

    private func run(_ initial: AuditSink) {
        var sink = initial
        var chunk: [UInt8] = []
        chunk.reserveCapacity(Self.chunkBytes + Self.maxRecordBytes * 2)
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
            for queue in queues {
                let (bytes, count) = queue.mutex.withLock { queue -> ([UInt8], Int) in
                    defer {
                        queue.writingBytes = queue.bytes.count
                        queue.writingRecords = queue.records
                        queue.bytes = []
                        queue.records = 0
                    }
                    return (queue.bytes, queue.records)
                }
                guard count > 0 else { continue }
                var output = Output(sink: sink, chunk: chunk)
                decode(bytes) { record in
                    output.add(
                        json: { record.appendJSONLine(to: &$0) }, journal: { record.journalEntry() })
                }
                output.flush()
                chunk = output.chunk
                counts.withLock {
                    $0.written &+= output.written
                    $0.dropped &+= output.failed
                }
                queue.mutex.withLock { queue in
                    queue.writingBytes = 0
                    queue.writingRecords = 0
                }
            }
            let now = Posix.monotonicNanoseconds() / 1_000_000
            if let ended = denials.endWindow(now: now, force: stopping), !ended.isEmpty {
                writeSummaries(ended, sink: sink, chunk: &chunk)
            }
            if stopping { break }
            Posix.sleep(milliseconds: 50)
        }
        sink.close()
    }

    private func writeSummaries(_ ended: AuditDenials.Unrecorded, sink: AuditSink, chunk: inout [UInt8]) {
        let time = Posix.wallClockMilliseconds()
        var summaries = ended.perUID.sorted { $0.key < $1.key }.map {
            AuditSummary(unixMilliseconds: time, uid: $0.key, count: $0.value, windowMilliseconds: denials.budget.window)
        }
        if ended.otherUIDs > 0 {
            summaries.append(
                AuditSummary(unixMilliseconds: time, uid: nil, count: ended.otherUIDs, windowMilliseconds: denials.budget.window))
        }
        var output = Output(sink: sink, chunk: chunk)
        for summary in summaries { output.add(json: { summary.appendJSONLine(to: &$0) }, journal: { summary.journalEntry() }) }
        output.flush()
        chunk = output.chunk
        counts.withLock {
            $0.written &+= output.written
            $0.dropped &+= output.failed
        }
    }

    /// Formats records into a bounded chunk and writes it whenever it is full.
    private struct Output {
        let sink: AuditSink
        var chunk: [UInt8]
        var inChunk: UInt64 = 0
        var written: UInt64 = 0
        var failed: UInt64 = 0

        init(sink: AuditSink, chunk: [UInt8]) {
            self.sink = sink
            self.chunk = chunk
            self.chunk.removeAll(keepingCapacity: true)
        }

        mutating func add(json: (inout [UInt8]) -> Void, journal: () -> [UInt8]) {
            switch sink.kind {
            case .file:
                json(&chunk)
                inChunk &+= 1
                if chunk.count >= AuditTrail.chunkBytes { flush() }
            case .journal:
                if sink.sendJournalEntry(journal()) { written &+= 1 } else { failed &+= 1 }
            }
        }

        mutating func flush() {
            guard inChunk > 0 else { return }
            if sink.write(chunk) { written &+= inChunk } else { failed &+= inChunk }
            chunk.removeAll(keepingCapacity: true)
            inChunk = 0
        }
    }

    private func decode(_ bytes: [UInt8], _ body: (AuditRecord) -> Void) {
        bytes.withUnsafeBytes { raw in
            var r = WireReader(raw)
            while r.remaining > 0 {
                guard let time = try? r.u64("time"), let op = try? r.u8("op"), let outcome = try? r.u8("outcome"),
                    let listener = try? r.u16("listener"), let uid = try? r.u32("uid"), let gid = try? r.u32("gid"),
                    let pid = try? r.u32("pid"), let flags = try? r.u8("flags"), let server = try? r.rawStringBytes("server"),
                    let keyID = try? r.rawStringBytes("key_id")
                else { return }
                var method: [UInt8]?
                var destination: [UInt8]?
                var uri: AuditRecord.URI?
                if flags & Flag.request != 0 {
                    guard let m = try? r.rawStringBytes("method"), let d = try? r.rawStringBytes("destination") else { return }
                    method = Array(m)
                    destination = Array(d)
                    if flags & Flag.uriDigest != 0 {
                        guard let digest = try? r.fixed(32, "uri_sha256") else { return }
                        uri = .digest(Array(digest))
                    } else if flags & Flag.uriCut != 0 {
                        guard let u = try? r.rawStringBytes("uri"), let length = try? r.u32("uri_length"),
                            let digest = try? r.fixed(32, "uri_sha256")
                        else { return }
                        uri = .cut(Array(u), length: Int(length), digest: Array(digest))
                    } else {
                        guard let u = try? r.rawStringBytes("uri") else { return }
                        uri = .full(Array(u))
                    }
                }
                body(
                    AuditRecord(
                        unixMilliseconds: Int64(bitPattern: time), op: Opcode(rawValue: op)?.name ?? "unknown",
                        outcome: Outcome(rawValue: outcome)?.name ?? "unknown",
                        listener: Int(listener) < listenerNames.count ? listenerNames[Int(listener)] : "?", uid: uid, gid: gid,
                        pid: Int32(bitPattern: pid), server: Array(server), serverCut: flags & Flag.serverCut != 0, keyID: Array(keyID),
                        method: method, destination: destination, uri: uri))
            }
        }
    }
}
