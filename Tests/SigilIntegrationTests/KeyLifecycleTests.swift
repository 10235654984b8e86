import Foundation
import Glibc
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// What happens to keys over a daemon's life (issue 9): a retired key no longer authenticates
/// requests, and a replaced key's seed leaves the process's memory once nothing uses it.
extension DaemonEndToEnd {
    @Suite("key life cycle")
    struct KeyLifecycle {
        @Test("a key moved to retired: no longer authenticates inbound requests; verifies events signed before its expired_ts")
        func retiredKeyAuthenticatesNothing() throws {
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                    servers:
                      example.org:
                        keys: [{dir}/new.key]
                        retired:
                          - { id: "ed25519:1", key: "\(TestKeys.specPublicKey)", expired_ts: 1700000000000 }
                    """,
                files: ["new.key": randomKeyFile(version: "2")])
            defer { daemon.stop() }
            let client = daemon.client()
            // An inbound request from "example.org" (ourselves, as a leaked key would forge it)
            // signed with the spec key, which is retired here.
            let header = #"X-Matrix origin="example.org",destination="domain",key="ed25519:1",sig="\#(Self.forgedSignature)""#
            let verdict = try client.verifyRequest(
                VerifyRequestParams(authorizations: [header], method: "GET", uri: SpecVectors.mediaURI, destination: "domain", keys: []))
            #expect(verdict.verdict == .unknownKey, "\(verdict)")
            // Events: the spec's signed object carries no origin_server_ts, so the retired key
            // cannot vouch for it; with a timestamp before expired_ts it can.
            let signed = try #require(try Self.specSigned(originServerTS: 1_600_000_000_000))
            let early = try client.verifyJSON(VerifyJSONParams(server: "example.org", keys: [], json: signed))
            #expect(early.isValid, "\(early)")
            let lateObject = try #require(try Self.specSigned(originServerTS: 1_800_000_000_000))
            let late = try client.verifyJSON(VerifyJSONParams(server: "example.org", keys: [], json: lateObject))
            #expect(!late.isValid)
            #expect(late.outcomes.contains { $0.id == "ed25519:1" && $0.outcome == .invalid }, "\(late)")
        }

        /// The spec key's signature over the request `{destination: domain, method: GET,
        /// origin: example.org, uri: SpecVectors.mediaURI}`.
        static var forgedSignature: String {
            let message = Array(#"{"destination":"domain","method":"GET","origin":"example.org","uri":"\#(SpecVectors.mediaURI)"}"#.utf8)
            let file = try! KeyFile(fixture: TestKeys.specSynapseFile)
            let key = try! file.loadKeys(lockPolicy: .warn)[0]
            return key.sign(message).base64
        }

        /// `{"origin_server_ts": ts, "type": "m.room.message"}` signed by the spec key as
        /// example.org, ed25519:1.
        static func specSigned(originServerTS: Int64) throws -> [UInt8]? {
            let file = try KeyFile(fixture: TestKeys.specSynapseFile)
            let key = try file.loadKeys(lockPolicy: .warn)[0]
            return try JSONSigning.sign(
                Array(#"{"origin_server_ts":\#(originServerTS),"type":"m.room.message"}"#.utf8), serverName: "example.org", keys: [key])
        }

        @Test(
            "after a rotation and three reloads the first seed is nowhere in the daemon's memory",
            .enabled(if: Privileges.isRoot, "needs root to read another process's memory"))
        func replacedSeedIsWiped() throws {
            let first = Self.seed(0x5A)
            let daemon = try DaemonFixture(
                config: """
                    listen:
                      - name: main
                        path: {dir}/s.sock
                    servers:
                      domain:
                        keys: [{dir}/k.key]
                    log_level: debug
                    """,
                files: ["k.key": "ed25519 first \(Base64.encode(first))\n"])
            defer { daemon.stop() }
            let client = daemon.client()
            #expect(
                try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI).keyID.description
                    == "ed25519:first")
            #expect(try Self.occurrences(of: first, inProcess: daemon.pid) > 0, "the test cannot see the live seed: it would prove nothing")
            for (round, fill) in [(2, UInt8(0x11)), (3, 0x22), (4, 0x33)] {
                replaceFile(daemon.directory.file("k.key"), with: "ed25519 r\(round) \(Base64.encode(Self.seed(fill)))\n")
                daemon.signal(SIGHUP)
                #expect(daemon.waitForReady(count: round), "\(daemon.log)")
                #expect(
                    try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI).keyID.description
                        == "ed25519:r\(round)")
            }
            // Replaced keyrings are freed on the main loop's next tick once nothing uses them.
            #expect(daemon.waitForLog("a replaced keyring is no longer used", timeout: 5), "\(daemon.log)")
            #expect(
                eventually(timeout: 5) { (try? Self.occurrences(of: first, inProcess: daemon.pid)) == 0 },
                "the first seed is still in the daemon's memory")
            #expect(try Self.occurrences(of: Self.seed(0x33), inProcess: daemon.pid) > 0, "the current seed must be there")
        }

        /// A recognisable seed: 32 bytes of a pattern no other data in the daemon has.
        static func seed(_ fill: UInt8) -> [UInt8] {
            (0..<32).map { UInt8(truncatingIfNeeded: Int(fill) &+ $0 &* 7) }
        }

        /// How many times `needle` appears in the readable memory of a process.
        static func occurrences(of needle: [UInt8], inProcess pid: Int32) throws -> Int {
            // (Read to EOF: /proc files report a size of 0, and Foundation stops short.)
            let maps = String(decoding: try Posix.readSmallFile("/proc/\(pid)/maps", limit: 16 << 20), as: UTF8.self)
            let memory = open("/proc/\(pid)/mem", O_RDONLY)
            guard memory >= 0 else { throw FixtureError("cannot open /proc/\(pid)/mem: \(String(cString: strerror(errno)))") }
            defer { close(memory) }
            var found = 0
            for line in maps.split(separator: "\n") {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 2, fields[1].hasPrefix("r") else { continue }
                let range = fields[0].split(separator: "-")
                guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16) else { continue }
                // Skip the kernel's vsyscall page and huge reservations of address space.
                guard end - start <= 1 << 30, start < 0xffff_ffff_ff60_0000 else { continue }
                var buffer = [UInt8](repeating: 0, count: Int(end - start))
                let read = buffer.withUnsafeMutableBytes { pread(memory, $0.baseAddress, $0.count, off_t(start)) }
                guard read > 0 else { continue }
                found += buffer.withUnsafeBytes { bytes in
                    var count = 0
                    var index = 0
                    let limit = read - needle.count
                    while index <= limit {
                        if bytes[index] == needle[0] && memcmp(bytes.baseAddress! + index, needle, needle.count) == 0 { count += 1 }
                        index += 1
                    }
                    return count
                }
            }
            return found
        }
    }
}
