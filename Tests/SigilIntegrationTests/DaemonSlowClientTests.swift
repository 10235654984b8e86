import Foundation
import Glibc
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Synchronization
import Testing

/// A client that floods requests and never reads must not stall anyone else, nor make the
/// daemon buffer without bound: the daemon stops reading it once its unsent replies pass
/// `max_pending_output`.
extension DaemonEndToEnd {
    @Suite("a client that stops reading")
    struct SlowClient {
        @Test("client A floods and never reads; client B still gets 200 answers quickly; RSS stays bounded")
        func floodingClientDoesNotStallOthers() throws {
            // One event loop, so A and B share it: the fairness and backpressure are what is tested.
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                        mode: "0600"
                    servers:
                      domain:
                        keys: [{dir}/spec.key]
                    workers: 1
                    limits:
                      max_pending_output: 256KiB
                      frame_timeout: 5s
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let observer = daemon.client()
            let rssBefore = try #require(try statsObject(observer).int("rss_bytes"))

            // Client A: 5000 pings of 512 bytes each (2.6 MB of answers), written without waiting.
            let frames = 5000
            let payload = [UInt8](repeating: 0x5A, count: 512)
            var flood: [UInt8] = []
            flood.reserveCapacity(frames * 528)
            for id in 1...frames { flood += frameBytes(.ping(payload: payload), id: UInt32(id)) }
            let a = try RawSocket(path: daemon.socketPath)
            let writer = BackgroundFlood(fd: a.fd, bytes: flood, seconds: 20)
            // Wait until A's writes no longer go through: the daemon has stopped reading it.
            #expect(eventually(timeout: 5) { writer.blocked }, "client A was never pushed back")
            usleep(100_000)
            let stuckAt = writer.sent
            #expect(stuckAt < flood.count, "client A's whole flood went in without it reading anything")

            // Client B, on the same event loop, meanwhile.
            let b = daemon.client(timeout: 5)
            defer { b.close() }
            _ = try b.ping()
            let start = Date()
            for index in 0..<200 {
                let uri = "/_matrix/federation/v1/media/download/b\(index)"
                let signed = try b.signRequest(origin: "domain", destination: "example.org", uri: uri)
                #expect(SpecVectors.isSpecSignature(signed, uri: uri))
            }
            let elapsed = Date().timeIntervalSince(start)
            #expect(elapsed < 1.0, "200 requests took \(elapsed) s while client A was flooding")
            #expect(writer.sent - stuckAt < 512 * 1024, "the daemon kept reading client A while it did not read")

            let rssDuring = try #require(try statsObject(observer).int("rss_bytes"))
            #expect(rssDuring - rssBefore < 32 << 20, "RSS grew from \(rssBefore) to \(rssDuring) bytes")

            // Once A reads, every one of its requests is answered, in full.
            var answered = 0
            var nextExpected: UInt32 = 1
            let readDeadline = Date().addingTimeInterval(20)
            while answered < frames && Date() < readDeadline {
                guard let frame = try a.readFrame() else { break }
                #expect(frame.header.requestID == nextExpected)
                #expect(frame.header.status == 0)
                #expect(frame.body.count == 4 + payload.count)
                nextExpected = frame.header.requestID + 1
                answered += 1
            }
            #expect(writer.wait(seconds: 5))
            #expect(writer.sent == flood.count)
            #expect(answered == frames)
            let rssAfter = try #require(try statsObject(observer).int("rss_bytes"))
            #expect(rssAfter - rssBefore < 32 << 20, "RSS grew from \(rssBefore) to \(rssAfter) bytes")
        }
    }
}
