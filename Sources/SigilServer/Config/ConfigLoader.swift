import SigilCore
import SigilPosix
import Yams

/// Reads `sigild`'s YAML configuration (schema: docs/configuration.md). Every error names the
/// file, the field and the line; unknown fields are errors too, since a misspelt limit or rule
/// silently ignored is worse.
public enum ConfigLoader {
    /// The largest configuration file read. Thousands of servers belong in `key_directories`,
    /// not in one YAML block each.
    public static let maxFileSize = 16 << 20

    public static func load(path: String) throws(ConfigError) -> Configuration {
        let bytes: [UInt8]
        do {
            bytes = try Posix.readTrustedFile(path, limit: maxFileSize)
        } catch {
            throw ConfigError(file: path, field: "", "cannot read: \(error)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(file: path, field: "", "not UTF-8 text")
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws(ConfigError) -> Configuration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigError(file: path, field: "", line: yamlErrorLine(error), "not valid YAML: \(yamlProblem(error))")
        } catch {
            throw ConfigError(file: path, field: "", "not valid YAML")
        }
        guard let root else { throw ConfigError(file: path, field: "", "the file is empty") }
        let doc = Field(node: root, path: "", file: path)
        return try Reader(file: path).configuration(doc)
    }

    /// Every key the loader accepts, by section (`listen[]` for list items, `servers.*` for the
    /// entries of a map keyed by name). docs/configuration.md documents exactly these; a test
    /// holds the two together.
    public static let schema: [String: Set<String>] = [
        "": ["listen", "servers", "key_directories", "access", "limits", "memory_lock", "log_level", "workers", "audit"],
        "servers.*": ["keys", "retired", "key_document_validity"],
        "servers.*.retired[]": ["id", "key", "expired_ts"],
        "key_directories[]": ["path", "pattern", "key_document_validity"],
        "listen[]": [
            "name", "path", "fd", "mode", "owner", "group", "abstract", "access", "max_connections", "max_connections_per_uid",
            "reserved_connections", "rate_limit",
        ],
        "listen[].rate_limit": ["per_second", "burst"],
        "access[]": ["uid", "user", "gid", "group", "operations", "servers", "methods", "uri_prefixes"],
        "limits": [
            "max_frame", "max_batch", "max_in_flight", "max_connections", "max_connections_per_uid", "frames_per_turn",
            "offload_batch_items", "idle_timeout", "frame_timeout", "drain_timeout", "max_pending_output", "write_timeout",
            "max_buffered", "max_buffered_per_uid", "max_json_depth",
        ],
        "audit": ["file", "journal", "journal_socket", "uri", "queue"],
    ]

    /// The deepest JSON the daemon can be configured to accept (`limits.max_json_depth`).
    public static let maxJSONDepthRange: ClosedRange<Int64> =
        Int64(JSONLimits.supportedDepths.lowerBound)...Int64(JSONLimits.supportedDepths.upperBound)

    private static func yamlErrorLine(_ error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return nil
        }
    }

    /// The problem only: Yams's full description quotes the offending line, and configuration
    /// errors can reach `systemctl status` (see `ConfigError.location`).
    private static func yamlProblem(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): return problem
        case .reader(let problem, _, _, _): return problem
        case .duplicatedKeysInMapping(let duplicates, _): return "duplicate keys \(duplicates.joined(separator: ", "))"
        default: return "unreadable"
        }
    }
}

/// A node and where it sits, so errors can name it.
struct Field {
    let node: Node
    let path: String
    let file: String

    var line: Int? { node.mark?.line }

    func error(_ message: String) -> ConfigError {
        ConfigError(file: file, field: path, line: line, message)
    }

    func child(_ key: String, _ node: Node) -> Field {
        Field(node: node, path: path.isEmpty ? key : "\(path).\(key)", file: file)
    }

    func element(_ index: Int, _ node: Node) -> Field {
        Field(node: node, path: "\(path)[\(index)]", file: file)
    }

