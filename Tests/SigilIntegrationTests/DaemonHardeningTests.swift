import Foundation
import SigilClient
import SigilCore
import SigilTestSupport
import Testing

/// The process hardening sigild applies to itself: no core dumps, and non-dumpable, so that not
/// even other processes of its own user can read its memory or environment through /proc.
extension DaemonEndToEnd {
    @Suite("process hardening")
    struct Hardening {
        static var canSwitchUsers: Bool { Privileges.isRoot && Privileges.hasSetpriv }

        static func owner(_ path: String) -> (uid: UInt32, gid: UInt32)? {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            return (info.st_uid, info.st_gid)
        }

        @Test("the running daemon's core file size limit is 0")
        func noCoreDumps() throws {
            let daemon = try DaemonFixture.quickStart()
            defer { daemon.stop() }
            let limits = try String(contentsOfFile: "/proc/\(daemon.pid)/limits", encoding: .utf8)
            let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") })
            let fields = line.dropFirst("Max core file size".count).split(separator: " ")
            #expect(fields.prefix(2) == ["0", "0"], "\(line)")
        }

        @Test(
            "non-dumpable: its /proc files belong to root, and its own uid cannot read its environment",
            .enabled(if: Hardening.canSwitchUsers, "needs root and setpriv to run sigild and a reader as another user"))
        func nonDumpable() throws {
            let directory = MemoryLock.directoryForNobody(memoryLock: "warn")
            let configText = try String(contentsOfFile: directory.file("sigild.yaml"), encoding: .utf8)
            let daemon = try DaemonFixture(config: configText, prefix: Privileges.asNobody, directory: directory)
            defer { daemon.stop() }

            // A control: an ordinary (dumpable) process of the same user.
            let control = try ChildProcess(Privileges.setpriv, Array(Privileges.asNobody.dropFirst()) + ["/bin/sleep", "5"])
            defer {
                // SIGKILL: the test runner may block SIGTERM, and sleep inherits the mask.
                control.signal(SIGKILL)
                control.wait(timeout: 10)
            }
            #expect(eventually { Self.owner("/proc/\(control.pid)/status")?.uid == Privileges.nobody })

            let status = try String(contentsOfFile: "/proc/\(daemon.pid)/status", encoding: .utf8)
            #expect(status.contains("Uid:\t65534\t65534\t65534\t65534"), "sigild is not running as uid 65534")
            for file in ["status", "environ", "mem"] {
                let owner = try #require(Self.owner("/proc/\(daemon.pid)/\(file)"))
                #expect(owner.uid == 0 && owner.gid == 0, "/proc/\(daemon.pid)/\(file) is owned by \(owner): the daemon is dumpable")
            }

            let reader = Array(Privileges.asNobody.dropFirst()) + ["/bin/cat"]
            let ofControl = try run(Privileges.setpriv, reader + ["/proc/\(control.pid)/environ"])
            #expect(ofControl.status == 0, "the control process's environment should be readable by its own user: \(ofControl.output)")
            let ofDaemon = try run(Privileges.setpriv, reader + ["/proc/\(daemon.pid)/environ"])
            #expect(ofDaemon.status != 0, "uid 65534 read sigild's environment")
            #expect(ofDaemon.stdout.isEmpty)
            #expect(ofDaemon.stderr.contains("Permission denied"), "\(ofDaemon.output)")
            // Still serving, of course.
            #expect(try daemon.client().ping([5]) == [5])
        }
    }
}
