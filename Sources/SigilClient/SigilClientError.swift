public import SigilCore
public import SigilPosix

/// What can go wrong talking to sigild. Small and closed, so callers can act on each case.
public enum SigilClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The socket could not be reached (is sigild running? is the path right?).
    case connect(path: String, PosixError)
    /// The connection closed before this request was answered; it may or may not have run.
    case connectionClosed(String)
    /// The daemon answered with an error status (DENIED, BUSY, UNKNOWN_SERVER, …).
    case rejected(WireFailure)
    /// The daemon's answer did not follow the protocol.
    case protocolViolation(String)
    /// No answer within the timeout.
    case timedOut(seconds: Double)
    /// The request cannot be encoded (a field over its size limit).
    case invalidRequest(String)

    public var description: String {
        switch self {
        case .connect(let path, let error): return "cannot connect to sigild at \(path): \(error)"
        case .connectionClosed(let why): return "connection to sigild closed: \(why)"
        case .rejected(let failure): return "sigild refused the request: \(failure)"
        case .protocolViolation(let why): return "sigild's answer does not follow the protocol: \(why)"
        case .timedOut(let seconds): return "no answer from sigild within \(seconds) s"
        case .invalidRequest(let why): return "invalid request: \(why)"
        }
    }

    /// The status, when the daemon refused the request.
    public var status: WireStatus? {
        if case .rejected(let failure) = self { return failure.status }
        return nil
    }
}