    /// The members of a mapping, refusing keys outside `allowed` and duplicates.
    func mapping(allowed: Set<String>? = nil) throws(ConfigError) -> [(key: String, field: Field)] {
        guard case .mapping(let mapping) = node else { throw error("expected a mapping (key: value lines)") }
        var seen: Set<String> = []
        var out: [(String, Field)] = []
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let scalar) = keyNode else { throw error("mapping keys must be plain text") }
            let key = scalar.string
            let field = child(key, valueNode)
            if let allowed, !allowed.contains(key) {
                throw ConfigError(
                    file: file, field: field.path, line: keyNode.mark?.line,
                    "unknown field; expected one of: \(allowed.sorted().joined(separator: ", ")) (docs/configuration.md)")
            }
            guard seen.insert(key).inserted else { throw ConfigError(file: file, field: field.path, line: keyNode.mark?.line, "appears twice") }
            out.append((key, field))
        }
        return out
    }

    func mapping(section: String) throws(ConfigError) -> [(key: String, field: Field)] {
        try mapping(allowed: ConfigLoader.schema[section])
    }

    func sequence() throws(ConfigError) -> [Field] {
        guard case .sequence(let sequence) = node else { throw error("expected a list") }
        return sequence.enumerated().map { element($0.offset, $0.element) }
    }

    /// A list, or a single value taken as a list of one.
    func sequenceOrScalar() throws(ConfigError) -> [Field] {
        if case .scalar = node { return [self] }
        return try sequence()
    }

    func string() throws(ConfigError) -> String {
        guard case .scalar(let scalar) = node else { throw error("expected a single value") }
        guard !scalar.string.isEmpty else { throw error("must not be empty") }
        return scalar.string
    }

    func boolean() throws(ConfigError) -> Bool {
        switch try string() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        case let other: throw error("expected true or false, found \(ConfigText.quote(other))")
        }
    }

    /// A whole number in `range`; `_` may group digits (`1_000_000`).
    func integer(in range: ClosedRange<Int64>) throws(ConfigError) -> Int64 {
        let text = try string()
        let digits = text.filter { $0 != "_" }
        guard let value = Int64(digits) else {
            let looksNumeric = !digits.isEmpty && digits.drop { $0 == "-" || $0 == "+" }.allSatisfy(\.isNumber)
            throw error(looksNumeric ? "\(ConfigText.quote(text)) is out of range (\(range.lowerBound) to \(range.upperBound))" : "expected a whole number, found \(ConfigText.quote(text))")
        }
        guard range.contains(value) else { throw error("must be between \(range.lowerBound) and \(range.upperBound), found \(value)") }
        return value
    }

    func number(in range: ClosedRange<Double>) throws(ConfigError) -> Double {
        let text = try string()
        guard let value = Double(text.filter { $0 != "_" }), value.isFinite else { throw error("expected a number, found \(ConfigText.quote(text))") }
        guard range.contains(value) else { throw error("must be between \(range.lowerBound) and \(range.upperBound), found \(value)") }
        return value
    }

    func duration(in range: ClosedRange<Int64>) throws(ConfigError) -> Int64 {
        let text = try string()
        let value: Int64
        do {
            value = try DurationText.milliseconds(text)
        } catch {
            throw self.error(error.description)
        }
        guard range.contains(value) else { throw self.error("must be between \(range.lowerBound) ms and \(range.upperBound) ms") }
        return value
    }

    /// A size such as `65536`, `64KiB`, `64k`, `1MiB`, `1M` or `1GiB` (units are powers of 1024).
    func byteSize(in range: ClosedRange<Int64>) throws(ConfigError) -> Int64 {
        let text = try string()
        let value: Int64
        do {
            value = try ByteSizeText.bytes(text)
        } catch {
            throw self.error(error.description)
        }
        guard range.contains(value) else { throw self.error("must be between \(range.lowerBound) and \(range.upperBound) bytes, found \(value)") }
        return value
    }

    /// A uid given as a number or a user name.
    func userID() throws(ConfigError) -> UInt32 {
        let text = try string()
        if text.allSatisfy(\.isNumber) { return UInt32(try integer(in: 0...Int64(UInt32.max - 1))) }
        guard let uid = Posix.userID(named: text) else { throw error("no such user \(ConfigText.quote(text))") }
        return uid
    }

    /// A gid given as a number or a group name.
    func groupID() throws(ConfigError) -> UInt32 {
        let text = try string()
        if text.allSatisfy(\.isNumber) { return UInt32(try integer(in: 0...Int64(UInt32.max - 1))) }
        guard let gid = Posix.groupID(named: text) else { throw error("no such group \(ConfigText.quote(text))") }
        return gid
    }
}

