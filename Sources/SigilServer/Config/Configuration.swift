public import SigilCore

/// Everything `sigild` is told: where to listen, which keys, who may do what, and limits.
/// Built from a YAML file (`ConfigLoader`) or from command-line flags.
public struct Configuration: Sendable {
    public struct Listener: Sendable, Equatable {
        /// Matches an entry of `LISTEN_FDNAMES` under systemd socket activation.
        public var name: String
        /// A path to bind when the socket is not inherited; `@name` is the abstract namespace.
        public var path: String?
        /// An inherited descriptor number, when not using systemd's names.
        public var fd: Int32?
        /// Permissions of a bound path.
        public var mode: UInt32
        /// Rules for callers of this listener; nil means the top-level rules.
        public var access: [AccessRule]?

        public init(name: String, path: String? = nil, fd: Int32? = nil, mode: UInt32 = 0o660, access: [AccessRule]? = nil) {
            self.name = name
            self.path = path
            self.fd = fd
            self.mode = mode
            self.access = access
        }
    }

    public struct Server: Sendable, Equatable {
        public var name: String
        /// Key files in order: their keys are the server's active keys, the first one signs.
        public var keyFiles: [String]
        public var retired: [RetiredKey]
        /// How long a KEY_DOCUMENT is valid for when the caller does not say (ms).
        public var keyDocumentValidity: Int64

        public init(name: String, keyFiles: [String], retired: [RetiredKey] = [], keyDocumentValidity: Int64 = 86_400_000) {
            self.name = name
            self.keyFiles = keyFiles
            self.retired = retired
            self.keyDocumentValidity = keyDocumentValidity
        }
    }

    public struct Limits: Sendable, Equatable {
        /// Largest accepted `length` field of a frame.
        public var maxFrameLength: UInt32 = 65536
        public var maxBatchItems: Int = 256
        /// Batches a connection may have running on the thread pool; more get BUSY.
        public var maxInFlight: Int = 16
        public var maxConnections: Int = 4096
        /// Frames a connection may have handled per loop turn before others get a go.
        public var framesPerTurn: Int = 64
        /// Batches of at least this many items run on the thread pool, not on the loop.
        public var offloadBatchItems: Int = 16
        /// A connection with no traffic for this long is closed (ms); 0 never.
        public var idleTimeout: Int64 = 3_600_000
        /// A frame that has started to arrive must finish within this (ms).
        public var frameTimeout: Int64 = 10_000
        /// SIGTERM waits at most this long for in-flight work (ms).
        public var drainTimeout: Int64 = 10_000
        /// Stop reading from a connection whose unsent replies exceed this many bytes.
        public var maxPendingOutput: Int = 1 << 20
        /// A connection that reads none of its queued replies for this long is closed (ms).
        public var writeTimeout: Int64 = 60_000

        public init() {}
    }

    public var listeners: [Listener]
    public var servers: [Server]
    public var access: [AccessRule]
    public var limits: Limits
    public var memoryLock: MemoryLockPolicy
    public var logLevel: String
    /// Event loops; 0 means one per CPU.
    public var workers: Int
    /// The file this came from, for messages; nil when built from flags.
    public var sourcePath: String?

    public init(
        listeners: [Listener], servers: [Server], access: [AccessRule], limits: Limits = Limits(),
        memoryLock: MemoryLockPolicy = .require, logLevel: String = "info", workers: Int = 0, sourcePath: String? = nil
    ) {
        self.listeners = listeners
        self.servers = servers
        self.access = access
        self.limits = limits
        self.memoryLock = memoryLock
        self.logLevel = logLevel
        self.workers = workers
        self.sourcePath = sourcePath
    }

    public static let defaultSocketPath = "/run/sigil/sigild.sock"
}
