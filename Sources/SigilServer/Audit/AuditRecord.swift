import SigilCore

/// One audit record, decoded by the writer.
struct AuditRecord {
    /// How a SIGN_REQUEST's uri was kept when the record was queued.
    enum URI {
        /// The whole uri.
        case full([UInt8])
        /// The first `AuditTrail.maxURIBytes` bytes, the whole uri's length and its SHA-256.
        case cut([UInt8], length: Int, digest: [UInt8])
        /// Only its SHA-256 (`uri: digest`).
        case digest([UInt8])
    }

    let unixMilliseconds: Int64
    let op: String
    let outcome: String
    let listener: String
    let uid: UInt32
    let gid: UInt32
    let pid: Int32
    let server: [UInt8]
    let serverCut: Bool
    let keyID: [UInt8]
    let method: [UInt8]?
    let destination: [UInt8]?
    let uri: URI?

    /// `{"destination":…,"gid":…,…}`: canonical JSON (sorted keys), one line. Written in
    /// place, the keys in their canonical (byte) order; `AuditRecordTests` checks it against
    /// the canonicaliser.
    func appendJSONLine(to out: inout [UInt8]) {
        func key(_ name: StaticString, first: Bool = false) {
            if !first { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
            out.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        }
        let yes = Array("true".utf8)
        out.append(UInt8(ascii: "{"))
        var first = true
        if let destination {
            key("destination", first: true)
            CanonicalText.appendString(destination, to: &out)
            first = false
        }
        key("gid", first: first)
        CanonicalText.appendInteger(Int64(gid), to: &out)
        key("key_id")
        CanonicalText.appendString(keyID, to: &out)
        key("listener")
        CanonicalText.appendString(listener, to: &out)
        if let method {
            key("method")
            CanonicalText.appendString(method, to: &out)
        }
        key("op")
        CanonicalText.appendString(op, to: &out)
        key("outcome")
        CanonicalText.appendString(outcome, to: &out)
        key("pid")
        CanonicalText.appendInteger(Int64(pid), to: &out)
        key("server")
        CanonicalText.appendString(server, to: &out)
        if serverCut {
            key("server_cut")
            out.append(contentsOf: yes)
        }
        key("time")
        CanonicalText.appendString(LineLogHandler.timestamp(milliseconds: unixMilliseconds), to: &out)
        key("ts")
        CanonicalText.appendInteger(unixMilliseconds, to: &out)
        key("uid")
        CanonicalText.appendInteger(Int64(uid), to: &out)
        switch uri {
        case .full(let bytes):
            key("uri")
            CanonicalText.appendString(bytes, to: &out)
        case .cut(let bytes, let length, let digest):
            key("uri")
            CanonicalText.appendString(bytes, to: &out)
            key("uri_cut")
            out.append(contentsOf: yes)
            key("uri_length")
            CanonicalText.appendInteger(Int64(length), to: &out)
            key("uri_sha256")
            CanonicalText.appendString(SHA256.hex(digest: digest), to: &out)
        case .digest(let digest):
            key("uri_sha256")
            CanonicalText.appendString(SHA256.hex(digest: digest), to: &out)
        case nil: break
        }
        out.append(contentsOf: [UInt8(ascii: "}"), UInt8(ascii: "\n")])
    }

    /// Journal fields (native protocol: `NAME=value` lines; a newline in a value, possible only
    /// in a refused SIGN_JSON or SIGN_RAW server name, becomes a space).
    func journalEntry() -> [UInt8] {
        var line: [UInt8] = []
        appendJSONLine(to: &line)
        var fields: [(String, [UInt8])] = [
            ("MESSAGE", Array(line.dropLast())), ("PRIORITY", Array("6".utf8)), ("SYSLOG_IDENTIFIER", Array("sigild-audit".utf8)),
            ("SIGIL_AUDIT", Array("1".utf8)), ("SIGIL_OP", Array(op.utf8)), ("SIGIL_OUTCOME", Array(outcome.utf8)),
            ("SIGIL_LISTENER", Array(listener.utf8)), ("SIGIL_UID", Array(String(uid).utf8)), ("SIGIL_GID", Array(String(gid).utf8)),
            ("SIGIL_PID", Array(String(pid).utf8)), ("SIGIL_SERVER", server), ("SIGIL_KEY_ID", keyID),
        ]
        if serverCut { fields.append(("SIGIL_SERVER_CUT", Array("1".utf8))) }
        if let method { fields.append(("SIGIL_METHOD", method)) }
        if let destination { fields.append(("SIGIL_DESTINATION", destination)) }
        switch uri {
        case .full(let bytes): fields.append(("SIGIL_URI", bytes))
        case .cut(let bytes, let length, let digest):
            fields.append(("SIGIL_URI", bytes))
            fields.append(("SIGIL_URI_CUT", Array("1".utf8)))
            fields.append(("SIGIL_URI_LENGTH", Array(String(length).utf8)))
            fields.append(("SIGIL_URI_SHA256", Array(SHA256.hex(digest: digest).utf8)))
        case .digest(let digest): fields.append(("SIGIL_URI_SHA256", Array(SHA256.hex(digest: digest).utf8)))
        case nil: break
        }
        return Self.journalFields(fields)
    }

    static func journalFields(_ fields: [(String, [UInt8])]) -> [UInt8] {
        var out: [UInt8] = []
        for (name, value) in fields {
            out.append(contentsOf: name.utf8)
            out.append(UInt8(ascii: "="))
            out.append(contentsOf: value.map { $0 == 0x0A ? 0x20 : $0 })
            out.append(0x0A)
        }
        return out
    }
}

/// The record that stands for one uid's refusals not recorded one by one in a window.
struct AuditSummary {
    let unixMilliseconds: Int64
    /// Nil: the uids past the table, together.
    let uid: UInt32?
    let count: UInt64
    let windowMilliseconds: UInt64

    func appendJSONLine(to out: inout [UInt8]) {
        var object = JSONObject()
        object["time"] = .string(LineLogHandler.timestamp(milliseconds: unixMilliseconds))
        object["ts"] = .integer(unixMilliseconds)
        object["op"] = .string("denied_unrecorded")
        object["outcome"] = .string("denied")
        if let uid { object["uid"] = .integer(Int64(uid)) } else { object["other_uids"] = .bool(true) }
        object["count"] = .integer(Int64(clamping: count))
        object["window_ms"] = .integer(Int64(clamping: windowMilliseconds))
        out.append(contentsOf: JSONValue.object(object).canonicalBytes)
        out.append(UInt8(ascii: "\n"))
    }

    func journalEntry() -> [UInt8] {
        var line: [UInt8] = []
        appendJSONLine(to: &line)
        var fields: [(String, [UInt8])] = [
            ("MESSAGE", Array(line.dropLast())), ("PRIORITY", Array("4".utf8)), ("SYSLOG_IDENTIFIER", Array("sigild-audit".utf8)),
            ("SIGIL_AUDIT", Array("1".utf8)), ("SIGIL_OP", Array("denied_unrecorded".utf8)), ("SIGIL_OUTCOME", Array("denied".utf8)),
            ("SIGIL_COUNT", Array(String(count).utf8)),
        ]
        if let uid { fields.append(("SIGIL_UID", Array(String(uid).utf8))) } else { fields.append(("SIGIL_OTHER_UIDS", Array("1".utf8))) }
        return AuditRecord.journalFields(fields)
    }
}
