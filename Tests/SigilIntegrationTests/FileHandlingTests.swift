import Foundation
import Glibc
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Synchronization
import Testing

/// Paths and files a local attacker could race or plant (issue 9): the socket's node and
/// directory, abstract sockets, FIFOs and other users' files where configuration and keys are
/// read, and what a failed reload shows every local user.
extension DaemonEndToEnd {
    @Suite("socket, key and configuration files")
    struct FileHandling {
        static func config(socket: String = "{dir}/s.sock", listenerExtra: String = "") -> String {
            """
            listen:
              - name: main
                path: \(socket)
                mode: "0660"
            \(listenerExtra)
            servers:
              domain:
                keys: [{dir}/spec.key]
            """
        }

        static func mode(_ path: String) -> (mode: UInt32, uid: UInt32, gid: UInt32)? {
            var status = stat()
            guard lstat(path, &status) == 0 else { return nil }
            return (UInt32(status.st_mode & 0o7777), status.st_uid, status.st_gid)
        }

        @Test(
            "the socket gets its mode, owner and group without a path-based chmod or chown: a symlink swapped in never redirects them",
            .enabled(if: Privileges.isRoot, "needs root to set a socket's owner and group"))
        func socketOwnerAndGroup() throws {
            let directory = TemporaryDirectory()
            let daemon = try DaemonFixture(
                config: Self.config(listenerExtra: "    owner: \(Privileges.nobody)\n    group: 4242"),
                files: ["spec.key": TestKeys.specSynapseFile],
                directory: directory)
            defer { daemon.stop() }
            let node = try #require(Self.mode(daemon.socketPath))
            #expect(node.mode == 0o660 && node.uid == Privileges.nobody && node.gid == 4242, "\(node)")
        }

        @Test("a socket directory other users can write without the sticky bit is refused, naming the danger")
        func worldWritableDirectory() throws {
            let directory = TemporaryDirectory()
            let sockets = directory.file("run")
            mkdir(sockets, 0o777)
            chmod(sockets, 0o777)
            directory.write("spec.key", TestKeys.specSynapseFile)
            let configPath = directory.write(
                "sigild.yaml", Self.config(socket: sockets + "/s.sock").replacingOccurrences(of: "{dir}", with: directory.path), mode: 0o644
            )
            let refused = try run(Binaries.path("sigild"), ["--config", configPath], timeout: 20)
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("writable by other users without the sticky bit"), "\(refused.output)")
            #expect(!FileManager.default.fileExists(atPath: sockets + "/s.sock"))
            // With the sticky bit (as /tmp has), others cannot swap our node: accepted.
            chmod(sockets, 0o1777)
            let daemon = try DaemonFixture(
                config: Self.config(socket: sockets + "/s.sock"), files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            #expect(Self.mode(sockets + "/s.sock")?.mode == 0o660)
        }

        @Test(
            "an attacker swapping the socket path for a symlink during start-up never changes the target's mode",
            .enabled(if: Privileges.isRoot, "needs root (the daemon must be able to chmod the victim, as root can)"))
        func symlinkRace() throws {
            let directory = TemporaryDirectory()
            let sockets = directory.file("run")
            mkdir(sockets, 0o1777)
            chmod(sockets, 0o1777)
            let victim = directory.write("victim", "secret\n", mode: 0o600)
            let socketPath = sockets + "/s.sock"
            let stop = Atomic<Bool>(false)
            let swaps = Atomic<Int>(0)
            // The attacker: replace whatever is at the socket path with a symlink to the victim,
            // as fast as it can (in a sticky directory it can only do so while nothing is there).
            Thread.detachNewThread {
                let temporary = sockets + "/.link"
                while !stop.load(ordering: .relaxed) {
                    unlink(temporary)
                    symlink(victim, temporary)
                    if rename(temporary, socketPath) == 0 { swaps.add(1, ordering: .relaxed) }
                }
            }
            defer { stop.store(true, ordering: .relaxed) }
            for _ in 0..<40 {
                let daemon = try? DaemonFixture(
                    config: Self.config(socket: socketPath).replacingOccurrences(of: "mode: \"0660\"", with: "mode: \"0666\""),
                    files: ["spec.key": TestKeys.specSynapseFile], directory: directory, readyTimeout: 5)
                daemon?.stop()
            }
            stop.store(true, ordering: .relaxed)
            #expect(Self.mode(victim)?.mode == 0o600, "the victim's mode changed")
            #expect(try String(contentsOfFile: victim, encoding: .utf8) == "secret\n")
        }

