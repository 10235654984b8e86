/// The limits one connection lives under, fixed when it is accepted. A reload's new limits apply
/// to connections accepted after it: what HELLO told a client stays true for its connection.
public struct ConnectionLimits: Sendable, Equatable {
    public var maxFrameLength: UInt32
    public var maxBatchItems: Int
    /// Large batches (at least `offloadBatchItems` items) queued or running at once.
    public var maxInFlight: Int
    public var framesPerTurn: Int
    public var offloadBatchItems: Int
    /// Unsent replies past which the connection is not read, and frames already read are not
    /// answered, until the client reads.
    public var maxPendingOutput: Int
    /// Milliseconds; `idleTimeout` 0 means never.
    public var frameTimeout: UInt64
    public var idleTimeout: UInt64
    public var writeTimeout: UInt64
    public var maxJSONDepth: Int

    public init(_ limits: Configuration.Limits) {
        maxFrameLength = limits.maxFrameLength
        maxBatchItems = limits.maxBatchItems
        maxInFlight = limits.maxInFlight
        framesPerTurn = limits.framesPerTurn
        offloadBatchItems = limits.offloadBatchItems
        maxPendingOutput = limits.maxPendingOutput
        frameTimeout = UInt64(limits.frameTimeout)
        idleTimeout = UInt64(limits.idleTimeout)
        writeTimeout = UInt64(limits.writeTimeout)
        maxJSONDepth = limits.maxJSONDepth
    }

    /// Replies held back while a backlog of requests is worked through go out at this size.
    static let deferredOutput = 96 * 1024
    /// What a busy connection keeps of its read and write buffers between reads.
    static let retainedBuffer = 128 * 1024
}
