import Foundation
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// sigild under systemd's socket-activation protocol, without a systemd PID 1:
/// `systemd-socket-activate` (from the systemd package) binds the sockets, names them with
/// `LISTEN_FDNAMES` exactly as `FileDescriptorName=` does, and execs sigild on the first
/// connection. Also systemd credentials (`LoadCredential=`), by their environment variable.
@Suite("systemd socket activation and credentials")
struct SystemdActivationTests {
    static let socketActivate = findProgram("systemd-socket-activate")
    static let setpriv = findProgram("setpriv")
    static let env = findProgram("env")

    /// The two listeners of systemd/sigild.yaml, with test identities: `mmr` lets callers whose
    /// primary group is nogroup (65534) sign media downloads only; `admin` lets root read
    /// counters and keys but sign nothing. Listed in the opposite order to LISTEN_FDNAMES, so
    /// a match by position would give each socket the other's rules.
    static let twoListeners = """
        servers:
          example.org:
            keys: [{dir}/mmr.signing.key]
        listen:
          - name: admin
            access:
              - uid: 0
                operations: [ping, stats, list_keys, key_document]
          - name: mmr
            access:
              - gid: 65534
                operations: [sign_request]
                methods: [GET]
                uri_prefixes: [/_matrix/federation/v1/media/]
        workers: 1
        log_level: debug
        """

    @Test(
        "each socket systemd names gets the rules of the listener with that name",
        .enabled(if: socketActivate != nil, "systemd-socket-activate is not installed (apt-get install systemd)"))
    func namedSockets() throws {
        let directory = TemporaryDirectory()
        chmod(directory.path, 0o711)  // so the unprivileged caller below can reach the sockets
        let mmr = directory.file("s.sock")
        let admin = directory.file("a.sock")
        let daemon = try ActivatedDaemon(
            config: Self.twoListeners, files: ["mmr.signing.key": TestKeys.mmrFile],
            sockets: [(mmr, "mmr"), (admin, "admin")], directory: directory)
        defer { daemon.stop() }
        // As sigild.socket and sigild-admin.socket set them.
        chmod(mmr, 0o666)
        chmod(admin, 0o600)
        #expect(daemon.log.contains("admin=systemd fd 4 (admin)"), "\(daemon.log)")
        #expect(daemon.log.contains("mmr=systemd fd 3 (mmr)"), "\(daemon.log)")

        // Root on the admin socket: counters and keys, no signing.
        let adminClient = SigilClient(socketPath: admin, timeout: 10)
        defer { adminClient.close() }
        let adminOps = try adminClient.hello().operations
        #expect(adminOps.contains(.stats) && adminOps.contains(.listKeys) && !adminOps.contains(.signRequest))
        _ = try adminClient.stats()
        #expect(try adminClient.listKeys().servers.first?.keys.first?.id == "ed25519:e5d0oC")
        #expect(throws: SigilClientError.self) {
            try adminClient.signRequest(origin: "example.org", destination: "matrix.org", uri: "/_matrix/federation/v1/media/download/abc")
        }

