public import SigilCore
import SigilPosix

/// The daemon's own uid (the default caller).
public var currentUID: UInt32 { Posix.effectiveUID }

/// Who may call, and what they may do. A caller matches a rule when its uid (SO_PEERCRED, at
/// connect time) is the rule's `uid`, and the rule's `gid` is the caller's primary group or one of
/// its supplementary groups (SO_PEERGROUPS), for whichever of the two the rule names.
public struct AccessRule: Sendable, Equatable {
    public var uid: UInt32?
    public var gid: UInt32?
    public var operations: Set<Opcode>
    /// Servers the caller may use; nil means all.
    public var servers: ServerSelector?
    /// For SIGN_REQUEST: allowed methods (exact, e.g. GET); nil means any.
    public var methods: Set<String>?
    /// For SIGN_REQUEST: the uri's normalised path must start with one of these (`URIPolicy`);
    /// nil means any uri.
    public var uriPrefixes: [String]?

    public init(
        uid: UInt32? = nil, gid: UInt32? = nil, operations: Set<Opcode> = AccessRule.defaultOperations,
        servers: ServerSelector? = nil, methods: Set<String>? = nil, uriPrefixes: [String]? = nil
    ) {
        self.uid = uid
        self.gid = gid
        self.operations = operations
        self.servers = servers
        self.methods = methods
        self.uriPrefixes = uriPrefixes
    }

    /// What a rule grants when it names no operations: everything except SIGN_RAW and SIGN_JSON,
    /// which let a caller get arbitrary bytes or events signed and must be granted by name.
    public static let defaultOperations: Set<Opcode> = Set(Opcode.allCases).subtracting([.signRaw, .signJSON])

    /// HELLO is always answered, so that any caller a rule matches can learn what it may do.
    public static let alwaysAllowed: Set<Opcode> = [.hello]

    public func matches(_ caller: PeerCredentials) -> Bool {
        (uid == nil || uid == caller.uid) && (gid.map(caller.isMember(of:)) ?? true)
    }

    /// `name` is read only when the rule names servers or patterns (not for `*`).
    @inline(__always)
    public func allowsServer(_ name: @autoclosure () -> String) -> Bool {
        guard let servers, !servers.matchesAll else { return true }
        return servers.matches(name())
    }

    /// Whether a SIGN_REQUEST's method and uri fall within this rule's limits.
    @inline(__always)
    func allowsRequest(method: UnsafeRawBufferPointer, uri: UnsafeRawBufferPointer) -> Bool {
        if let methods, !methods.contains(where: { $0.utf8.elementsEqual(method) }) { return false }
        if let uriPrefixes { return URIPolicy.matches(uri, prefixes: uriPrefixes) }
        return true
    }
}
