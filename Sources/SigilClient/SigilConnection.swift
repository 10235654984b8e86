import Dispatch
public import SigilCore
import SigilPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One connection to sigild, pipelined: any number of threads or tasks may send at once; a
/// reader thread matches answers to requests by request ID, in whatever order they complete.
/// Plain POSIX sockets: no libuv, no event loop of the caller's.
///
/// Completion handlers run on the reader thread (or, for requests refused before they are sent,
/// on the calling thread). They may call `close()`, but must not block waiting for another answer
/// on the same connection: the reader cannot read it while the handler runs.
///
/// Lifetime: the reader thread does not keep the connection alive. Dropping the last reference
/// closes it exactly as `close()` does: requests still waiting fail with `.connectionClosed`, so
/// keep a reference for as long as you expect answers (`send` and `sendBatch` hold one while
/// they wait). Call `close()` to close it at a known point.
public final class SigilConnection: Sendable {
    /// The answer to one frame: one result, or one per batch item.
    public typealias Completion = @Sendable (Result<[Result<Response, WireFailure>], SigilClientError>) -> Void

    public let path: String
    /// The socket and the reader's state. The reader thread holds the core, not this object, so
    /// that dropping this object can close the connection.
    private let core: Core

    /// Connects to the socket at `path` (`@name` for the abstract namespace).
    /// `maxResponseLength`: replies above it are a protocol violation. The default covers the
    /// largest reply any configuration can send (PROTOCOL.md, "Reply sizes").
    public init(path: String, maxResponseLength: UInt32 = 128 << 20) throws(SigilClientError) {
        self.path = path
        Posix.ignoreSIGPIPE()
        let fd: Int32
        do {
            fd = try Posix.socket(type: Int32(SOCK_STREAM.rawValue))
        } catch {
            throw .connect(path: path, error)
        }
        do {
            try Posix.connect(fd, path: path)
        } catch {
            Posix.close(fd)
            throw .connect(path: path, error)
        }
        // From here on the core owns the descriptor and closes it, even if the reader cannot start.
        core = Core(fd: fd, maxResponseLength: maxResponseLength)
        do {
            try core.startReader()
        } catch {
            throw .connect(path: path, error)
        }
    }

    deinit {
        core.close()
    }

    public var isClosed: Bool { core.isClosed }

    /// The number of requests sent on this connection and still awaiting an answer (for
    /// monitoring and tests; a request whose `send` timed out is no longer counted).
    public var pendingCount: Int { core.pendingCount }

    /// Closes the connection; requests still waiting fail with `.connectionClosed`.
    ///
    /// From any thread but the reader, this returns once the reader thread has ended and the
    /// socket is closed. From a completion handler (on the reader thread) it returns at once;
    /// the reader closes the socket as it ends, right after the handler returns.
    public func close() {
        core.close()
    }

    // MARK: Sending

    /// Sends one frame (a single request, or a batch of requests sharing an opcode) and calls
    /// `completion` from the reader thread when the answer arrives. `completion` is called
    /// exactly once: with the answer, or with the error that stopped it.
    public func submit(_ requests: [Request], batch: Bool? = nil, completion: @escaping Completion) {
        _ = core.submit(requests, batch: batch, completion: completion)
    }

    /// Sends and waits for one request's answer.
    public func send(_ request: Request, timeout: Double? = 30) throws(SigilClientError) -> Response {
        let results = try sendFrame([request], batch: false, timeout: timeout)
        guard results.count == 1 else { throw .protocolViolation("expected one answer, got \(results.count)") }
        return try results[0].mapError { SigilClientError.rejected($0) }.get()
    }

    /// Sends a batch frame and waits; each item has its own result.
    public func sendBatch(_ requests: [Request], timeout: Double? = 30) throws(SigilClientError) -> [Result<Response, WireFailure>] {
        try sendFrame(requests, batch: true, timeout: timeout)
    }

