import Foundation
import SigilClient
import SigilCore
import SigilTestSupport
import Testing

/// `max_in_flight`: requests beyond it on one connection are answered BUSY at once; the rest
/// are answered normally.
extension DaemonEndToEnd {
    @Suite("BUSY at max_in_flight")
    struct Busy {
        @Test("with max_in_flight 1, pipelined large batches: at least one BUSY, every other batch answered in full")
        func busy() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        mode: "0600"
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    limits:
                      max_in_flight: 1
                      offload_batch_items: 2
                      frame_timeout: 2s
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            #expect(try daemon.client().hello().maxInFlight == 1)

            let message = SpecVectors.requestJSON(uri: SpecVectors.mediaURI)
            let signature = Base64.decode(SpecVectors.mediaSignature)!
            let item = Request.verify(VerifyParams(key: .publicKey(SpecVectors.publicKey), message: message, signature: signature))
            let batches = 6
            let itemsPerBatch = 64
            var bytes: [UInt8] = []
            for id in 1...batches {
                var writer = WireWriter()
                Request.encodeBatch(Array(repeating: item, count: itemsPerBatch), requestID: UInt32(id), into: &writer)
                bytes += writer.bytes
            }
            let socket = try RawSocket(path: daemon.socketPath)
            // All six frames in one write, read only after: they arrive together, so the first
            // is still on the thread pool when the others are read.
            try socket.send(bytes)
            var busy: [UInt32] = []
            var answered: [UInt32] = []
            for _ in 0..<batches {
                let frame = try #require(try socket.readFrame())
                #expect(frame.header.opcode == Opcode.verify.rawValue)
                #expect(frame.header.flags == 0x81)
                switch frame.header.status {
                case WireStatus.busy.rawValue:
                    busy.append(frame.header.requestID)
                    let text = frame.body.withUnsafeBytes { WireFailure.decode(status: .busy, body: $0).message }
                    #expect(text.contains("max_in_flight 1"), "\(text)")
                case 0:
                    answered.append(frame.header.requestID)
                    let results = try frame.body.withUnsafeBytes { try decodeResponseFrame(frame.header, body: $0) }
                    #expect(results.count == itemsPerBatch)
                    #expect(results.allSatisfy { (try? $0.get()) == .verified(true) })
                default:
                    Issue.record("batch \(frame.header.requestID): unexpected status \(frame.header.status)")
                }
            }
            #expect(busy.count >= 1, "no batch was refused with BUSY")
            #expect(answered.count >= 1)
            #expect(Set(busy + answered) == Set(1...UInt32(batches)), "each batch answered exactly once")
            #expect(busy.count + answered.count == batches)
            // The connection is fine afterwards, and BUSY is counted.
            try socket.send(frameBytes(.ping(payload: [1]), id: 99))
            #expect(try socket.readFrame()?.header.requestID == 99)
            #expect(try statsObject(daemon.client()).int("busy") == busy.count)
        }
    }
}