/// How configuration errors quote what the file says: short, on one line, and with any long
/// run of base64 characters replaced by its length, since a value in the wrong place may be a
/// seed pasted by mistake (errors never print key material).
enum ConfigText {
    static func quote(_ value: String) -> String {
        var out = ""
        var run = ""
        func flush() {
            out += run.count >= 20 ? "<\(run.count) base64 characters>" : run
            run = ""
        }
        for character in value.prefix(200) {
            if character.isASCII && (character.isLetter || character.isNumber || "+/=-_".contains(character)) {
                run.append(character)
            } else {
                flush()
                out.append(character.isASCII && !character.isNewline ? character : "?")
            }
        }
        flush()
        return "'" + out.truncatedUTF8(64) + "'"
    }
}

/// Sizes as operators write them: digits (optionally grouped with `_`) and an optional unit.
enum ByteSizeText {
    struct ParseError: Error, CustomStringConvertible {
        let description: String
    }

    static let units: [(suffix: String, scale: Int64)] = [
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("k", 1 << 10), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("B", 1),
    ]

    static func bytes(_ text: String) throws(ParseError) -> Int64 {
        var digits = Substring(text)
        var scale: Int64 = 1
        for unit in units where text.hasSuffix(unit.suffix) {
            digits = digits.dropLast(unit.suffix.count)
            scale = unit.scale
            break
        }
        let cleaned = digits.filter { $0 != "_" }
        if cleaned.hasPrefix("-") { throw ParseError(description: "a size cannot be negative, found \(ConfigText.quote(text))") }
        guard !cleaned.isEmpty, cleaned.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int64(cleaned) else {
            throw ParseError(description: "expected a size such as 65536, 64KiB or 1MiB, found \(ConfigText.quote(text))")
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: scale)
        guard !overflow else { throw ParseError(description: "\(ConfigText.quote(text)) is too large") }
        return product
    }
}

private struct Reader {
    let file: String

    func configuration(_ doc: Field) throws(ConfigError) -> Configuration {
        let members = try doc.mapping(section: "")
        var config = Configuration(listeners: [], servers: [], access: [], sourcePath: file)
        var listenField: Field?
        var accessField: Field?
        var serversField: Field?
        for (key, field) in members {
            switch key {
            case "listen": listenField = field
            case "servers": serversField = field
            case "key_directories": config.keyDirectories = try field.sequence().map { (item) throws(ConfigError) in try keyDirectory(item) }
            case "access": accessField = field
            case "limits": config.limits = try limits(field)
            case "memory_lock":
                let text = try field.string()
                guard let policy = MemoryLockPolicy(rawValue: text) else { throw field.error("expected 'require' or 'warn', found \(ConfigText.quote(text))") }
                config.memoryLock = policy
            case "log_level":
                let text = try field.string()
                guard LogLevelName.parse(text) != nil else { throw field.error("expected one of \(LogLevelName.names.joined(separator: ", ")), found \(ConfigText.quote(text))") }
                config.logLevel = text
            case "workers":
                config.workers = Int(try field.integer(in: 0...256))
            case "audit":
                config.audit = try audit(field)
            default: break
            }
        }
        if let serversField { config.servers = try servers(serversField) }
        guard !config.servers.isEmpty || !config.keyDirectories.isEmpty else {
            throw ConfigError(file: file, field: "servers", "missing: name at least one server and its key files, or a key directory (key_directories)")
        }
        // With key directories, names come from files and may appear later: a rule may name one
        // that is not there yet (the daemon warns). Without, a name no server has is a typo.
        let knownNames: Set<String>? = config.keyDirectories.isEmpty ? Set(config.servers.map(\.name)) : nil
        if let accessField { config.access = try rules(accessField, servers: knownNames) }
        if let listenField {
            config.listeners = try listeners(listenField, servers: knownNames, limits: config.limits)
        } else {
            config.listeners = [Configuration.Listener(name: "sigild", path: Configuration.defaultSocketPath)]
        }
        return config
    }

