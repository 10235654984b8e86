import SigilCore
import SigilPosix
import Yams

/// Reads `sigild`'s YAML configuration. Every error names the file, the field and the line;
/// unknown fields are errors too, since a misspelt limit or rule silently ignored is worse.
public enum ConfigLoader {
    public static func load(path: String) throws(ConfigError) -> Configuration {
        let bytes: [UInt8]
        do {
            bytes = try Posix.readSmallFile(path)
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
            throw ConfigError(file: path, field: "", "not valid YAML: \(error)")
        }
        guard let root else { throw ConfigError(file: path, field: "", "the file is empty") }
        let doc = Field(node: root, path: "", file: path)
        return try Reader(file: path).configuration(doc)
    }

    private static func yamlErrorLine(_ error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return nil
        }
    }

    private static func yamlProblem(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): return problem
        case .reader(let problem, _, _, _): return problem
        case .duplicatedKeysInMapping(let duplicates, _): return "duplicate keys \(duplicates.joined(separator: ", "))"
        default: return "\(error)"
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
                    "unknown field; expected one of: \(allowed.sorted().joined(separator: ", "))")
            }
            guard seen.insert(key).inserted else { throw ConfigError(file: file, field: field.path, line: keyNode.mark?.line, "appears twice") }
            out.append((key, field))
        }
        return out
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

    func integer(in range: ClosedRange<Int64>) throws(ConfigError) -> Int64 {
        let text = try string()
        guard let value = Int64(text.replacingUnderscores()) else { throw error("expected a whole number, found '\(text)'") }
        guard range.contains(value) else { throw error("must be between \(range.lowerBound) and \(range.upperBound)") }
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

    func byteSize(in range: ClosedRange<Int64>) throws(ConfigError) -> Int64 {
        let text = try string()
        let units: [(String, Int64)] = [("KiB", 1024), ("MiB", 1 << 20), ("k", 1024), ("K", 1024), ("M", 1 << 20)]
        var value: Int64?
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            value = Int64(text.dropLast(suffix.count)).map { $0 * scale }
            break
        }
        if value == nil { value = Int64(text) }
        guard let value else { throw error("expected a size such as 65536, 64KiB or 1MiB, found '\(text)'") }
        guard range.contains(value) else { throw error("must be between \(range.lowerBound) and \(range.upperBound) bytes") }
        return value
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String { String(filter { $0 != "_" }) }
}

private struct Reader {
    let file: String

    func configuration(_ doc: Field) throws(ConfigError) -> Configuration {
        let members = try doc.mapping(allowed: ["listen", "servers", "access", "limits", "memory_lock", "log_level", "workers"])
        var config = Configuration(listeners: [], servers: [], access: [], sourcePath: file)
        var listenField: Field?
        var accessField: Field?
        var serversField: Field?
        for (key, field) in members {
            switch key {
            case "listen": listenField = field
            case "servers": serversField = field
            case "access": accessField = field
            case "limits": config.limits = try limits(field)
            case "memory_lock":
                let text = try field.string()
                guard let policy = MemoryLockPolicy(rawValue: text) else { throw field.error("expected 'require' or 'warn', found '\(text)'") }
                config.memoryLock = policy
            case "log_level":
                let text = try field.string()
                guard LogLevelName.parse(text) != nil else { throw field.error("expected one of \(LogLevelName.names.joined(separator: ", ")), found '\(text)'") }
                config.logLevel = text
            case "workers":
                config.workers = Int(try field.integer(in: 0...256))
            default: break
            }
        }
        guard let serversField else { throw ConfigError(file: file, field: "servers", "missing: name at least one server and its key files") }
        config.servers = try servers(serversField)
        let serverNames = Set(config.servers.map(\.name))
        if let accessField { config.access = try rules(accessField, servers: serverNames) }
        if let listenField {
            config.listeners = try listeners(listenField, servers: serverNames)
        } else {
            config.listeners = [Configuration.Listener(name: "sigild", path: Configuration.defaultSocketPath)]
        }
        return config
    }