    private func sendFrame(_ requests: [Request], batch: Bool, timeout: Double?) throws(SigilClientError) -> [Result<Response, WireFailure>]
    {
        let semaphore = DispatchSemaphore(value: 0)
        let box = Locked<Result<[Result<Response, WireFailure>], SigilClientError>?>(nil)
        let id = core.submit(requests, batch: batch) { result in
            box.withLock { $0 = result }
            semaphore.signal()
        }
        if let timeout, let id {
            if semaphore.wait(timeout: .now() + timeout) == .timedOut {
                // Drop the waiter, so a late answer is ignored and nothing is left behind.
                if core.removeWaiter(id) { throw .timedOut(seconds: timeout) }
                // The answer (or a failure) took the waiter first; its completion is running now.
                semaphore.wait()
            }
        } else {
            semaphore.wait()
        }
        return try box.withLock { $0! }.get()
    }

    /// Sends and awaits one request's answer.
    public func send(_ request: Request) async throws(SigilClientError) -> Response {
        let results: Result<[Result<Response, WireFailure>], SigilClientError> = await withCheckedContinuation { continuation in
            submit([request], batch: false) { continuation.resume(returning: $0) }
        }
        let answers = try results.get()
        guard answers.count == 1 else { throw .protocolViolation("expected one answer, got \(answers.count)") }
        return try answers[0].mapError { SigilClientError.rejected($0) }.get()
    }

    /// Sends a batch and awaits its per-item results.
    public func sendBatch(_ requests: [Request]) async throws(SigilClientError) -> [Result<Response, WireFailure>] {
        let results: Result<[Result<Response, WireFailure>], SigilClientError> = await withCheckedContinuation { continuation in
            submit(requests, batch: true) { continuation.resume(returning: $0) }
        }
        return try results.get()
    }

    // MARK: Checking requests

    /// Why `request` cannot be encoded, or nil. Strings are length-prefixed with 16 bits and so
    /// are counts; the encoder traps on anything longer, so every such field is checked here.
    /// (`bytes` fields have 32-bit lengths: 4 GiB, beyond any frame the daemon accepts.)
    static func encodingProblem(_ request: Request) -> String? {
        var check = FieldCheck(operation: request.opcode)
        switch request {
        case .hello(let clientName, let page):
            check.string("client_name", clientName)
            if let page { check.string("cursor", page.cursor) }
        case .listKeys(let cursor):
            if let cursor { check.string("cursor", cursor) }
        case .ping, .stats:
            break
        case .signRequest(let p):
            check.string("origin", p.origin)
            check.string("destination", p.destination)
            check.string("method", p.method)
            check.string("uri", p.uri)
        case .signJSON(let server, _):
            check.string("server_name", server)
        case .signRaw(let server, let keyID, _):
            check.string("server_name", server)
            check.string("key_id", keyID ?? "")
        case .verify(let p):
            if case .keyID(let server, let id) = p.key {
                check.string("server_name", server)
                check.string("key_id", id)
            }
        case .verifyJSON(let p):
            check.string("server_name", p.server)
            check.count("key_count", p.keys.count)
            for key in p.keys { check.string("key_id", key.id) }
        case .verifyRequest(let p):
            check.count("header_count", p.authorizations.count)
            for header in p.authorizations { check.string("authorization", header) }
            check.string("method", p.method)
            check.string("uri", p.uri)
            check.string("destination", p.destination)
            check.count("key_count", p.keys.count)
            for key in p.keys {
                check.string("origin", key.server)
                check.string("key_id", key.id)
            }
        case .keyDocument(let server, _):
            check.string("server_name", server)
        }
        return check.problem
    }

    /// The first field over its 16-bit limit, named as docs/PROTOCOL.md names it.
    private struct FieldCheck {
        let operation: Opcode
        private(set) var problem: String?

        init(operation: Opcode) { self.operation = operation }