        // Root on the MMR socket: no rule there can match root, so the connection is refused at
        // once, before it is read (and the refusal is logged, naming the listener).
        let mmrAsRoot = SigilClient(socketPath: mmr, timeout: 10)
        defer { mmrAsRoot.close() }
        #expect(throws: SigilClientError.self) { try mmrAsRoot.hello() }
        #expect(daemon.waitForLog("refused a connection on listener mmr from uid 0"), "\(daemon.log)")
    }

    @Test(
        "an unprivileged MMR worker may sign media downloads on its socket and nothing else",
        .enabled(if: socketActivate != nil, "systemd-socket-activate is not installed (apt-get install systemd)"),
        .enabled(if: setpriv != nil, "setpriv is not installed (apt-get install util-linux)"),
        .enabled(if: Posix.effectiveUID == 0, "needs root to run a client as another user"))
    func unprivilegedWorker() throws {
        let directory = TemporaryDirectory()
        chmod(directory.path, 0o711)
        let mmr = directory.file("s.sock")
        let admin = directory.file("a.sock")
        let daemon = try ActivatedDaemon(
            config: Self.twoListeners, files: ["mmr.signing.key": TestKeys.mmrFile],
            sockets: [(mmr, "mmr"), (admin, "admin")], directory: directory)
        defer { daemon.stop() }
        chmod(mmr, 0o666)
        chmod(admin, 0o600)
        let asWorker = [Self.setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups", Binaries.path("sigil")]
        func sigil(_ arguments: [String]) throws -> ProcessResult {
            try run(asWorker[0], Array(asWorker.dropFirst()) + arguments, timeout: 20)
        }
        let signed = try sigil([
            "sign-request", "--socket", mmr, "--origin", "example.org", "--destination", "matrix.org",
            "--uri", "/_matrix/federation/v1/media/download/abc",
        ])
        #expect(signed.status == 0, "\(signed.output)\n\(daemon.log)")
        #expect(signed.stdout.hasPrefix("X-Matrix origin=\"example.org\",destination=\"matrix.org\",key=\"ed25519:e5d0oC\",sig=\""))

        let otherEndpoint = try sigil([
            "sign-request", "--socket", mmr, "--origin", "example.org", "--destination", "matrix.org",
            "--uri", "/_matrix/federation/v1/query/profile",
        ])
        #expect(otherEndpoint.status != 0)
        #expect(otherEndpoint.output.contains("DENIED"), "\(otherEndpoint.output)")

        let post = try sigil([
            "sign-request", "--socket", mmr, "--origin", "example.org", "--destination", "matrix.org", "--method", "POST",
            "--uri", "/_matrix/federation/v1/media/download/abc",
        ])
        #expect(post.status != 0 && post.output.contains("DENIED"), "\(post.output)")

        let stats = try sigil(["stats", "--socket", mmr])
        #expect(stats.status != 0 && stats.output.contains("DENIED"), "\(stats.output)")

        // The admin socket is root's (mode 0600): the worker cannot even connect.
        let adminStats = try sigil(["stats", "--socket", admin])
        #expect(adminStats.status != 0 && adminStats.output.contains("Permission denied"), "\(adminStats.output)")
        #expect(daemon.log.contains("refused sign_request for uid 65534 gid 65534"), "\(daemon.log)")
    }

    @Test(
        "a listener systemd passed no socket for stops the start with a message naming FileDescriptorName=",
        .enabled(if: socketActivate != nil, "systemd-socket-activate is not installed (apt-get install systemd)"))
    func missingNamedSocket() throws {
        let directory = TemporaryDirectory()
        let mmr = directory.file("s.sock")
        let daemon = try ActivatedDaemon(
            config: Self.twoListeners, files: ["mmr.signing.key": TestKeys.mmrFile], sockets: [(mmr, "mmr")], directory: directory,
            waitUntilReady: false)
        defer { daemon.stop() }
        #expect(waitUntil { FileManager.default.fileExists(atPath: mmr) })
        daemon.triggerStart(mmr)
        #expect(waitUntil(timeout: 20) { !daemon.isRunning }, "\(daemon.log)")
        #expect(daemon.exitStatus == 1)
        #expect(daemon.log.contains("listener admin: systemd passed no socket named 'admin' (FileDescriptorName=)"), "\(daemon.log)")
    }

    // MARK: Credentials

    @Test("credential:NAME and $CREDENTIALS_DIRECTORY/NAME key paths read the service's credentials")
    func credentials() throws {
        let directory = TemporaryDirectory()
        let credentials = directory.file("credentials")
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: false)
        // As systemd lays them out: files 0400, the directory 0500.
        directory.write("credentials/mmr.signing.key", TestKeys.mmrFile, mode: 0o400)
        directory.write("credentials/synapse.signing.key", TestKeys.specSynapseFile, mode: 0o400)
        chmod(credentials, 0o500)
        let daemon = try DaemonFixture(
            config: """
                servers:
                  example.org:
                    keys:
                      - credential:mmr.signing.key
                      - $CREDENTIALS_DIRECTORY/synapse.signing.key
                listen:
                  - name: main
                    path: {dir}/s.sock
                access:
                  - uid: 0
                    operations: [sign_request, list_keys]
                """,
            environment: ["CREDENTIALS_DIRECTORY": credentials], directory: directory)
        defer { daemon.stop() }
        let client = daemon.client(timeout: 10)
        defer { client.close() }
        let keys = try #require(try client.listKeys().servers.first).keys
        #expect(keys.map(\.id) == ["ed25519:e5d0oC", "ed25519:1"])
        #expect(keys.map(\.publicKey.base64) == [TestKeys.mmrPublicKey, TestKeys.specPublicKey])
        let signed = try client.signRequest(
            origin: "example.org", destination: "matrix.org", uri: "/_matrix/federation/v1/media/download/abc")
        #expect(signed.keyID.description == "ed25519:e5d0oC")
    }

    @Test(
        "without CREDENTIALS_DIRECTORY a credential: path fails, and says which path it tried",
        .enabled(if: env != nil, "env is not installed"))
    func credentialsMissing() throws {
        let directory = TemporaryDirectory()
        let config = directory.write(
            "sigild.yaml",
            """
            servers:
              example.org:
                keys: [ "credential:mmr.signing.key" ]
            """, mode: 0o644)
        let unset = try run(Self.env!, ["-u", "CREDENTIALS_DIRECTORY", Binaries.path("sigild"), "--check-config", config])
        #expect(unset.status != 0)
        #expect(unset.output.contains("$CREDENTIALS_DIRECTORY/mmr.signing.key"), "\(unset.output)")

        let empty = directory.file("empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: false)
        let missing = try run(Binaries.path("sigild"), ["--check-config", config], environment: ["CREDENTIALS_DIRECTORY": empty])
        #expect(missing.status != 0)
        #expect(missing.output.contains("\(empty)/mmr.signing.key"), "\(missing.output)")
    }
}
