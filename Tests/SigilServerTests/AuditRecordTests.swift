import SigilCore
import Testing

@testable import SigilServer

/// The audit record's JSON line is written in place; it must be exactly what the canonicaliser
/// makes of the same fields.
@Suite("audit records: the JSON line")
struct AuditRecordTests {
    /// The fields as a JSONObject, canonicalised: what the line must be.
    static func reference(_ record: AuditRecord) -> [UInt8] {
        var object = JSONObject()
        object["time"] = .string(LineLogHandler.timestamp(milliseconds: record.unixMilliseconds))
        object["ts"] = .integer(record.unixMilliseconds)
        object["op"] = .string(record.op)
        object["outcome"] = .string(record.outcome)
        object["listener"] = .string(record.listener)
        object["uid"] = .integer(Int64(record.uid))
        object["gid"] = .integer(Int64(record.gid))
        object["pid"] = .integer(Int64(record.pid))
        object["server"] = .string(String(decoding: record.server, as: UTF8.self))
        if record.serverCut { object["server_cut"] = .bool(true) }
        object["key_id"] = .string(String(decoding: record.keyID, as: UTF8.self))
        if let method = record.method { object["method"] = .string(String(decoding: method, as: UTF8.self)) }
        if let destination = record.destination { object["destination"] = .string(String(decoding: destination, as: UTF8.self)) }
        switch record.uri {
        case .full(let bytes): object["uri"] = .string(String(decoding: bytes, as: UTF8.self))
        case .cut(let bytes, let length, let digest):
            object["uri"] = .string(String(decoding: bytes, as: UTF8.self))
            object["uri_cut"] = .bool(true)
            object["uri_length"] = .integer(Int64(length))
            object["uri_sha256"] = .string(SHA256.hex(digest: digest))
        case .digest(let digest): object["uri_sha256"] = .string(SHA256.hex(digest: digest))
        case nil: break
        }
        return JSONValue.object(object).canonicalBytes + [UInt8(ascii: "\n")]
    }

    static func record(
        server: [UInt8] = Array("example.org".utf8), serverCut: Bool = false, request: Bool = true, uri: AuditRecord.URI? = nil,
        outcome: String = "ok", pid: Int32 = 4242
    ) -> AuditRecord {
        AuditRecord(
            unixMilliseconds: 1_796_379_302_311, op: request ? "sign_request" : "sign_json", outcome: outcome, listener: "mmr\"\\",
            uid: 998, gid: 4_294_967_295, pid: pid, server: server, serverCut: serverCut, keyID: Array("ed25519:a_abcd".utf8),
            method: request ? Array("GET".utf8) : nil, destination: request ? Array("matrix.org".utf8) : nil,
            uri: request ? (uri ?? .full(Array("/_matrix/federation/v1/media/download/abc".utf8))) : nil)
    }

    @Test("every shape of record: with and without a request, full, cut and digested uris, odd bytes")
    func lines() {
        let digest = [UInt8](repeating: 0xAB, count: 32)
        let records = [
            Self.record(),
            Self.record(request: false),
            Self.record(uri: .cut(Array("/a".utf8), length: 5000, digest: digest)),
            Self.record(uri: .digest(digest), outcome: "denied"),
            Self.record(server: [0x61, 0x0A, 0x22, 0x5C, 0x01, 0xE2, 0x80], serverCut: true, request: false, pid: -1),
            Self.record(server: Array("ünï.example".utf8)),
        ]
        for record in records {
            var line: [UInt8] = []
            record.appendJSONLine(to: &line)
            #expect(line == Self.reference(record), "\(String(decoding: line, as: UTF8.self))")
        }
    }
}
