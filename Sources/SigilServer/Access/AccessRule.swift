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
    /// Server names the caller may use; nil means all.
    public var servers: Set<String>?
    /// For SIGN_REQUEST: allowed methods (exact, e.g. GET); nil means any.
    public var methods: Set<String>?
    /// For SIGN_REQUEST: the uri must start with one of these; nil means any.
    public var uriPrefixes: [String]?

    public init(
        uid: UInt32? = nil, gid: UInt32? = nil, operations: Set<Opcode> = AccessRule.defaultOperations,
        servers: Set<String>? = nil, methods: Set<String>? = nil, uriPrefixes: [String]? = nil
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

    /// HELLO is always answered, so that any caller can learn what it may do.
    public static let alwaysAllowed: Set<Opcode> = [.hello]

    public func matches(_ caller: PeerCredentials) -> Bool {
        (uid == nil || uid == caller.uid) && (gid.map(caller.isMember(of:)) ?? true)
    }

    public func allowsServer(_ name: String) -> Bool {
        servers?.contains(name) ?? true
    }

    /// Whether a SIGN_REQUEST's method and uri fall within this rule's limits.
    func allowsRequest(method: UnsafeRawBufferPointer, uri: UnsafeRawBufferPointer) -> Bool {
        if let methods, !methods.contains(where: { $0.utf8.elementsEqual(method) }) { return false }
        if let uriPrefixes {
            guard !URIPath.hasDotSegment(uri) else { return false }
            return uriPrefixes.contains { prefix in uri.count >= prefix.utf8.count && uri.prefix(prefix.utf8.count).elementsEqual(prefix.utf8) }
        }
        return true
    }
}

enum URIPath {
    /// Whether the path part of a request target has a `.` or `..` segment, spelled plainly or
    /// percent-encoded: such a uri could pass a prefix check and name another endpoint once the
    /// receiving server normalises it.
    static func hasDotSegment(_ uri: UnsafeRawBufferPointer) -> Bool {
        let pathEnd = uri.firstIndex(of: UInt8(ascii: "?")) ?? uri.count
        var segment: [UInt8] = []
        func isDot(_ s: [UInt8]) -> Bool {
            var decoded: [UInt8] = []
            var i = 0
            while i < s.count {
                if s[i] == UInt8(ascii: "%"), i + 2 < s.count, s[i + 1] == UInt8(ascii: "2"), s[i + 2] | 0x20 == UInt8(ascii: "e") {
                    decoded.append(UInt8(ascii: "."))
                    i += 3
                } else {
                    decoded.append(s[i])
                    i += 1
                }
            }
            return decoded == [0x2E] || decoded == [0x2E, 0x2E]
        }
        for index in 0...pathEnd {
            if index == pathEnd || uri[index] == UInt8(ascii: "/") {
                if isDot(segment) { return true }
                segment.removeAll(keepingCapacity: true)
            } else {
                segment.append(uri[index])
            }
        }
        return false
    }
}
