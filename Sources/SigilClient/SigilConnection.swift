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
public final class SigilConnection: Sendable {
    /// The answer to one frame: one result, or one per batch item.
    public typealias Completion = @Sendable (Result<[Result<Response, WireFailure>], SigilClientError>) -> Void

    private struct Pending {
        var waiters: [UInt32: (opcode: Opcode, batch: Bool, completion: Completion)] = [:]
        var closedReason: String?
    }

    public let path: String
    private let fd: Int32
    private let pending = Mutex(Pending())
    private let writeLock = Mutex(())
    private let nextID = Atomic<UInt32>(1)
    private let reader = Mutex<PosixThread?>(nil)
    /// The largest response frame accepted (the daemon's replies are far smaller).
    private let maxResponseLength: UInt32

    /// Connects to the socket at `path` (`@name` for the abstract namespace).
    public init(path: String, maxResponseLength: UInt32 = 16 << 20) throws(SigilClientError) {
        self.path = path
        self.maxResponseLength = maxResponseLength
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
        self.fd = fd
        do {
            let thread = try PosixThread(name: "sigil-client") { [self] in readLoop() }
            reader.withLock { $0 = thread }
        } catch {
            Posix.close(fd)
            throw .connect(path: path, error)
        }
    }

    deinit {
        close()
    }

    public var isClosed: Bool { pending.withLock { $0.closedReason != nil } }

    /// Closes the connection; requests still waiting fail with `.connectionClosed`.
    public func close() {
        let first = pending.withLock { state -> Bool in
            guard state.closedReason == nil else { return false }
            state.closedReason = "closed by the client"
            return true
        }
        guard first else {
            joinReader()
            return
        }
        // Wakes the reader thread, which then fails whatever is still waiting.
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        joinReader()
    }

    private func joinReader() {
        let thread = reader.withLock { thread -> PosixThread? in
            defer { thread = nil }
            return thread
        }
        // The reader itself may close the connection (on EOF); it must not join itself.
        if let thread, !Thread.isReaderThread(self) { thread.join() }
    }

    // MARK: Sending

    /// Sends one frame (a single request, or a batch of requests sharing an opcode) and calls
    /// `completion` from the reader thread when the answer arrives.
    public func submit(_ requests: [Request], batch: Bool? = nil, completion: @escaping Completion) {
        guard let first = requests.first else {
            completion(.failure(.invalidRequest("no request")))
            return
        }
        let asBatch = batch ?? (requests.count > 1)
        guard asBatch || requests.count == 1 else {
            completion(.failure(.invalidRequest("several requests need a batch frame")))
            return
        }
        if asBatch {
            guard first.opcode.acceptsBatch, requests.allSatisfy({ $0.opcode == first.opcode }) else {
                completion(.failure(.invalidRequest("a batch holds requests of one batchable operation")))
                return
            }
            guard requests.count <= Int(UInt16.max) else {
                completion(.failure(.invalidRequest("a batch holds at most 65535 items")))
                return
            }
        }
        if let problem = requests.lazy.compactMap(Self.encodingProblem).first {
            completion(.failure(.invalidRequest(problem)))
            return
        }
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        var writer = WireWriter(capacity: 128)
        if asBatch {
            Request.encodeBatch(requests, requestID: id, into: &writer)
        } else {
            requests[0].encodeFrame(requestID: id, into: &writer)
        }
        let closed = pending.withLock { state -> String? in
            if let reason = state.closedReason { return reason }
            state.waiters[id] = (first.opcode, asBatch, completion)
            return nil
        }
        if let closed {
            completion(.failure(.connectionClosed(closed)))
            return
        }
        let sent: PosixError? = writeLock.withLock { _ -> PosixError? in
            writer.bytes.withUnsafeBytes { bytes -> PosixError? in
                let outcome = Result { () throws(PosixError) in try Posix.sendAll(fd, bytes) }
                if case .failure(let error) = outcome { return error }
                return nil
            }
        }
        if let sent {
            fail(id: id, .connectionClosed("send failed: \(sent)"))
        }
    }

    /// Strings are length-prefixed with 16 bits; catch oversize fields before encoding.
    private static func encodingProblem(_ request: Request) -> String? {
        func long(_ s: String) -> Bool { s.utf8.count > Int(UInt16.max) }
        switch request {
        case .signRequest(let p) where long(p.origin) || long(p.destination) || long(p.method) || long(p.uri):
            return "a sign_request field is longer than 65535 bytes"
        case .verifyRequest(let p) where p.authorizations.contains(where: long) || long(p.uri) || p.keys.count > Int(UInt16.max):
            return "a verify_request field is too long"
        default:
            return nil
        }
    }

    private func fail(id: UInt32, _ error: SigilClientError) {
        let waiter = pending.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.completion(.failure(error))
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

    private func sendFrame(_ requests: [Request], batch: Bool, timeout: Double?) throws(SigilClientError) -> [Result<Response, WireFailure>] {
        let semaphore = DispatchSemaphore(value: 0)
        let box = Mutex<Result<[Result<Response, WireFailure>], SigilClientError>?>(nil)
        submit(requests, batch: batch) { result in
            box.withLock { $0 = result }
            semaphore.signal()
        }
        if let timeout {
            if semaphore.wait(timeout: .now() + timeout) == .timedOut {
                // The answer may still come; the waiter is dropped so it is ignored.
                throw .timedOut(seconds: timeout)
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

    // MARK: Receiving

    private func readLoop() {
        Thread.markReader(self)
        var decoder = FrameDecoder(maxLength: maxResponseLength)
        var chunk = [UInt8](repeating: 0, count: 65536)
        var reason = "the daemon closed the connection"
        reading: while true {
            let count: Int
            do {
                count = try chunk.withUnsafeMutableBytes { raw in Result { () throws(PosixError) in try Posix.recv(fd, into: raw) } }.get()
            } catch {
                reason = pending.withLock { $0.closedReason } ?? "receive failed: \(error)"
                break
            }
            if count == 0 {
                reason = pending.withLock { $0.closedReason } ?? reason
                break
            }
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
        let waiting = pending.withLock { state -> [Completion] in
            if state.closedReason == nil { state.closedReason = reason }
            defer { state.waiters.removeAll() }
            return state.waiters.values.map(\.completion)
        }
        for completion in waiting { completion(.failure(.connectionClosed(reason))) }
        Posix.close(fd)
    }

    private func deliver(_ header: FrameHeader, body: Range<Int>, decoder: FrameDecoder) {
        guard let waiter = pending.withLock({ $0.waiters.removeValue(forKey: header.requestID) }) else {
            // A frame-level error before the daemon could read our request ID (FRAME_TOO_LARGE
            // with ID 0), or an answer to a request that timed out.
            if header.requestID == 0, header.status != 0, let status = WireStatus(rawValue: header.status) {
                let failure = decoder.buffer.withUnsafeBytes { WireFailure.decode(status: status, body: UnsafeRawBufferPointer(rebasing: $0[body])) }
                pending.withLock { $0.closedReason = "\(failure)" }
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

/// Which connection's reader thread is running here, so `close()` from a completion handler
/// does not join the very thread it runs on.
private enum Thread {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    static func markReader(_ connection: SigilConnection) {
        pthread_setspecific(key, Unmanaged.passUnretained(connection).toOpaque())
    }

    static func isReaderThread(_ connection: SigilConnection) -> Bool {
        pthread_getspecific(key) == Unmanaged.passUnretained(connection).toOpaque()
    }
}
