import Foundation
import SigilClient
import SigilCore
import SigilTestSupport
import Testing

/// SIGHUP under load: a good key file swaps in atomically, a bad one is refused with a logged
/// reason while the running keys keep signing, and no request fails at any point.
extension DaemonEndToEnd {
    @Suite("reload under load")
    struct Reload {
        @Test("SIGHUP with a new key, then with a broken one, while a client signs continuously")
        func reloadUnderLoad() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let keyPath = daemon.directory.file("spec.key")

            // A client signing back to back on its own connection; every answer is recorded.
            let client = daemon.client(timeout: 5)
            defer { client.close() }
            let signed = Shared(0)
            let keyIDs = Shared<[String: Int]>([:])
            let failures = Shared<[String]>([])
            let loop = BackgroundLoop(limit: 30) {
                do {
                    let answer = try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
                    signed.update { $0 += 1 }
                    keyIDs.update { $0[answer.keyID.description, default: 0] += 1 }
                } catch {
                    failures.update { $0.append("\(error)") }
                }
            }
            defer { loop.stop() }
            #expect(eventually { signed.current >= 20 })

            // 1. A new key: its ID appears, and it signs.
            replaceFile(keyPath, with: randomKeyFile(version: "rotated"))
            daemon.signal(SIGHUP)
            #expect(daemon.waitForLog("reloaded: domain: ed25519:rotated"), "\(daemon.log)")
            #expect(eventually { keyIDs.current["ed25519:rotated", default: 0] >= 20 }, "the new key never signed")
            let listing = try daemon.client().listKeys()
            #expect(listing.servers.first?.keys.map(\.id) == ["ed25519:rotated"])
            let rotatedKey = try #require(listing.servers.first?.keys.first?.publicKey)

            // 2. A broken key file (a truncated seed): refused, and the rotated key keeps signing.
            replaceFile(keyPath, with: "ed25519 broken YJDBA9Xnr2sVqXD9Vj7X\n")
            let signedBefore = keyIDs.current["ed25519:rotated", default: 0]
            daemon.signal(SIGHUP)
            #expect(daemon.waitForLog("reload failed"), "\(daemon.log)")
            let failureLine = daemon.log.split(separator: "\n").first { $0.contains("reload failed") }.map(String.init) ?? ""
            #expect(failureLine.contains("still serving the previous keys"), "\(failureLine)")
            #expect(failureLine.contains(keyPath), "the log names the file: \(failureLine)")
            #expect(failureLine.contains("the seed is 15 bytes"), "the log says why: \(failureLine)")
            #expect(!failureLine.contains("YJDBA9Xnr2sVqXD9Vj7X"), "the log must not echo key material")
            #expect(
                eventually { keyIDs.current["ed25519:rotated", default: 0] >= signedBefore + 20 }, "signing stopped after the failed reload"
            )
            let after = try daemon.client().signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI)
            #expect(after.keyID.description == "ed25519:rotated")
            #expect(rotatedKey.verify(signature: after.signature.bytes, message: SpecVectors.requestJSON(uri: SpecVectors.mediaURI)))

            loop.stop()
            #expect(failures.current.isEmpty, "requests failed during reloads: \(failures.current.prefix(3))")
            #expect(Set(keyIDs.current.keys) == ["ed25519:1", "ed25519:rotated"])
            #expect(keyIDs.current.values.reduce(0, +) == signed.current)

            let stats = try statsObject(daemon.client())
            #expect(stats.int("reloads", "ok") == 1)
            #expect(stats.int("reloads", "failed") == 1)
            // STATS says where the last reload failed, never what the file holds.
            let lastError = (stats["reloads"] as? [String: Any])?["last_error"] as? String ?? ""
            #expect(lastError.contains(keyPath) && !lastError.contains("seed") && !lastError.contains("YJDBA9"), "\(lastError)")
            #expect((stats["reloads"] as? [String: Any])?["last_ok"] as? Bool == false)
            #expect(stats.int("config_generation") == 2)
        }
    }
}