    func servers(_ field: Field) throws(ConfigError) -> [Configuration.Server] {
        var out: [Configuration.Server] = []
        let members = try field.mapping()
        guard !members.isEmpty else { throw field.error("name at least one server") }
        for (name, serverField) in members {
            guard ServerName.isValid(name) else { throw serverField.error("'\(name)' is not a valid Matrix server name") }
            var server = Configuration.Server(name: name, keyFiles: [])
            for (key, value) in try serverField.mapping(allowed: ["keys", "retired", "key_document_validity"]) {
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

    func retired(_ field: Field) throws(ConfigError) -> RetiredKey {
        var id: KeyID?
        var key: PublicKey?
        var expired: Int64?
        for (name, value) in try field.mapping(allowed: ["id", "key", "expired_ts"]) {
            switch name {
            case "id":
                let text = try value.string()
                guard let parsed = KeyID(text) else { throw value.error("expected ed25519:VERSION, found '\(text)'") }
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

    func rules(_ field: Field, servers: Set<String>) throws(ConfigError) -> [AccessRule] {
        try field.sequence().map { (item) throws(ConfigError) in try rule(item, servers: servers) }
    }

    func rule(_ field: Field, servers: Set<String>) throws(ConfigError) -> AccessRule {
        var rule = AccessRule()
        for (key, value) in try field.mapping(allowed: ["uid", "user", "gid", "group", "operations", "servers", "methods", "uri_prefixes"]) {
            switch key {
            case "uid":
                guard rule.uid == nil else { throw value.error("give uid or user, not both") }
                rule.uid = UInt32(try value.integer(in: 0...Int64(UInt32.max - 1)))
            case "user":
                guard rule.uid == nil else { throw value.error("give uid or user, not both") }
                let name = try value.string()
                guard let uid = Posix.userID(named: name) else { throw value.error("no such user '\(name)'") }
                rule.uid = uid
            case "gid":
                guard rule.gid == nil else { throw value.error("give gid or group, not both") }
                rule.gid = UInt32(try value.integer(in: 0...Int64(UInt32.max - 1)))
            case "group":
                guard rule.gid == nil else { throw value.error("give gid or group, not both") }
                let name = try value.string()
                guard let gid = Posix.groupID(named: name) else { throw value.error("no such group '\(name)'") }
                rule.gid = gid
            case "operations":
                var ops: Set<Opcode> = []
                for item in try value.sequenceOrScalar() {
                    let name = try item.string()
                    guard let op = Opcode(name: name) else {
                        throw item.error("unknown operation '\(name)'; known: \(Opcode.allCases.map(\.name).joined(separator: ", "))")
                    }
                    ops.insert(op)
                }
                rule.operations = ops
            case "servers":
                var names: Set<String> = []
                for item in try value.sequenceOrScalar() {
                    let name = try item.string()
                    guard servers.contains(name) else { throw item.error("'\(name)' is not one of the configured servers") }
                    names.insert(name)
                }
                rule.servers = names
            case "methods":
                rule.methods = Set(try value.sequenceOrScalar().map { (item) throws(ConfigError) in try item.string() })
            case "uri_prefixes":
                rule.uriPrefixes = try value.sequenceOrScalar().map { (item) throws(ConfigError) in
                    let prefix = try item.string()
                    guard prefix.hasPrefix("/") else { throw item.error("a uri prefix starts with '/'") }
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

    func listeners(_ field: Field, servers: Set<String>) throws(ConfigError) -> [Configuration.Listener] {
        var out: [Configuration.Listener] = []
        for item in try field.sequence() {
            var listener = Configuration.Listener(name: "")
            for (key, value) in try item.mapping(allowed: ["name", "path", "fd", "mode", "access"]) {
                switch key {
                case "name": listener.name = try value.string()
                case "path":
                    let path = try value.string()
                    guard path.utf8.count < 108 else { throw value.error("socket paths are limited to 107 bytes") }
                    listener.path = path
                case "fd": listener.fd = Int32(try value.integer(in: 3...65535))
                case "mode":
                    let text = try value.string()
                    guard let mode = UInt32(text, radix: 8), mode <= 0o777 else { throw value.error("expected an octal mode such as \"0660\"") }
                    listener.mode = mode
                case "access": listener.access = try rules(value, servers: servers)
                default: break
                }
            }
            guard !listener.name.isEmpty else { throw item.error("missing name (it matches systemd's FileDescriptorName=)") }
            if out.contains(where: { $0.name == listener.name }) { throw item.error("listener name '\(listener.name)' is used twice") }
            out.append(listener)
        }
        guard !out.isEmpty else { throw field.error("name at least one listener") }
        return out
    }

    func limits(_ field: Field) throws(ConfigError) -> Configuration.Limits {
        var limits = Configuration.Limits()
        let allowed: Set<String> = [
            "max_frame", "max_batch", "max_in_flight", "max_connections", "frames_per_turn", "offload_batch_items",
            "idle_timeout", "frame_timeout", "drain_timeout", "max_pending_output", "write_timeout",
        ]
        for (key, value) in try field.mapping(allowed: allowed) {
            switch key {
            case "max_frame": limits.maxFrameLength = UInt32(try value.byteSize(in: 1024...(16 << 20)))
            case "max_batch": limits.maxBatchItems = Int(try value.integer(in: 1...65535))
            case "max_in_flight": limits.maxInFlight = Int(try value.integer(in: 1...1_000_000))
            case "max_connections": limits.maxConnections = Int(try value.integer(in: 1...1_000_000))
            case "frames_per_turn": limits.framesPerTurn = Int(try value.integer(in: 1...100_000))
            case "offload_batch_items": limits.offloadBatchItems = Int(try value.integer(in: 1...65535))
            case "idle_timeout": limits.idleTimeout = try value.duration(in: 0...(30 * 86_400_000))
            case "frame_timeout": limits.frameTimeout = try value.duration(in: 100...3_600_000)
            case "drain_timeout": limits.drainTimeout = try value.duration(in: 0...3_600_000)
            case "max_pending_output": limits.maxPendingOutput = Int(try value.byteSize(in: 65536...(1 << 30)))
            case "write_timeout": limits.writeTimeout = try value.duration(in: 1000...86_400_000)
            default: break
            }
        }
        return limits
    }
}
