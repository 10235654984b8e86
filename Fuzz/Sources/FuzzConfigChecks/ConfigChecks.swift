import FuzzSupport
import SigilCore
import SigilServer

/// What any outcome of `ConfigLoader.parse` must satisfy, for both configuration targets.
public enum ConfigChecks {
    public static let path = "/etc/sigil/fuzz.yaml"

    public static func check(_ text: String) {
        let configuration: Configuration
        do {
            configuration = try ConfigLoader.parse(text, path: path)
        } catch {
            fuzzCheck(error.file == path, "the error names \(error.file), not the file")
            fuzzCheck(error.description.hasPrefix(path), "the message does not start with the file: \(error)")
            fuzzCheck(!error.message.isEmpty, "an empty message")
            if let line = error.line {
                // YAML breaks lines at LF, CR, CRLF, NEL, LS and PS: counting each CR and LF
                // gives an upper bound.
                let breaks = text.unicodeScalars.reduce(0) { $0 + ("\n\r\u{85}\u{2028}\u{2029}".unicodeScalars.contains($1) ? 1 : 0) }
                fuzzCheck((0...breaks + 2).contains(line), "line \(line) of a file with \(breaks) line breaks")
            }
            return
        }
        checkAccepted(configuration)
    }

    /// An accepted configuration is one the daemon can start with: what it names is valid and
    /// every limit is one the serving code can take (a frame limit below 8 bytes, for one,
    /// would trap in FrameDecoder).
    static func checkAccepted(_ c: Configuration) {
        fuzzCheck(!c.servers.isEmpty || !c.keyDirectories.isEmpty, "no servers and no key directories")
        fuzzCheck(Set(c.servers.map(\.name)).count == c.servers.count, "a server named twice")
        let validity = KeyDocument.minValidity...KeyDocument.maxValidity
        for server in c.servers {
            fuzzCheck(ServerName.isValid(server.name), "server name \(server.name)")
            fuzzCheck(!server.keyFiles.isEmpty && server.keyFiles.allSatisfy { !$0.isEmpty }, "\(server.name) key files \(server.keyFiles)")
            fuzzCheck(validity.contains(server.keyDocumentValidity), "key document validity \(server.keyDocumentValidity)")
            for key in server.retired { fuzzCheck((0...canonicalJSONMaxInteger).contains(key.expiredTS), "expired_ts \(key.expiredTS)") }
        }
        for directory in c.keyDirectories {
            fuzzCheck(!directory.path.isEmpty && validity.contains(directory.keyDocumentValidity), "key directory \(directory.path)")
        }
        fuzzCheck(!c.listeners.isEmpty, "no listeners")
        fuzzCheck(Set(c.listeners.map(\.name)).count == c.listeners.count, "a listener named twice")
        // Rules may name servers that are not configured only when key directories can add them.
        let known: Set<String>? = c.keyDirectories.isEmpty ? Set(c.servers.map(\.name)) : nil
        for listener in c.listeners {
            fuzzCheck(!listener.name.isEmpty, "a listener without a name")
            if let path = listener.path { fuzzCheck(!path.isEmpty && path.utf8.count < 108, "socket path \(path)") }
            if let fd = listener.fd { fuzzCheck(fd >= 3, "fd \(fd)") }
            fuzzCheck(listener.mode <= 0o777, "mode \(listener.mode)")
            for limit in [listener.maxConnections, listener.maxConnectionsPerUID].compactMap({ $0 }) {
                fuzzCheck(limit >= 1, "listener limit \(limit)")
            }
            for rule in listener.access ?? [] { checkRule(rule, servers: known) }
        }
        for rule in c.access { checkRule(rule, servers: known) }
        let l = c.limits
        fuzzCheck(l.maxFrameLength >= 1024, "max_frame \(l.maxFrameLength)")
        fuzzCheck(l.maxBatchItems >= 1 && l.maxBatchItems <= 65535, "max_batch \(l.maxBatchItems)")
        fuzzCheck(
            l.maxInFlight >= 1 && l.maxConnections >= 1 && l.framesPerTurn >= 1 && l.offloadBatchItems >= 1, "a count limit below 1: \(l)")
        fuzzCheck(l.idleTimeout >= 0 && l.frameTimeout > 0 && l.drainTimeout >= 0 && l.writeTimeout > 0, "a negative or zero timeout: \(l)")
        fuzzCheck(l.maxPendingOutput >= 65536 && l.maxBuffered > 0 && l.maxBufferedPerUID > 0, "a buffer limit: \(l)")
        // The canonicaliser's own bounds: a depth it is not built for would be a promise broken.
        fuzzCheck(JSONLimits.supportedDepths.contains(l.maxJSONDepth), "max_json_depth \(l.maxJSONDepth)")
        fuzzCheck(c.workers >= 0, "workers \(c.workers)")
    }

    static func checkRule(_ rule: AccessRule, servers: Set<String>?) {
        fuzzCheck(rule.uid != nil || rule.gid != nil, "a rule for nobody")
        if let servers, let selector = rule.servers {
            fuzzCheck(selector.exactNames.isSubset(of: servers), "a rule names an unknown server: \(selector)")
        }
        for prefix in rule.uriPrefixes ?? [] { fuzzCheck(prefix.hasPrefix("/"), "uri prefix \(prefix)") }
        for method in rule.methods ?? [] { fuzzCheck(Grammar.isMethod(method.utf8), "method \(method)") }
    }
}