        mutating func string(_ field: String, _ value: String) {
            let length = value.utf8.count
            if problem == nil, length > Int(UInt16.max) {
                problem = "\(operation.name)'s \(field) is \(length) bytes; a string field holds at most 65535"
            }
        }

        mutating func count(_ field: String, _ value: Int) {
            if problem == nil, value > Int(UInt16.max) {
                problem = "\(operation.name)'s \(field) is \(value); at most 65535"
            }
        }
    }
}

/// The socket, the waiters and the reader thread of one connection.
///
/// The descriptor is closed exactly once, under both locks, and only when nothing can use it:
/// - senders write while holding `writeLock` and only if `descriptorOpen` (read under it);
/// - `shutdown` (to wake the reader and blocked senders) happens under `state`'s lock, only if
///   `descriptorOpen`;
/// - the reader thread uses it without a lock, so it is closed only once the reader's loop has
///   ended: by `close()` after joining the reader, by the reader itself as it ends when nobody is
///   joining it (then it also detaches itself), or by `deinit` as a last resort (the reader holds
///   a reference to the core, so `deinit` runs only after it ended).
private final class Core: Sendable {
    struct Waiter {
        var opcode: Opcode
        var batch: Bool
        var completion: SigilConnection.Completion
    }

    struct State {
        var waiters: [UInt32: Waiter] = [:]
        var closedReason: String?
        /// The daemon's reason, when it said why it is closing the connection (a frame with
        /// request ID 0: a refused connection, or a frame it could not read).
        var closedFailure: WireFailure?
        /// The reader's handle, until a closer takes it to join the thread or the reader, ending
        /// with nobody to join it, detaches itself.
        var reader: PosixThread?
        /// The reader's thread while its loop runs, so `close()` on it does not join itself.
        var readerThread: pthread_t?
        /// From the reader's start until its loop (and its last completion call) has ended.
        var readerRunning = false
        /// Whether `fd` is still open; set to false only while also holding `writeLock`.
        var descriptorOpen = true
    }

    let fd: Int32
    let maxResponseLength: UInt32
    let state = Locked(State())
    /// Held while writing a frame, and while closing the descriptor.
    let writeLock = Lock()
    let nextID = Atomic<UInt32>(1)

    init(fd: Int32, maxResponseLength: UInt32) {
        self.fd = fd
        self.maxResponseLength = maxResponseLength
    }

    deinit {
        // Only the reader and the SigilConnection refer to the core: both are gone.
        if state.withLock({ $0.descriptorOpen }) { Posix.close(fd) }
    }

    func startReader() throws(PosixError) {
        // Under the lock, so the reader cannot reach its end before its handle is stored.
        try state.withLock { (state) throws(PosixError) in
            state.reader = try PosixThread(name: "sigil-client") { [self] in readLoop() }
            state.readerRunning = true
        }
    }

    var isClosed: Bool { state.withLock { $0.closedReason != nil } }

    var pendingCount: Int { state.withLock { $0.waiters.count } }

    private static func isReaderThread(_ state: State) -> Bool {
        guard let reader = state.readerThread else { return false }
        return pthread_equal(reader, pthread_self()) != 0
    }

