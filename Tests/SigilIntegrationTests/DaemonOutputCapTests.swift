import Foundation
import Glibc
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Synchronization
import Testing

/// `max_pending_output` holds within a read: small requests with large replies (STATS: 12 bytes
/// in, about 1.6 KB out) sent in one burst are answered only as fast as the client reads.
extension DaemonEndToEnd {
    @Suite("the output cap, within one read")
    struct OutputCap {
        @Test(
            "2,000 STATS requests sent without reading: the daemon holds about max_pending_output for them, not their 3 MB of replies, then answers all, in order"
        )
        func smallRequestsLargeReplies() throws {
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
                      max_pending_output: 64KiB
                    """,
                files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let observer = daemon.client()
            let frames = 2_000
            let one = frameBytes(.stats, id: 1)
            var flood: [UInt8] = []
            flood.reserveCapacity(frames * one.count)
            for id in 1...frames { flood += frameBytes(.stats, id: UInt32(id)) }
            let client = try RawSocket(path: daemon.socketPath)
            let writer = BackgroundFlood(fd: client.fd, bytes: flood)
            // The burst (24 KB) usually fits in the socket's buffer; either way, wait until it is
            // all sent or the daemon has stopped reading it.
            #expect(
                eventually(timeout: 10) { writer.blocked || writer.sent == flood.count },
                "the burst neither went in nor was pushed back")
            // Then watch what the daemon holds for this client for a second: its input buffer, the
            // replies not yet written and those queued for the socket (in steps of 64 KiB).
            // Before the cap held within a read, the whole burst was answered at once: 960 KiB
            // held here (the rest in the socket's buffer); with it, 192 KiB.
            var most = 0
            let watchUntil = Date().addingTimeInterval(1)
            while Date() < watchUntil {
                most = max(most, try #require(try statsObject(observer).int("buffered_bytes")))
                usleep(20_000)
            }
            #expect(most > 0, "the daemon holds nothing for a client that has read nothing")
            #expect(most < 512 << 10, "the daemon held \(most) bytes for a client that reads nothing")

            var nextExpected: UInt32 = 1
            let readDeadline = Date().addingTimeInterval(30)
            while nextExpected <= UInt32(frames) && Date() < readDeadline {
                guard let frame = try client.readFrame() else { break }
                #expect(frame.header.requestID == nextExpected)
                #expect(frame.header.status == 0)
                nextExpected = frame.header.requestID + 1
            }
            #expect(writer.wait(seconds: 5))
            #expect(writer.sent == flood.count)
            #expect(nextExpected == UInt32(frames) + 1, "answered up to \(nextExpected - 1) of \(frames)")
        }
    }
}
