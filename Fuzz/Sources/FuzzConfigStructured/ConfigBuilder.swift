import FuzzSupport

/// Writes `sigild` YAML from fuzz choices. The field names are the loader's (listed here: the
/// loader keeps them private); update them when the configuration grows.
enum ConfigBuilder {
    static let limitKeys: [(String, Kind)] = [
        ("max_frame", .size), ("max_batch", .integer), ("max_in_flight", .integer), ("max_connections", .integer),
        ("frames_per_turn", .integer), ("offload_batch_items", .integer), ("idle_timeout", .duration), ("frame_timeout", .duration),
        ("drain_timeout", .duration), ("max_pending_output", .size), ("write_timeout", .duration), ("max_json_depth", .integer),
    ]

    enum Kind { case integer, size, duration, text }

    static func document(_ r: inout FuzzReader) -> String {
        var lines: [String] = []
        let servers = (0..<r.int(in: 1...3)).map { _ in serverName(&r) }
        var sections = Array(0..<7)
        // Sections in a chosen order, some left out.
        for i in sections.indices.reversed() { sections.swapAt(i, r.int(in: 0...i)) }
        for section in sections where r.int(in: 0...5) != 0 {
            switch section {
            case 0:
                lines.append("servers:")
                for name in servers { lines.append(contentsOf: server(name, &r)) }
            case 1:
                lines.append("listen:")
                for _ in 0..<r.int(in: 0...3) { lines.append(contentsOf: listener(&r, servers: servers)) }
            case 2:
                lines.append("access:")
                for _ in 0..<r.int(in: 0...2) { lines.append(contentsOf: rule(&r, servers: servers, indent: "  ")) }
            case 3:
                lines.append("limits:")
                for _ in 0..<r.int(in: 1...4) {
                    let (key, kind) = r.pick(limitKeys)
                    lines.append("  \(key): \(value(kind, &r))")
                }
            case 4: lines.append("memory_lock: \(r.pick(["require", "warn", "Require", "", "~", "[warn]"]))")
            case 5: lines.append("log_level: \(r.pick(["info", "debug", "trace", "warning", "error", "critical", "notice", "verbose", "INFO"]))")
            default: lines.append("workers: \(value(.integer, &r))")
            }
        }
        if r.int(in: 0...15) == 0 { lines.append(r.pick(["unknown: 1", "servers: {}", "limits: 5", "- a", "  bad indent: x"])) }
        return lines.joined(separator: "\n") + "\n"
    }

    static func serverName(_ r: inout FuzzReader) -> String {
        r.pick(["example.org", "example.org:8448", "[::1]:8448", "1.2.3.4", "a", "ex ample.org", "example.org:", "[::1", String(repeating: "a", count: 256), "\"quoted.example\""])
    }

    static func server(_ name: String, _ r: inout FuzzReader) -> [String] {
        var lines = ["  \(name):"]
        switch r.int(in: 0...5) {
        case 0: lines.append("    keys: \(r.pick(["", "[]", "/etc/sigil/a.key", "credential:mmr.signing.key", "~"]))")
        case 1: break
        default:
            lines.append("    keys:")
            for _ in 0..<r.int(in: 1...3) { lines.append("      - \(r.pick(["/etc/sigil/a.key", "b.key", "''", "[x]"]))") }
        }
        if r.bool() {
            lines.append("    retired:")
            for _ in 0..<r.int(in: 0...2) {
                let id = r.pick(["ed25519:a_OLD1", "ed25519:", "ed448:x", "a_OLD1", "\"ed25519:a b\""])
                let key = r.pick(["XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI", "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI=", "AAAA", "~"])
                var fields = ["id: \(id)", "key: \(key)", "expired_ts: \(value(.integer, &r))"]
                if r.int(in: 0...5) == 0 { fields.remove(at: r.int(in: 0...2)) }
                if r.int(in: 0...7) == 0 { fields.append("extra: 1") }
                lines.append("      - { \(fields.joined(separator: ", ")) }")
            }
        }
        if r.bool() { lines.append("    key_document_validity: \(value(.duration, &r))") }
        return lines
    }

