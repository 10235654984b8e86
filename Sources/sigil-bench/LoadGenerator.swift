import ArgumentParser
import Histogram
import SigilCore
import SigilPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where a run is: warming up (not recorded), measuring, or winding down.
enum Phase: Int {
    case warmup = 0, measure = 1, stop = 2
}

/// The phase, shared by every connection's threads.
final class RunPhase: Sendable {
    private let value = Atomic<Int>(Phase.warmup.rawValue)
    /// Requests answered while measuring, across connections (for `--count`).
    private let answered = Atomic<Int>(0)

    func recordAnswered(_ count: Int) { answered.add(count, ordering: .relaxed) }
    var answeredCount: Int { answered.load(ordering: .relaxed) }

    func load(ordering: AtomicLoadOrdering = .relaxed) -> Int { value.load(ordering: .relaxed) }
    func store(_ phase: Int, ordering: AtomicStoreOrdering = .relaxed) { value.store(phase, ordering: .relaxed) }
}

/// What one connection saw while measuring.
struct ConnectionTally {
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    /// Requests (batch items count one each) answered while measuring.
    var completed: UInt64 = 0
    /// Frames or batch items answered with a non-zero status while measuring.
    var errors: UInt64 = 0
    var firstError: String?
    /// Set if the daemon went away or the connection failed.
    var failure: String?
}

/// The shared shape of a run.
struct LoadShape {
    let connections: Int
    let depth: Int
    /// Requests per second across all connections, for the open loop; nil for closed loop.
    let rate: Double?
    let workload: Workload
    let mix: OperationMix
    /// How a connection waits for replies.
    var wait: ReplyWait = .recv
}

/// How a client waits for replies, which changes what the daemon pays for. A thread asleep in
/// `recv` is also woken whenever the daemon drains the socket (the wait queue is shared with
/// writers), and the daemon pays for that wake-up; Go's netpoller, which registers for writes
/// too, is woken the same way. A thread in `poll` for input only is woken by replies alone.
/// On this VM the extra wake-ups cost the daemon about 1 % of its CPU when pipelining, but they
/// keep the client's vCPU from halting between a request and its reply, which makes one
/// request at a time about 20 µs faster.
enum ReplyWait: String, CaseIterable, ExpressibleByArgument {
    case recv, poll
}

/// Drives one connection on its own thread(s).
final class ConnectionDriver: @unchecked Sendable {
    // @unchecked: the tally is written by this driver's thread(s) and read only after they are joined.
    let index: Int
    let shape: LoadShape
    let phase: RunPhase
    let socketPath: String
    var tally = ConnectionTally()
    private(set) var peer: PeerCredentials?

    init(index: Int, shape: LoadShape, phase: RunPhase, socketPath: String) {
        self.index = index
        self.shape = shape
        self.phase = phase
        self.socketPath = socketPath
    }

    static func now() -> UInt64 { Posix.monotonicNanoseconds() }

    func connect() throws -> Int32 {
        let fd = try Posix.socket(type: Int32(SOCK_STREAM.rawValue))
        do {
            try Posix.connect(fd, path: socketPath)
        } catch {
            Posix.close(fd)
            throw error
        }
        peer = try? Posix.peerCredentials(fd)
        return fd
    }

