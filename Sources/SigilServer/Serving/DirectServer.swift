public import Logging
public import SigilCore
public import SigilPosix

/// The daemon's request handling with no sockets and no loop: frames in, frames out, exactly
/// as a connection would produce them. For benchmarks and tests of the dispatch path alone.
public struct DirectServer {
    private var dispatcher: Dispatcher
    private var caller: Caller
    private let state: ServingState
    private var decoder: FrameDecoder
    private var output = WireWriter(capacity: 4096)

    /// `credentials` stand in for SO_PEERCRED (by default, this process's own).
    public init(
        state: ServingState, credentials: PeerCredentials = PeerCredentials(pid: Posix.pid, uid: Posix.effectiveUID, gid: Posix.gid),
        listener: String = "direct", logger: Logger = Logger(label: "sigild.direct")
    ) {
        let stats = StatsRegistry(loopCount: 1, startedAt: Posix.monotonicNanoseconds())
        dispatcher = Dispatcher(logger: logger, stats: stats, counters: stats.loops[0], daemonVersion: "direct")
        caller = Caller(credentials: credentials, listener: listener)
        self.state = state
        decoder = FrameDecoder(maxLength: state.configuration.limits.maxFrameLength)
    }

    /// Handles every whole frame in `bytes`; returns the response frames.
    public mutating func handle(_ bytes: UnsafeRawBufferPointer) throws(FrameDecoder.Failure) -> [UInt8] {
        output.bytes.removeAll(keepingCapacity: true)
        decoder.append(bytes)
        while case .frame(let header, let range) = try decoder.next() {
            decoder.buffer.withUnsafeBytes { raw in
                _ = dispatcher.handle(header, body: UnsafeRawBufferPointer(rebasing: raw[range]), caller: &caller, state: state, out: &output)
            }
        }
        dispatcher.flushCounters()
        return output.bytes
    }

    /// The allocation-light form for benchmarks: responses are appended to `out`.
    public mutating func handle(_ bytes: UnsafeRawBufferPointer, into out: inout WireWriter) throws(FrameDecoder.Failure) {
        decoder.append(bytes)
        while case .frame(let header, let range) = try decoder.next() {
            decoder.buffer.withUnsafeBytes { raw in
                _ = dispatcher.handle(header, body: UnsafeRawBufferPointer(rebasing: raw[range]), caller: &caller, state: state, out: &out)
            }
        }
        dispatcher.flushCounters()
    }
}