    static func listener(_ r: inout FuzzReader, servers: [String]) -> [String] {
        var fields: [String] = []
        if r.int(in: 0...7) != 0 { fields.append("name: \(r.pick(["mmr", "admin", "sigild", "''", "mmr"]))") }
        switch r.int(in: 0...3) {
        case 0: fields.append("path: \(r.pick(["/run/sigil/sigild.sock", "@abstract", String(repeating: "/p", count: 54), "relative.sock"]))")
        case 1: fields.append("fd: \(value(.integer, &r))")
        default: break
        }
        if r.bool() { fields.append("mode: \(r.pick(["\"0660\"", "0660", "\"0777\"", "\"1000\"", "\"0o600\"", "\"9\"", "-1"]))") }
        var lines = ["  - " + (fields.first ?? "{}")] + fields.dropFirst().map { "    " + $0 }
        if r.bool() {
            lines.append("    access:")
            for _ in 0..<r.int(in: 0...2) { lines.append(contentsOf: rule(&r, servers: servers, indent: "      ")) }
        }
        return lines
    }

    static func rule(_ r: inout FuzzReader, servers: [String], indent: String) -> [String] {
        var fields: [String] = []
        switch r.int(in: 0...4) {
        case 0: fields.append("uid: \(value(.integer, &r))")
        case 1: fields.append("user: \(r.pick(["root", "nobody", "no-such-user", "\"\""]))")
        case 2: fields.append("gid: \(value(.integer, &r))")
        case 3: fields.append("group: \(r.pick(["root", "nogroup", "no-such-group"]))")
        default: break
        }
        if r.int(in: 0...7) == 0 { fields.append(r.pick(["uid: 0", "user: root", "gid: 0"])) }
        if r.bool() { fields.append("operations: \(r.pick(["[sign_request]", "sign-json", "[ping, stats, list_keys]", "[nope]", "[]", "HELLO"]))") }
        if r.bool() { fields.append("servers: [\(r.pick(servers + ["other.example"]))]") }
        if r.bool() { fields.append("methods: \(r.pick(["[GET]", "GET", "[GET, PUT]", "[]"]))") }
        if r.bool() { fields.append("uri_prefixes: \(r.pick(["[/_matrix/federation/v1/media/]", "/", "[relative]", "[]"]))") }
        if r.int(in: 0...15) == 0 { fields.append("typo_field: 1") }
        return [indent + "- " + (fields.first ?? "{}")] + fields.dropFirst().map { indent + "  " + $0 }
    }

    static let numbers = [
        "0", "1", "-1", "2", "3", "7", "8", "63", "64", "100", "255", "256", "1023", "1024", "1025", "4096", "65535", "65536", "65537",
        "100000", "1000000", "1000001", "16777216", "16777217", "1073741824", "1073741825", "2147483647", "4294967294", "4294967295",
        "4294967296", "9007199254740991", "9007199254740992", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "99999999999999999999", "1_000", "_1", "1__0", "+5", "0x10", "010", "1e3", "1.5", " 7", "\"12\"", "'12'", "~", "null", "true", "[1]", "{}",
    ]

    static func value(_ kind: Kind, _ r: inout FuzzReader) -> String {
        let number = r.pick(numbers)
        switch kind {
        case .integer, .text:
            return number
        case .size:
            let suffix = r.pick(["", "", "KiB", "MiB", "k", "K", "M", "GiB", "kb", " KiB"])
            return number + suffix
        case .duration:
            switch r.int(in: 0...3) {
            case 0: return number
            case 1: return number + r.pick(["ms", "s", "m", "h", "d", "w", "y", "S"])
            case 2: return r.pick(["1h30m", "10s", "100ms", "99ms", "3600001ms", "30d", "31d", "1w1d", "999999999999w", "15250w6d", "1h1h", "1 h"])
            default: return "\(r.pick(Array(numbers.prefix(34))))\(r.pick(["s", "m"]))\(r.pick(Array(numbers.prefix(34))))\(r.pick(["ms", "s"]))"
            }
        }
    }
}