    /// Patches a request ID into a template.
    @inline(__always)
    static func append(_ template: [UInt8], id: UInt32, to out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: template)
        out[start + 8] = UInt8(id >> 24)
        out[start + 9] = UInt8(id >> 16 & 0xFF)
        out[start + 10] = UInt8(id >> 8 & 0xFF)
        out[start + 11] = UInt8(id & 0xFF)
    }

    /// Counts the requests a response frame answers and the failed ones.
    @inline(__always)
    func account(_ header: FrameHeader, body: UnsafeRawBufferPointer, latency: UInt64) {
        let measuring = phase.load(ordering: .relaxed) == Phase.measure.rawValue
        guard measuring else { return }
        _ = tally.histogram.record(latency)
        let before = tally.completed
        defer { phase.recordAnswered(Int(tally.completed - before)) }
        if header.status != 0 {
            tally.errors += UInt64(shape.workload.batch)
            tally.completed += UInt64(shape.workload.batch)
            if tally.firstError == nil, let status = WireStatus(rawValue: header.status) {
                tally.firstError = WireFailure.decode(status: status, body: body).description
            }
            return
        }
        if header.isBatch, body.count >= 2 {
            let count = Int(body[0]) << 8 | Int(body[1])
            var offset = 2
            for _ in 0..<count where offset + 5 <= body.count {
                let status = body[offset]
                let length = Int(body[offset + 1]) << 24 | Int(body[offset + 2]) << 16 | Int(body[offset + 3]) << 8 | Int(body[offset + 4])
                if status != 0 {
                    tally.errors += 1
                    if tally.firstError == nil, let s = WireStatus(rawValue: status) {
                        tally.firstError = WireFailure.decode(status: s, body: UnsafeRawBufferPointer(rebasing: body[(offset + 5)..<min(body.count, offset + 5 + length)])).description
                    }
                }
                offset += 5 + length
            }
            tally.completed += UInt64(count)
        } else {
            tally.completed += 1
        }
    }

    /// Closed loop: keep `depth` requests in flight; send a new one as each answer arrives.
    func runClosedLoop() {
        let fd: Int32
        do {
            fd = try connect()
        } catch {
            tally.failure = "connect: \(error)"
            return
        }
        defer { Posix.close(fd) }
        let depth = shape.depth
        // Send times by request ID. Answers may overtake each other (large batches run on the
        // daemon's thread pool), so the ring is far deeper than the window, and each slot
        // remembers its ID so a mismatch can never pass for a latency.
        let ringSize = 1 << (Int.bitWidth - (max(4096, depth * 8) - 1).leadingZeroBitCount)
        let mask = UInt32(ringSize - 1)
        var sentAt = [(id: UInt32, time: UInt64)](repeating: (0, 0), count: ringSize)
        var nextID: UInt32 = UInt32(index) << 20
        var sequence = index
        var outgoing: [UInt8] = []
        outgoing.reserveCapacity(depth * 256)
        var inFlight = 0
        func queue() {
            let op = shape.mix.operation(at: sequence)
            sequence += 1
            nextID &+= 1
            sentAt[Int(nextID & mask)] = (nextID, ConnectionDriver.now())
            ConnectionDriver.append(shape.workload.template(op, sequence: Int(nextID)), id: nextID, to: &outgoing)
            inFlight += 1
        }
        for _ in 0..<depth { queue() }
        var decoder = FrameDecoder(maxLength: 16 << 20)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var stopDeadline: UInt64?
        while true {
            if !outgoing.isEmpty {
                do {
                    try outgoing.withUnsafeBytes { try Posix.sendAll(fd, $0) }
                } catch {
                    tally.failure = "send: \(error)"
                    phase.store(Phase.stop.rawValue, ordering: .relaxed)
                    return
                }
                outgoing.removeAll(keepingCapacity: true)
            }
            if phase.load(ordering: .relaxed) == Phase.stop.rawValue {
                if inFlight == 0 { return }
                if stopDeadline == nil { stopDeadline = ConnectionDriver.now() + 5_000_000_000 }
                if ConnectionDriver.now() > stopDeadline! { return }
            }
            let count: Int
            do {
                if shape.wait == .poll { guard try Posix.waitReadable(fd, milliseconds: 1000) else { continue } }
                count = try buffer.withUnsafeMutableBytes { try Posix.recv(fd, into: $0) }
            } catch {
                if (error as? PosixError)?.errno == EAGAIN { continue }
                tally.failure = "receive: \(error)"
                phase.store(Phase.stop.rawValue, ordering: .relaxed)
                return
            }
            if count == 0 {
                tally.failure = "the daemon closed the connection"
                phase.store(Phase.stop.rawValue, ordering: .relaxed)
                return
            }
            let received = ConnectionDriver.now()
            decoder.append(buffer[..<count])
            let stopping = phase.load(ordering: .relaxed) == Phase.stop.rawValue
            while case .frame(let header, let range)? = try? decoder.next() {
                let sent = sentAt[Int(header.requestID & mask)]
                guard sent.id == header.requestID, sent.time <= received else {
                    tally.failure = "an answer with request ID \(header.requestID) matches no request in flight"
                    phase.store(Phase.stop.rawValue, ordering: .relaxed)
                    return
                }
                decoder.buffer.withUnsafeBytes { account(header, body: UnsafeRawBufferPointer(rebasing: $0[range]), latency: received - sent.time) }
                inFlight -= 1
                if !stopping { queue() }
            }
        }
    }

    /// Open loop: send at fixed intervals regardless of answers, and measure each latency from
    /// the moment the request was *meant* to go out, so a stalled daemon shows up in the tail
    /// instead of slowing the sender (no coordinated omission).
    func runOpenLoop(rate: Double) {
        let fd: Int32
        do {
            fd = try connect()
        } catch {
            tally.failure = "connect: \(error)"
            return
        }
        let ringSize = 1 << 16
        let mask = UInt32(ringSize - 1)
        let intended = Locked([UInt64](repeating: 0, count: ringSize))
        let outstanding = Atomic<Int>(0)
        let interval = UInt64(1e9 / rate)
        let start = ConnectionDriver.now()
        let sender = try? PosixThread(name: "bench-send") { [self] in
            var id: UInt32 = UInt32(index) << 20
            var sequence = index
            var frame: [UInt8] = []
            var i: UInt64 = 0
            while phase.load(ordering: .relaxed) != Phase.stop.rawValue {
                let due = start + i * interval
                let now = ConnectionDriver.now()
                if due > now {
                    var ts = timespec(tv_sec: Int((due - now) / 1_000_000_000), tv_nsec: Int((due - now) % 1_000_000_000))
                    nanosleep(&ts, nil)
                }
                guard outstanding.load(ordering: .relaxed) < ringSize / 2 else {
                    tally.failure = "the daemon fell more than \(ringSize / 2) requests behind the offered rate"
                    phase.store(Phase.stop.rawValue, ordering: .relaxed)
                    break
                }
                id &+= 1
                intended.withLock { $0[Int(id & mask)] = due }
                frame.removeAll(keepingCapacity: true)
                ConnectionDriver.append(shape.workload.template(shape.mix.operation(at: sequence), sequence: sequence), id: id, to: &frame)
                sequence += 1
                outstanding.add(1, ordering: .relaxed)
                if (try? frame.withUnsafeBytes({ try Posix.sendAll(fd, $0) })) == nil { break }
                i += 1
            }
        }
        var decoder = FrameDecoder(maxLength: 16 << 20)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var stopDeadline: UInt64?
        if shape.wait == .recv { try? Posix.setReceiveTimeout(fd, seconds: 0.2) }
        while true {
            if phase.load(ordering: .relaxed) == Phase.stop.rawValue {
                if outstanding.load(ordering: .relaxed) == 0 { break }
                if stopDeadline == nil { stopDeadline = ConnectionDriver.now() + 5_000_000_000 }
                if ConnectionDriver.now() > stopDeadline! { break }
            }
            let count: Int
            do {
                if shape.wait == .poll { guard try Posix.waitReadable(fd, milliseconds: 200) else { continue } }
                count = try buffer.withUnsafeMutableBytes { try Posix.recv(fd, into: $0) }
            } catch {
                if let posix = error as? PosixError, posix.errno == EAGAIN || posix.errno == EWOULDBLOCK { continue }
                tally.failure = "receive: \(error)"
                break
            }
            if count == 0 {
                tally.failure = "the daemon closed the connection"
                break
            }
            let received = ConnectionDriver.now()
            decoder.append(buffer[..<count])
            while case .frame(let header, let range)? = try? decoder.next() {
                let due = intended.withLock { $0[Int(header.requestID & mask)] }
                decoder.buffer.withUnsafeBytes { account(header, body: UnsafeRawBufferPointer(rebasing: $0[range]), latency: received - due) }
                outstanding.subtract(1, ordering: .relaxed)
            }
        }
        phase.store(Phase.stop.rawValue, ordering: .relaxed)
        Posix.shutdownWrite(fd)
        sender?.join()
        Posix.close(fd)
    }
}
