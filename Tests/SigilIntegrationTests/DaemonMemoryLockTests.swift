import Foundation
import SigilClient
import SigilCore
import SigilTestSupport
import Testing

/// `memory_lock`: `require` refuses to start when key memory cannot be locked, `warn` starts and
/// says so. Root's CAP_IPC_LOCK would hide an mlock failure, so the daemon runs as uid 65534 with
/// no capabilities and RLIMIT_MEMLOCK 0.
extension DaemonEndToEnd {
    @Suite("memory lock policy")
    struct MemoryLock {
        static var canDropPrivileges: Bool { Privileges.isRoot && Privileges.hasSetpriv && Privileges.hasPrlimit }

        /// A scratch directory uid 65534 can use: it owns the directory (to bind the socket) and
        /// the key file (0600, as sigild insists).
        static func directoryForNobody(memoryLock: String) -> TemporaryDirectory {
            let directory = TemporaryDirectory()
            chown(directory.path, Privileges.nobody, Privileges.nobody)
            Privileges.openDirectory(directory)
            let key = directory.write("spec.key", TestKeys.specSynapseFile, mode: 0o600)
            chown(key, Privileges.nobody, Privileges.nobody)
            directory.write(
                "sigild.yaml",
                """
                listen:
                  - name: main
                    path: \(directory.path)/s.sock
                    mode: "0666"
                servers:
                  domain:
                    keys: [\(directory.path)/spec.key]
                access:
                  - uid: \(getuid())
                  - uid: \(Privileges.nobody)
                memory_lock: \(memoryLock)
                """, mode: 0o644)
            return directory
        }

        /// prlimit sets RLIMIT_MEMLOCK to 0 and execs setpriv, which drops to uid 65534 with no
        /// capabilities and execs what follows: one process, whose pid is sigild's.
        static let unlockable = [Privileges.prlimit, "--memlock=0:0"] + Privileges.asNobodyWithoutCapabilities

        @Test(
            "memory_lock: require refuses to start when key memory cannot be locked, and says why",
            .enabled(
                if: Sanitizer.locksMemory, "the mlock interceptor of ASan and TSan does nothing, so locking cannot fail and VmLck stays 0"),
            .enabled(if: MemoryLock.canDropPrivileges, "needs root, setpriv and prlimit to run sigild unprivileged with RLIMIT_MEMLOCK 0"))
        func requireRefusesToStart() throws {
            let directory = Self.directoryForNobody(memoryLock: "require")
            let result = try run(
                Self.unlockable[0],
                Array(Self.unlockable.dropFirst()) + [Binaries.path("sigild"), "--config", directory.file("sigild.yaml")],
                timeout: 15)
            #expect(result.status == 1, "\(result.output)")
            #expect(result.stderr.contains("cannot load keys"), "\(result.output)")
            #expect(result.stderr.contains("could not lock"), "\(result.output)")
            #expect(result.stderr.contains("RLIMIT_MEMLOCK is 0 bytes"), "\(result.output)")
            #expect(result.stderr.contains("memory_lock: warn"), "the message names the way out: \(result.output)")
            #expect(!result.stderr.contains(TestKeys.specSeed))
            #expect(!FileManager.default.fileExists(atPath: directory.file("s.sock")), "a socket was left behind")
        }

        @Test(
            "memory_lock: warn starts with unlocked keys, warns, and serves",
            .enabled(
                if: Sanitizer.locksMemory, "the mlock interceptor of ASan and TSan does nothing, so locking cannot fail and VmLck stays 0"),
            .enabled(if: MemoryLock.canDropPrivileges, "needs root, setpriv and prlimit to run sigild unprivileged with RLIMIT_MEMLOCK 0"))
        func warnStartsAndWarns() throws {
            let directory = Self.directoryForNobody(memoryLock: "warn")
            let configText = try String(contentsOfFile: directory.file("sigild.yaml"), encoding: .utf8)
            let daemon = try DaemonFixture(config: configText, prefix: Self.unlockable, directory: directory)
            defer { daemon.stop() }
            #expect(daemon.log.contains("is not locked into RAM (RLIMIT_MEMLOCK 0 bytes)"), "\(daemon.log)")
            let client = daemon.client()
            #expect(
                try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI).header
                    == SpecVectors.mediaHeader)
            let stats = try statsObject(client)
            #expect(stats["memory_locked"] as? Bool == false)
            let status = try String(contentsOfFile: "/proc/\(daemon.pid)/status", encoding: .utf8)
            #expect(status.contains("Uid:\t65534\t65534\t65534\t65534"), "sigild is not running as uid 65534")
            #expect(daemon.stop() == 0)
        }

        @Test(
            "memory_lock: require starts as an unprivileged user when RLIMIT_MEMLOCK allows",
            .enabled(if: MemoryLock.canDropPrivileges, "needs root and setpriv to run sigild unprivileged"))
        func requireStartsWhenLockingWorks() throws {
            let directory = Self.directoryForNobody(memoryLock: "require")
            let configText = try String(contentsOfFile: directory.file("sigild.yaml"), encoding: .utf8)
            let daemon = try DaemonFixture(
                config: configText, prefix: [Privileges.prlimit, "--memlock=1048576:1048576"] + Privileges.asNobodyWithoutCapabilities,
                directory: directory)
            defer { daemon.stop() }
            #expect(!daemon.log.contains("not locked"), "\(daemon.log)")
            #expect(try statsObject(daemon.client())["memory_locked"] as? Bool == true)
        }
    }
}