    func servers(_ field: Field) throws(ConfigError) -> [Configuration.Server] {
        var out: [Configuration.Server] = []
        let members = try field.mapping()
        for (name, serverField) in members {
            guard ServerName.isValid(name) else { throw serverField.error("\(ConfigText.quote(name)) is not a valid Matrix server name") }
            var server = Configuration.Server(name: name, keyFiles: [])
            for (key, value) in try serverField.mapping(section: "servers.*") {
                switch key {
                case "keys":
                    server.keyFiles = try value.sequenceOrScalar().map { (item) throws(ConfigError) in try item.string() }
                case "retired":
                    server.retired = try value.sequence().map { (item) throws(ConfigError) in try retired(item) }
                case "key_document_validity":
                    server.keyDocumentValidity = try value.duration(in: KeyDocument.minValidity...KeyDocument.maxValidity)
                default: break
                }
            }
            guard !server.keyFiles.isEmpty else { throw serverField.child("keys", serverField.node).error("missing: list the server's key files, the signing key first") }
            out.append(server)
        }
        return out
    }

    func keyDirectory(_ field: Field) throws(ConfigError) -> Configuration.KeyDirectory {
        var directory = Configuration.KeyDirectory(path: "")
        for (key, value) in try field.mapping(section: "key_directories[]") {
            switch key {
            case "path":
                let path = try value.string()
                guard path.hasPrefix("/") else { throw value.error("give an absolute path") }
                directory.path = path
            case "pattern":
                let pattern = try value.string()
                let parts = pattern.split(separator: "*", omittingEmptySubsequences: false)
                guard parts.count == 2, !pattern.contains("/") else {
                    throw value.error("expected a file name pattern with one '*' standing for the server name, such as '*.key' or 'signing-*.pem'")
                }
                directory.prefix = String(parts[0])
                directory.suffix = String(parts[1])
            case "key_document_validity":
                directory.keyDocumentValidity = try value.duration(in: KeyDocument.minValidity...KeyDocument.maxValidity)
            default: break
            }
        }
        guard !directory.path.isEmpty else { throw field.error("missing path") }
        return directory
    }

    func retired(_ field: Field) throws(ConfigError) -> RetiredKey {
        var id: KeyID?
        var key: PublicKey?
        var expired: Int64?
        for (name, value) in try field.mapping(section: "servers.*.retired[]") {
            switch name {
            case "id":
                let text = try value.string()
                guard let parsed = KeyID(text) else { throw value.error("expected ed25519:VERSION, found \(ConfigText.quote(text))") }
                id = parsed
            case "key":
                guard let parsed = PublicKey(base64: try value.string()) else { throw value.error("expected a 32-byte public key in base64") }
                key = parsed
            case "expired_ts":
                expired = try value.integer(in: 0...canonicalJSONMaxInteger)
            default: break
            }
        }
        guard let id else { throw field.error("missing id") }
        guard let key else { throw field.error("missing key (the public key, base64)") }
        guard let expired else { throw field.error("missing expired_ts (milliseconds since the epoch)") }
        return RetiredKey(id: id, publicKey: key, expiredTS: expired)
    }

    func rules(_ field: Field, servers: Set<String>?) throws(ConfigError) -> [AccessRule] {
        try field.sequence().map { (item) throws(ConfigError) in try rule(item, servers: servers) }
    }

