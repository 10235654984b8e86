import FuzzSupport
import SigilServer

/// Writes `sigild` YAML from fuzz choices. The sections and their keys come from the loader's
/// own schema (`ConfigLoader.schema`), so a key the loader gains is fuzzed without a change
/// here; what a key's value looks like is guessed from its name, and now and then any kind of
/// value goes anywhere.
enum ConfigBuilder {
    enum Kind: CaseIterable { case integer, size, duration, boolean, text, path, serverList, list }

    static func document(_ r: inout FuzzReader) -> String {
        var lines: [String] = []
        mapping(section: "", indent: "", into: &lines, &r, depth: 0)
        if r.int(in: 0...15) == 0 {
            lines.append(r.pick(["unknown: 1", "servers: {}", "limits: 5", "- a", "  bad indent: x", "listen: []"]))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The keys of `section` (some of them, in a chosen order), as `key: value` lines.
    static func mapping(section: String, indent: String, into lines: inout [String], _ r: inout FuzzReader, depth: Int) {
        var keys = (ConfigLoader.schema[section] ?? []).sorted()
        for i in keys.indices.reversed() { keys.swapAt(i, r.int(in: 0...i)) }
        let count = keys.isEmpty ? 0 : r.int(in: (section.isEmpty ? 1 : 0)...min(keys.count, 6))
        for key in keys.prefix(count) {
            let path = section.isEmpty ? key : section + "." + key
            if ConfigLoader.schema[path] != nil, depth < 4 {
                lines.append(indent + key + ":")
                mapping(section: path, indent: indent + "  ", into: &lines, &r, depth: depth + 1)
            } else if ConfigLoader.schema[path + "[]"] != nil, depth < 4 {
                lines.append(indent + key + ":")
                for _ in 0..<r.int(in: 0...3) {
                    var item: [String] = []
                    mapping(section: path + "[]", indent: indent + "    ", into: &item, &r, depth: depth + 1)
                    if item.isEmpty {
                        lines.append(indent + "  - {}")
                    } else {
                        item[0] = indent + "  - " + item[0].dropFirst(indent.count + 4)
                        lines.append(contentsOf: item)
                    }
                }
            } else if ConfigLoader.schema[path + ".*"] != nil, depth < 4 {
                lines.append(indent + key + ":")
                for _ in 0..<r.int(in: 0...3) {
                    lines.append(indent + "  " + serverName(&r) + ":")
                    mapping(section: path + ".*", indent: indent + "    ", into: &lines, &r, depth: depth + 1)
                }
            } else {
                let kind = r.int(in: 0...11) == 0 ? r.pick(Kind.allCases) : self.kind(of: key)
                lines.append(indent + key + ": " + value(kind, key: key, &r))
            }
        }
    }

    static func kind(of key: String) -> Kind {
        switch key {
        case _ where key.hasSuffix("timeout") || key.hasSuffix("validity"): return .duration
        case "max_frame", "max_pending_output", "max_buffered", "max_buffered_per_uid": return .size
        case "journal", "abstract": return .boolean
        case "servers": return .serverList
        case "keys", "path", "file", "journal_socket": return .path
        case "operations", "methods", "uri_prefixes": return .list
        case "memory_lock", "log_level", "name", "pattern", "id", "key", "uri", "user", "group", "owner", "mode": return .text
        default: return .integer
        }
    }

    static func serverName(_ r: inout FuzzReader) -> String {
        r.pick([
            "example.org", "example.org:8448", "[::1]:8448", "1.2.3.4", "a", "ex ample.org", "example.org:", "[::1",
            String(repeating: "a", count: 256), "\"quoted.example\"", "'*.example.org'",
        ])
    }

    static let numbers = [
        "0", "1", "-1", "2", "3", "7", "8", "15", "16", "63", "64", "100", "255", "256", "1023", "1024", "1025", "4096", "4097", "65535",
        "65536", "65537", "100000", "1000000", "1000001", "16777216", "16777217", "1073741824", "1073741825", "2147483647", "4294967294",
        "4294967295", "4294967296", "9007199254740991", "9007199254740992", "9223372036854775807", "9223372036854775808",
        "-9223372036854775808", "99999999999999999999", "1_000", "_1", "1__0", "+5", "0x10", "010", "1e3", "1.5", "0.001", " 7", "\"12\"",
        "'12'", "~", "null", "true", "[1]", "{}", "٣",
    ]

    static let texts: [String: [String]] = [
        "memory_lock": ["require", "warn", "Require", ""],
        "log_level": ["info", "debug", "trace", "warning", "error", "critical", "notice", "verbose", "INFO"],
        "name": ["mmr", "admin", "sigild", "''", "mmr"],
        "pattern": ["'*.key'", "'signing-*.pem'", "'*'", "'a*b*c'", "'dir/*.key'", "key"],
        "id": ["ed25519:a_OLD1", "ed25519:", "ed448:x", "a_OLD1", "\"ed25519:a b\""],
        "key": ["XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI", "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI=", "AAAA"],
        "uri": ["full", "digest", "hash"],
        "user": ["root", "nobody", "no-such-user", "0", "4294967295"],
        "group": ["root", "nogroup", "no-such-group", "0"],
        "owner": ["root", "0", "nobody"],
        "mode": ["\"0660\"", "0660", "\"0777\"", "\"1000\"", "\"0o600\"", "\"9\"", "-1", "660"],
    ]

    static func value(_ kind: Kind, key: String, _ r: inout FuzzReader) -> String {
        let number = r.pick(numbers)
        switch kind {
        case .integer:
            return number
        case .size:
            return number + r.pick(["", "", "KiB", "MiB", "GiB", "k", "K", "M", "G", "B", "kb", " KiB", "KiBKiB"])
        case .duration:
            switch r.int(in: 0...3) {
            case 0: return number
            case 1: return number + r.pick(["ms", "s", "m", "h", "d", "w", "y", "S"])
            case 2:
                return r.pick([
                    "1h30m", "10s", "100ms", "99ms", "3600001ms", "30d", "31d", "1w1d", "999999999999w", "15250w6d", "1h1h", "1 h",
                ])
            default:
                return "\(r.pick(Array(numbers.prefix(38))))\(r.pick(["s", "m"]))\(r.pick(Array(numbers.prefix(38))))\(r.pick(["ms", "s"]))"
            }
        case .boolean:
            return r.pick(["true", "false", "yes", "no", "on", "off", "1", "maybe", "True"])
        case .text:
            return r.pick(texts[key] ?? ["x", "", "\"\"", "~"])
        case .path:
            return r.pick([
                "/etc/sigil/a.key", "credential:mmr.signing.key", "relative.key", "''", "/run/sigil/sigild.sock", "@abstract",
                "/" + String(repeating: "p", count: 120), "[/a.key, /b.key]", "[]",
            ])
        case .serverList:
            return r.pick(["[example.org]", "example.org", "'*'", "['*.example.org']", "['*.']", "[other.example]", "[]", "['*:8448']"])
        case .list:
            return r.pick([
                "[sign_request]", "sign-json", "[ping, stats, list_keys]", "[nope]", "[]", "HELLO", "[GET]", "[GET, PUT]", "['G ET']",
                "[/_matrix/federation/v1/media/]", "[/a?b]", "[relative]", "[/%2e%2e/]",
            ])
        }
    }
}
