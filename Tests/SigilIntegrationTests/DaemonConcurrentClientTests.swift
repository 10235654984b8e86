import Foundation
import SigilClient
import SigilCore
import SigilTestSupport
import Testing

/// Many clients at once, each on its own connection: every answer is the right one.
extension DaemonEndToEnd {
    @Suite("many concurrent clients")
    struct ConcurrentClients {
        @Test("32 threads × 100 sign requests over separate connections, all correct")
        func thirtyTwoThreads() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let threads = 32
            let perThread = 100
            let good = Shared(0)
            let problems = Shared<[String]>([])
            let finished = onThreads(threads, timeout: 45) { thread in
                let client = daemon.client(timeout: 20)
                defer { client.close() }
                for index in 0..<perThread {
                    let uri = "/_matrix/federation/v1/media/download/t\(thread)-\(index)"
                    do {
                        let signed = try client.signRequest(origin: "domain", destination: "example.org", uri: uri)
                        if SpecVectors.isSpecSignature(signed, uri: uri)
                            && signed.header.hasPrefix(#"X-Matrix origin="domain",destination="example.org",key="ed25519:1",sig=""#)
                        {
                            good.update { $0 += 1 }
                        } else {
                            problems.update { $0.append("thread \(thread) request \(index): wrong signature") }
                        }
                    } catch {
                        problems.update { $0.append("thread \(thread) request \(index): \(error)") }
                    }
                }
            }
            #expect(finished, "the clients did not finish within 45 s")
            #expect(problems.current.isEmpty, "\(problems.current.prefix(5))")
            #expect(good.current == threads * perThread)
            let stats = try statsObject(daemon.client())
            #expect(stats.int("requests", "sign_request", "count") == threads * perThread)
            #expect(stats.int("connections", "total")! >= threads)
        }
    }
}