    func close() {
        enum Next { case join(PosixThread), closeDescriptor, nothing }
        let next = state.withLock { state -> Next in
            if state.closedReason == nil { state.closedReason = "closed by the client" }
            // Wakes the reader, and any sender blocked on a full socket. Under the lock, so the
            // descriptor cannot be closed (and its number reused) in between.
            if state.descriptorOpen { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
            // On the reader thread: the reader closes the descriptor when its loop ends.
            if Self.isReaderThread(state) { return .nothing }
            if let thread = state.reader {
                state.reader = nil
                return .join(thread)
            }
            // No reader running: it never started, or it ended and closed the descriptor itself.
            // Otherwise another closer is joining it and will close the descriptor.
            return state.readerRunning ? .nothing : .closeDescriptor
        }
        switch next {
        case .join(let thread):
            thread.join()
            closeDescriptor()
        case .closeDescriptor:
            closeDescriptor()
        case .nothing:
            break
        }
    }

    /// Closes the descriptor once; only when the reader's loop has ended.
    private func closeDescriptor() {
        writeLock.withLock {
            state.withLock { state in
                guard state.descriptorOpen else { return }
                state.descriptorOpen = false
                Posix.close(fd)
            }
        }
    }

    /// Marks the connection closed and wakes the reader, which then fails whatever is waiting.
    private func abort(_ reason: String) {
        state.withLock { state in
            if state.closedReason == nil { state.closedReason = reason }
            if state.descriptorOpen { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    // MARK: Sending

    /// Checks, registers and sends a frame; the request ID if a waiter was registered (the
    /// completion may already have run), nil if the completion was called without sending.
    func submit(_ requests: [Request], batch: Bool?, completion: @escaping SigilConnection.Completion) -> UInt32? {
        guard let first = requests.first else {
            completion(.failure(.invalidRequest("no request")))
            return nil
        }
        let asBatch = batch ?? (requests.count > 1)
        guard asBatch || requests.count == 1 else {
            completion(.failure(.invalidRequest("several requests need a batch frame")))
            return nil
        }
        if asBatch {
            guard first.opcode.acceptsBatch, requests.allSatisfy({ $0.opcode == first.opcode }) else {
                completion(.failure(.invalidRequest("a batch holds requests of one batchable operation")))
                return nil
            }
            guard requests.count <= Int(UInt16.max) else {
                completion(.failure(.invalidRequest("a batch holds at most 65535 items")))
                return nil
            }
        }
        for (index, request) in requests.enumerated() {
            if let problem = SigilConnection.encodingProblem(request) {
                completion(.failure(.invalidRequest(asBatch ? "batch item \(index): \(problem)" : problem)))
                return nil
            }
        }
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        var writer = WireWriter(capacity: 128)
        if asBatch {
            Request.encodeBatch(requests, requestID: id, into: &writer)
        } else {
            requests[0].encodeFrame(requestID: id, into: &writer)
        }
        let closed = state.withLock { state -> SigilClientError? in
            if let reason = state.closedReason { return state.closedFailure.map { .rejected($0) } ?? .connectionClosed(reason) }
            state.waiters[id] = Waiter(opcode: first.opcode, batch: asBatch, completion: completion)
            return nil
        }
        if let closed {
            completion(.failure(closed))
            return nil
        }
        let sent: Result<Void, PosixError>? = writeLock.withLock {
            guard state.withLock({ $0.descriptorOpen }) else { return nil }
            return writer.bytes.withUnsafeBytes { bytes in
                Result { () throws(PosixError) in try Posix.sendAll(fd, bytes) }
            }
        }
        switch sent {
        case .success:
            break
        case .failure(let error) where (error.errno == EPIPE || error.errno == ECONNRESET) && state.withLock({ $0.readerRunning }):
            // The daemon has closed the connection, perhaps after saying why (a refused
            // connection gets a DENIED or BUSY frame first). The reader reads what is left, then
            // fails this request with that reason, or as closed if there was none.
            break
        case .failure(let error):
            // A frame may be half-written: the stream cannot be trusted any more.
            abort("send failed: \(error)")
            fail(id: id, .connectionClosed("send failed: \(error)"))
        case nil:
            fail(id: id, .connectionClosed(state.withLock { $0.closedReason } ?? "closed by the client"))
        }
        return id
    }

    /// Removes a waiter that no longer wants its answer; false if its completion was already
    /// taken (the answer or a failure arrived in the meantime).
    func removeWaiter(_ id: UInt32) -> Bool {
        state.withLock { $0.waiters.removeValue(forKey: id) } != nil
    }

    private func fail(id: UInt32, _ error: SigilClientError) {
        let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.completion(.failure(error))
    }

    // MARK: Receiving

    func readLoop() {
        state.withLock { $0.readerThread = pthread_self() }
        var decoder = FrameDecoder(maxLength: maxResponseLength)
        var chunk = [UInt8](repeating: 0, count: 65536)
        var reason = "the daemon closed the connection"
        reading: while true {
            let count: Int
            do {
                // A blocking recv, not poll-then-recv: asleep in recv, this thread is also woken
                // when the daemon reads our request, which costs the daemon a little when we
                // pipeline but, on VMs, keeps our vCPU from halting before the reply, and one
                // request at a time (the usual use) came back about 20 µs sooner that way.
                count = try chunk.withUnsafeMutableBytes { raw in Result { () throws(PosixError) in try Posix.recv(fd, into: raw) } }.get()
            } catch {
                reason = "receive failed: \(error)"
                break
            }
            if count == 0 { break }
            decoder.append(chunk[..<count])
            while true {
                let next: FrameDecoder.Next
                do {
                    next = try decoder.next()
                } catch {
                    reason = "bad frame from the daemon: \(error)"
                    break reading
                }
                guard case .frame(let header, let bodyRange) = next else { break }
                deliver(header, body: bodyRange, decoder: decoder)
            }
        }
        // The descriptor is still open: nobody closes it while this loop runs. Shutting it down
        // tells the daemon, and fails any sender blocked on a full socket instead of leaving it
        // holding the write lock.
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        let (final, failure, waiting) = state.withLock { state -> (String, WireFailure?, [SigilConnection.Completion]) in
            if state.closedReason == nil { state.closedReason = reason }
            defer { state.waiters.removeAll() }
            return (state.closedReason!, state.closedFailure, state.waiters.values.map(\.completion))
        }
        // Requests the daemon closed on with a reason (DENIED, BUSY, FRAME_TOO_LARGE) fail
        // with that reason, so a caller can tell "refused" from "gone".
        let error: SigilClientError = failure.map { .rejected($0) } ?? .connectionClosed(final)
        for completion in waiting { completion(.failure(error)) }
        let unjoined = state.withLock { state -> Bool in
            state.readerRunning = false
            state.readerThread = nil
            guard state.reader != nil else { return false }  // a closer is joining; it closes the descriptor
            state.reader = nil
            return true
        }
        if unjoined {
            // Nobody will join this thread: release it when it ends, and release the descriptor now.
            pthread_detach(pthread_self())
            closeDescriptor()
        }
    }

    private func deliver(_ header: FrameHeader, body: Range<Int>, decoder: FrameDecoder) {
        guard let waiter = state.withLock({ $0.waiters.removeValue(forKey: header.requestID) }) else {
            // A frame-level error before the daemon could read our request ID (FRAME_TOO_LARGE
            // with ID 0), or an answer to a request that timed out.
            if header.requestID == 0, header.status != 0, let status = WireStatus(rawValue: header.status) {
                let failure = decoder.buffer.withUnsafeBytes {
                    WireFailure.decode(status: status, body: UnsafeRawBufferPointer(rebasing: $0[body]))
                }
                state.withLock { state in
                    if state.closedReason == nil { state.closedReason = "\(failure)" }
                    if state.closedFailure == nil { state.closedFailure = failure }
                }
            }
            return
        }
        guard header.isResponse else {
            waiter.completion(.failure(.protocolViolation("a frame without the response flag")))
            return
        }
        let result: Result<[Result<Response, WireFailure>], SigilClientError> = decoder.buffer.withUnsafeBytes { raw in
            Result { () throws(WireError) in try decodeResponseFrame(header, body: UnsafeRawBufferPointer(rebasing: raw[body])) }
                .mapError { SigilClientError.protocolViolation($0.message) }
        }
        waiter.completion(result)
    }
}