    func rule(_ field: Field, servers: Set<String>?) throws(ConfigError) -> AccessRule {
        var rule = AccessRule()
        for (key, value) in try field.mapping(section: "access[]") {
            switch key {
            case "uid", "user":
                guard rule.uid == nil else { throw value.error("give uid or user, not both") }
                rule.uid = try value.userID()
            case "gid", "group":
                guard rule.gid == nil else { throw value.error("give gid or group, not both") }
                rule.gid = try value.groupID()
            case "operations":
                var ops: Set<Opcode> = []
                for item in try value.sequenceOrScalar() {
                    let name = try item.string()
                    guard let op = Opcode(name: name) else {
                        throw item.error("unknown operation \(ConfigText.quote(name)); known: \(Opcode.allCases.map(\.name).joined(separator: ", "))")
                    }
                    ops.insert(op)
                }
                rule.operations = ops
            case "servers":
                var entries: [String] = []
                for item in try value.sequenceOrScalar() {
                    let entry = try item.string()
                    do {
                        _ = try ServerSelector([entry])
                    } catch {
                        throw item.error(error.description)
                    }
                    if let servers, !entry.hasPrefix("*"), !servers.contains(entry) {
                        throw item.error("\(ConfigText.quote(entry)) is not one of the configured servers")
                    }
                    entries.append(entry)
                }
                do {
                    rule.servers = try ServerSelector(entries)
                } catch {
                    throw value.error(error.description)
                }
            case "methods":
                rule.methods = Set(
                    try value.sequenceOrScalar().map { (item) throws(ConfigError) in
                        let method = try item.string()
                        guard method.utf8.allSatisfy(XMatrixToken.isTokenByte), method.utf8.count <= 32 else {
                            throw item.error("\(ConfigText.quote(method)) is not an HTTP method (a token such as GET)")
                        }
                        return method
                    })
            case "uri_prefixes":
                rule.uriPrefixes = try value.sequenceOrScalar().map { (item) throws(ConfigError) in
                    let prefix = try item.string()
                    guard prefix.hasPrefix("/") else { throw item.error("a uri prefix starts with '/'") }
                    guard !prefix.contains("?"), !prefix.contains("#"), !prefix.contains("%") else {
                        throw item.error("a uri prefix is a plain path, compared with the decoded path: no '?', '#' or '%'")
                    }
                    guard prefix.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw item.error("a uri prefix is visible ASCII") }
                    return prefix
                }
            default: break
            }
        }
        guard rule.uid != nil || rule.gid != nil else {
            throw field.error("a rule must name the callers it applies to: uid, user, gid or group")
        }
        return rule
    }

    func listeners(_ field: Field, servers: Set<String>?, limits: Configuration.Limits) throws(ConfigError) -> [Configuration.Listener] {
        var out: [Configuration.Listener] = []
        for item in try field.sequence() {
            var listener = Configuration.Listener(name: "")
            var pathField: Field?
            for (key, value) in try item.mapping(section: "listen[]") {
                switch key {
                case "name":
                    let name = try value.string()
                    guard name.utf8.count <= 64, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }) else {
                        throw value.error("a listener name is at most 64 visible ASCII characters, without ':' (systemd's FileDescriptorName= rules)")
                    }
                    listener.name = name
                case "path":
                    let path = try value.string()
                    guard path.utf8.count < 108 else { throw value.error("socket paths are limited to 107 bytes") }
                    guard path.hasPrefix("/") || path.hasPrefix("@") else { throw value.error("give an absolute path (or @name for an abstract socket)") }
                    listener.path = path
                    pathField = value
                case "fd": listener.fd = Int32(try value.integer(in: 3...65535))
                case "mode":
                    let text = try value.string()
                    guard let mode = UInt32(text, radix: 8), mode <= 0o777 else { throw value.error("expected an octal mode such as \"0660\"") }
                    listener.mode = mode
                case "owner": listener.owner = try value.userID()
                case "group": listener.group = try value.groupID()
                case "abstract": listener.abstract = try value.boolean()
                case "access": listener.access = try rules(value, servers: servers)
                case "max_connections": listener.maxConnections = Int(try value.integer(in: 1...1_000_000))
                case "max_connections_per_uid": listener.maxConnectionsPerUID = Int(try value.integer(in: 1...1_000_000))
                case "reserved_connections": listener.reservedConnections = Int(try value.integer(in: 0...1_000_000))
                case "rate_limit": listener.rateLimit = try rateLimit(value)
                default: break
                }
            }
            guard !listener.name.isEmpty else { throw item.error("missing name (it matches systemd's FileDescriptorName=)") }
            if out.contains(where: { $0.name == listener.name }) { throw item.error("listener name '\(listener.name)' is used twice") }
            if let path = listener.path, path.hasPrefix("@"), !listener.abstract {
                throw (pathField ?? item).error(
                    "'\(path)' is an abstract socket: it has no file permissions (any local process can connect) and whoever binds the name first owns it; set abstract: true to accept that")
            }
            if listener.abstract && (listener.owner != nil || listener.group != nil) {
                throw item.error("an abstract socket has no owner or group to set")
            }
            out.append(listener)
        }
        guard !out.isEmpty else { throw field.error("name at least one listener") }
        let reserved = out.reduce(0) { $0 + ($1.reservedConnections ?? 0) }
        if reserved >= limits.maxConnections {
            throw field.error("the listeners reserve \(reserved) connections, but limits.max_connections is \(limits.maxConnections): leave room for more")
        }
        return out
    }

    func rateLimit(_ field: Field) throws(ConfigError) -> RateLimit {
        var perSecond: Double?
        var burst: Int?
        for (key, value) in try field.mapping(section: "listen[].rate_limit") {
            switch key {
            case "per_second": perSecond = try value.number(in: 0.001...1_000_000)
            case "burst": burst = Int(try value.integer(in: 1...1_000_000))
            default: break
            }
        }
        guard let perSecond else { throw field.error("missing per_second (signatures per second per caller uid)") }
        return RateLimit(perSecond: perSecond, burst: burst ?? max(1, Int(perSecond.rounded(.up))))
    }

    func limits(_ field: Field) throws(ConfigError) -> Configuration.Limits {
        var limits = Configuration.Limits()
        for (key, value) in try field.mapping(section: "limits") {
            switch key {
            case "max_frame": limits.maxFrameLength = UInt32(try value.byteSize(in: 1024...(16 << 20)))
            case "max_batch": limits.maxBatchItems = Int(try value.integer(in: 1...65535))
            case "max_in_flight": limits.maxInFlight = Int(try value.integer(in: 1...1_000_000))
            case "max_connections": limits.maxConnections = Int(try value.integer(in: 1...1_000_000))
            case "max_connections_per_uid": limits.maxConnectionsPerUID = Int(try value.integer(in: 1...1_000_000))
            case "frames_per_turn": limits.framesPerTurn = Int(try value.integer(in: 1...100_000))
            case "offload_batch_items": limits.offloadBatchItems = Int(try value.integer(in: 1...65535))
            case "idle_timeout": limits.idleTimeout = try value.duration(in: 0...(30 * 86_400_000))
            case "frame_timeout": limits.frameTimeout = try value.duration(in: 100...3_600_000)
            case "drain_timeout": limits.drainTimeout = try value.duration(in: 0...3_600_000)
            case "max_pending_output": limits.maxPendingOutput = Int(try value.byteSize(in: 65536...(1 << 30)))
            case "write_timeout": limits.writeTimeout = try value.duration(in: 1000...86_400_000)
            case "max_buffered": limits.maxBuffered = Int(try value.byteSize(in: (1 << 20)...(64 << 30)))
            case "max_buffered_per_uid": limits.maxBufferedPerUID = Int(try value.byteSize(in: (1 << 20)...(64 << 30)))
            case "max_json_depth": limits.maxJSONDepth = Int(try value.integer(in: ConfigLoader.maxJSONDepthRange))
            default: break
            }
        }
        return limits
    }

    func audit(_ field: Field) throws(ConfigError) -> Configuration.Audit {
        var file: String?
        var journal = false
        var socket = Configuration.defaultJournalSocket
        var form = Configuration.Audit.URIForm.full
        var queue = 65536
        for (key, value) in try field.mapping(section: "audit") {
            switch key {
            case "file":
                let path = try value.string()
                guard path.hasPrefix("/") else { throw value.error("give an absolute path") }
                file = path
            case "journal": journal = try value.boolean()
            case "journal_socket":
                let path = try value.string()
                guard path.hasPrefix("/"), path.utf8.count < 108 else { throw value.error("give an absolute socket path under 108 bytes") }
                socket = path
            case "uri":
                let text = try value.string()
                guard let parsed = Configuration.Audit.URIForm(rawValue: text) else { throw value.error("expected 'full' or 'digest', found \(ConfigText.quote(text))") }
                form = parsed
            case "queue": queue = Int(try value.integer(in: 16...16_777_216))
            default: break
            }
        }
        switch (file, journal) {
        case (let path?, false): return Configuration.Audit(destination: .file(path), uri: form, queue: queue)
        case (nil, true): return Configuration.Audit(destination: .journal(socket: socket), uri: form, queue: queue)
        case (_?, true): throw field.error("give file or journal: true, not both")
        case (nil, false): throw field.error("give where records go: file: PATH, or journal: true")
        }
    }
}

/// HTTP token characters (RFC 9110 tchar), for methods in rules.
enum XMatrixToken {
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        default: return Array("!#$%&'*+-.^_`|~".utf8).contains(b)
        }
    }
}
