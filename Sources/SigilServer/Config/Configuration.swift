public import SigilCore

/// Everything `sigild` is told: where to listen, which keys, who may do what, and limits.
/// Built from a YAML file (`ConfigLoader`, schema in docs/configuration.md) or from flags.
public struct Configuration: Sendable {
    public struct Listener: Sendable, Equatable {
        /// Matches an entry of `LISTEN_FDNAMES` under systemd socket activation.
        public var name: String
        /// A path to bind when the socket is not inherited; `@name` is the abstract namespace,
        /// allowed only with `abstract`.
        public var path: String?
        /// An inherited descriptor number, when not using systemd's names.
        public var fd: Int32?
        /// Permissions of a bound path.
        public var mode: UInt32
        /// Owner and group of a bound path (nil: the daemon's own).
        public var owner: UInt32?
        public var group: UInt32?
        /// The operator accepts an abstract socket (`@name`): no file permissions, any local
        /// process may connect (the access rules still apply), and whoever binds the name first
        /// owns it.
        public var abstract: Bool
        /// Rules for callers of this listener; nil means the top-level rules.
        public var access: [AccessRule]?
        /// Caps for this listener (nil: `limits`).
        public var maxConnections: Int?
        public var maxConnectionsPerUID: Int?
        /// Connections kept for this listener that others' connections cannot take; nil: the
        /// default (`defaultReserved(for:)`).
        public var reservedConnections: Int?
        /// Signatures per caller uid on this listener (nil: unlimited).
        public var rateLimit: RateLimit?

        public init(
            name: String, path: String? = nil, fd: Int32? = nil, mode: UInt32 = 0o660, owner: UInt32? = nil, group: UInt32? = nil,
            abstract: Bool = false, access: [AccessRule]? = nil, maxConnections: Int? = nil, maxConnectionsPerUID: Int? = nil,
            reservedConnections: Int? = nil, rateLimit: RateLimit? = nil
        ) {
            self.name = name
            self.path = path
            self.fd = fd
            self.mode = mode
            self.owner = owner
            self.group = group
            self.abstract = abstract
            self.access = access
            self.maxConnections = maxConnections
            self.maxConnectionsPerUID = maxConnectionsPerUID
            self.reservedConnections = reservedConnections
            self.rateLimit = rateLimit
        }
    }

    public struct Server: Sendable, Equatable {
        public var name: String
        /// Key files in order: their keys are the server's active keys, the first one signs.
        public var keyFiles: [String]
        public var retired: [RetiredKey]
        /// How long a KEY_DOCUMENT is valid for when the caller does not say (ms).
        public var keyDocumentValidity: Int64

        public init(
            name: String, keyFiles: [String], retired: [RetiredKey] = [], keyDocumentValidity: Int64 = Configuration.defaultDocumentValidity
        ) {
            self.name = name
            self.keyFiles = keyFiles
            self.retired = retired
            self.keyDocumentValidity = keyDocumentValidity
        }
    }

    /// A directory of key files, one server each, the server's name taken from the file name:
    /// for thousands of servers, and for adding one by dropping a file in place.
    public struct KeyDirectory: Sendable, Equatable {
        public var path: String
        /// File names are `prefix` + server name + `suffix` (the pattern `prefix*suffix`).
        public var prefix: String
        public var suffix: String
        public var keyDocumentValidity: Int64

        public init(
            path: String, prefix: String = "", suffix: String = ".key", keyDocumentValidity: Int64 = Configuration.defaultDocumentValidity
        ) {
            self.path = path
            self.prefix = prefix
            self.suffix = suffix
            self.keyDocumentValidity = keyDocumentValidity
        }

        public var pattern: String { prefix + "*" + suffix }

        /// The server name a file name stands for, if it fits the pattern.
        public func serverName(forFile name: String) -> String? {
            guard name.utf8.count > prefix.utf8.count + suffix.utf8.count, name.hasPrefix(prefix), name.hasSuffix(suffix) else {
                return nil
            }
            return String(name.dropFirst(prefix.count).dropLast(suffix.count))
        }
    }