        @Test("an abstract socket (@name) is refused unless the configuration says abstract: true, and then comes with a warning")
        func abstractSockets() throws {
            let name = "@sigil-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let directory = TemporaryDirectory()
            directory.write("spec.key", TestKeys.specSynapseFile)
            // (`@` starts no plain YAML scalar: the path is quoted.)
            let refusedPath = directory.write(
                "refused.yaml", Self.config(socket: "\"\(name)\"").replacingOccurrences(of: "{dir}", with: directory.path), mode: 0o644)
            let refused = try run(Binaries.path("sigild"), ["--check-config", refusedPath])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("abstract socket") && refused.stderr.contains("abstract: true"), "\(refused.output)")
            let daemon = try DaemonFixture(
                config: Self.config(socket: "\"\(name)\"", listenerExtra: "    abstract: true").replacingOccurrences(
                    of: "    mode: \"0660\"\n", with: ""),
                files: ["spec.key": TestKeys.specSynapseFile], directory: directory)
            defer { daemon.stop() }
            #expect(daemon.log.contains("any local process can connect"), "\(daemon.log)")
            let client = SigilClient(socketPath: name, timeout: 5)
            defer { client.close() }
            #expect(try client.ping([1]) == [1])
        }

        @Test("a FIFO at the configuration path makes a reload fail at once; accepting and signing go on")
        func fifoConfiguration() throws {
            let daemon = try DaemonFixture(config: Self.config(), files: ["spec.key": TestKeys.specSynapseFile])
            defer { daemon.stop() }
            let configPath = daemon.directory.file("sigild.yaml")
            unlink(configPath)
            #expect(mkfifo(configPath, 0o644) == 0)
            daemon.signal(SIGHUP)
            #expect(daemon.waitForLog("reload failed", timeout: 5), "\(daemon.log)")
            #expect(daemon.log.contains("not a regular file"), "\(daemon.log)")
            let client = daemon.client(timeout: 5)
            #expect(try client.ping([3]) == [3])
            #expect(
                try client.signRequest(origin: "domain", destination: "example.org", uri: SpecVectors.mediaURI).header
                    == SpecVectors.mediaHeader)
        }

        @Test(
            "key and configuration files owned by another user are refused",
            .enabled(if: Privileges.isRoot, "needs root to give files to another user"))
        func foreignOwners() throws {
            let directory = TemporaryDirectory()
            let key = directory.write("spec.key", TestKeys.specSynapseFile)
            let configPath = directory.write(
                "sigild.yaml", Self.config().replacingOccurrences(of: "{dir}", with: directory.path), mode: 0o644)
            chown(key, Privileges.nobody, Privileges.nobody)
            let byKey = try run(Binaries.path("sigild"), ["--check-config", configPath])
            #expect(byKey.status != 0)
            #expect(byKey.stderr.contains("owned by uid 65534"), "\(byKey.output)")
            chown(key, 0, 0)
            chown(configPath, Privileges.nobody, Privileges.nobody)
            let byConfig = try run(Binaries.path("sigild"), ["--check-config", configPath])
            #expect(byConfig.status != 0)
            #expect(byConfig.stderr.contains("owned by uid 65534"), "\(byConfig.output)")
            chown(configPath, 0, 0)
            chmod(configPath, 0o666)
            let writable = try run(Binaries.path("sigild"), ["--check-config", configPath])
            #expect(writable.status != 0)
            #expect(writable.stderr.contains("writable by every user"), "\(writable.output)")
        }

        @Test("a failed reload shows where in STATUS= and STATS, never what the file says there")
        func statusNeverEchoesContents() throws {
            let scratch = TemporaryDirectory()
            let receiver = try NotifyReceiver(address: scratch.file("n"))
            defer { receiver.close() }
            let daemon = try DaemonFixture(config: Self.config(), files: ["spec.key": TestKeys.specSynapseFile], notify: receiver)
            defer { daemon.stop() }
            // A line an operator pasted a seed into by mistake.
            let broken =
                Self.config().replacingOccurrences(of: "{dir}", with: daemon.directory.path) + "\nlog_level: \(TestKeys.specSeed)\n"
            daemon.directory.write("sigild.yaml", broken, mode: 0o644)
            daemon.signal(SIGHUP)
            #expect(daemon.waitForReady(count: 2), "\(receiver.messages)")
            let status = receiver.messages.last { $0.hasPrefix("READY=1") }?.notifyFields["STATUS"] ?? ""
            #expect(status.hasPrefix("RELOAD FAILED at "), "\(status)")
            #expect(status.contains("sigild.yaml:") && status.contains("(log_level)"), "\(status)")
            #expect(!status.contains(String(TestKeys.specSeed.prefix(16))), "\(status)")
            let stats = try statsObject(daemon.client())
            let lastError = (stats["reloads"] as? [String: Any])?["last_error"] as? String ?? ""
            #expect(lastError.contains("(log_level)") && !lastError.contains(String(TestKeys.specSeed.prefix(16))), "\(lastError)")
        }
    }
}
