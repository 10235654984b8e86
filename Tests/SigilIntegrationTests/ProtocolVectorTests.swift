import Foundation
import SigilCore
import SigilTestSupport
import Testing

/// docs/PROTOCOL.md's test vectors, replayed against a real daemon: the document a client
/// author works from cannot drift from the code.
@Suite("PROTOCOL.md test vectors")
struct ProtocolVectorTests {
    struct Vector {
        let name: String
        let request: [UInt8]
        let response: [UInt8]
    }

    static func vectors() throws -> [Vector] {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/PROTOCOL.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        var vectors: [Vector] = []
        var name: String?
        var request: [UInt8] = []
        var response: [UInt8] = []
        func hex(_ line: Substring) -> [UInt8] {
            line.dropFirst(2).split(separator: " ").map { UInt8($0, radix: 16)! }
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("vector: ") {
                if let name { vectors.append(Vector(name: name, request: request, response: response)) }
                name = String(line.dropFirst("vector: ".count))
                request = []
                response = []
            } else if line.hasPrefix("> ") {
                request += hex(line)
            } else if line.hasPrefix("< ") {
                response += hex(line)
            }
        }
        if let name { vectors.append(Vector(name: name, request: request, response: response)) }
        return vectors
    }

    @Test("every vector in the document")
    func replay() throws {
        let vectors = try Self.vectors()
        #expect(
            vectors.map(\.name) == [
                "ping", "sign_request", "sign_request_batch", "verify", "key_document", "unknown_opcode", "list_keys_paged",
                "batch_of_zero_items",
                "batch_flag_on_ping", "frame_too_large",
            ])
        let daemon = try DaemonFixture.quickStart()
        defer { daemon.stop() }
        let socket = try RawSocket(path: daemon.socketPath)
        for vector in vectors {
            try socket.send(vector.request)
            let frame = try #require(try socket.readFrame(), "no answer to \(vector.name)")
            var writer = WireWriter()
            writer.u32(frame.header.length)
            writer.u8(frame.header.version)
            writer.u8(frame.header.opcode)
            writer.u8(frame.header.flags)
            writer.u8(frame.header.status)
            writer.u32(frame.header.requestID)
            writer.fixed(frame.body)
            #expect(writer.bytes == vector.response, "vector \(vector.name)")
        }
        // frame_too_large ends the connection.
        #expect(try socket.readEOF())
    }

    @Test("the request vectors are what the Swift encoder produces")
    func encoderAgrees() throws {
        let vectors = Dictionary(uniqueKeysWithValues: try Self.vectors().map { ($0.name, $0) })
        let sign = SignRequestParams(origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/media/download/abc123")
        #expect(frameBytes(.ping(payload: Array("hi".utf8)), id: 1) == vectors["ping"]?.request)
        #expect(frameBytes(.signRequest(sign), id: 2) == vectors["sign_request"]?.request)
        #expect(frameBytes(.keyDocument(server: "domain", validUntilTS: 1_700_000_000_000), id: 5) == vectors["key_document"]?.request)
        #expect(frameBytes(.listKeys(cursor: ""), id: 7) == vectors["list_keys_paged"]?.request)
        var batch = WireWriter()
        let second = SignRequestParams(
            origin: "domain", destination: "example.org:8448",
            uri: "/_matrix/federation/v1/media/thumbnail/abc123?width=32&height=32&method=crop")
        Request.encodeBatch([.signRequest(sign), .signRequest(second)], requestID: 3, into: &batch)
        #expect(batch.bytes == vectors["sign_request_batch"]?.request)
    }
}