    public struct Limits: Sendable, Equatable {
        /// Largest accepted `length` field of a frame.
        public var maxFrameLength: UInt32 = 65536
        public var maxBatchItems: Int = 256
        /// Large batches a connection may have queued or running; more get BUSY.
        public var maxInFlight: Int = 16
        /// Connections of all listeners together.
        public var maxConnections: Int = 4096
        /// Connections of one caller uid on one listener (a listener may say otherwise).
        public var maxConnectionsPerUID: Int = 256
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
        /// Bytes held for all clients together (unread requests, unsent replies, queued batches);
        /// past it, the connections holding the most unread replies are closed.
        public var maxBuffered: Int = 256 << 20
        /// The same, for the connections of one caller uid.
        public var maxBufferedPerUID: Int = 64 << 20
        /// Nesting depth of JSON the daemon signs or checks.
        public var maxJSONDepth: Int = JSONLimits.default.maxDepth

        public init() {}
    }

    /// The audit trail of signatures (off unless configured).
    public struct Audit: Sendable, Equatable {
        public enum Destination: Sendable, Equatable {
            /// JSON lines appended to a file, reopened on SIGHUP (for logrotate).
            case file(String)
            /// One journal entry per record, with the fields as journal fields.
            case journal(socket: String)
        }

        public enum URIForm: String, Sendable, Equatable {
            /// The uri as signed.
            case full
            /// Its SHA-256, hex.
            case digest
        }

        public var destination: Destination
        public var uri: URIForm
        /// Records waiting for the writer (or being written); past it, new records are dropped
        /// and counted.
        public var queue: Int
        /// The same bound in bytes, so records with long fields cannot hold more memory than this.
        public var queueBytes: Int

        public init(destination: Destination, uri: URIForm = .full, queue: Int = 65536, queueBytes: Int = 16 << 20) {
            self.destination = destination
            self.uri = uri
            self.queue = queue
            self.queueBytes = queueBytes
        }
    }

    public var listeners: [Listener]
    public var servers: [Server]
    public var keyDirectories: [KeyDirectory]
    public var access: [AccessRule]
    public var limits: Limits
    public var memoryLock: MemoryLockPolicy
    public var logLevel: String
    /// Event loops; 0 means one per CPU.
    public var workers: Int
    public var audit: Audit?
    /// The file this came from, for messages; nil when built from flags.
    public var sourcePath: String?

    public init(
        listeners: [Listener], servers: [Server], keyDirectories: [KeyDirectory] = [], access: [AccessRule], limits: Limits = Limits(),
        memoryLock: MemoryLockPolicy = .require, logLevel: String = "info", workers: Int = 0, audit: Audit? = nil,
        sourcePath: String? = nil
    ) {
        self.listeners = listeners
        self.servers = servers
        self.keyDirectories = keyDirectories
        self.access = access
        self.limits = limits
        self.memoryLock = memoryLock
        self.logLevel = logLevel
        self.workers = workers
        self.audit = audit
        self.sourcePath = sourcePath
    }

    public static let defaultSocketPath = "/run/sigil/sigild.sock"
    public static let defaultDocumentValidity: Int64 = 86_400_000
    /// Each listener keeps 8 connections for itself, or less where `limits.max_connections` is
    /// small: at most a quarter of it shared among the listeners.
    public func defaultReservedConnections() -> Int {
        min(8, limits.maxConnections / (4 * max(listeners.count, 1)))
    }

    /// The reserve of `listener` (its own, or the default).
    public func reservedConnections(for listener: String) -> Int {
        listeners.first { $0.name == listener }?.reservedConnections ?? defaultReservedConnections()
    }
    public static let defaultJournalSocket = "/run/systemd/journal/socket"
}
