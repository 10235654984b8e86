import Foundation
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// The shipped units in systemd/: they parse (`systemd-analyze verify`), they are hardened
/// (`systemd-analyze security --offline=true` rates sigild.service 1.5 or lower), the example
/// configuration loads, and sigild — run with that configuration under the same socket
/// activation — makes no system call that the unit's SystemCallFilter= would refuse.
@Suite("systemd units")
struct SystemdUnitTests {
    static let analyze = findProgram("systemd-analyze")
    static let socketActivate = findProgram("systemd-socket-activate")
    static let strace = findProgram("strace")
    static let setpriv = findProgram("setpriv")
    static let prlimit = findProgram("prlimit")
    static let units = ["sigild.service", "sigild.socket", "sigild-admin.socket"]
    static let maximumExposure = 1.5

    static func unitPath(_ name: String) -> String { Repository.path("systemd/" + name) }

    static func read(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    /// systemd/sigild.yaml as a test can load it: the sigil-clients group (which exists only
    /// where the guide's install steps ran) becomes nogroup.
    static func exampleConfig() throws -> String {
        try read(unitPath("sigild.yaml")).replacingOccurrences(of: "sigil-clients", with: "nogroup")
    }

    @Test(
        "systemd-analyze verify accepts the units without a single warning",
        .enabled(if: analyze != nil, "systemd-analyze is not installed (apt-get install systemd)"))
    func verify() throws {
        // verify insists that ExecStart='s program exists: check a copy that names the built one.
        let directory = TemporaryDirectory()
        var paths: [String] = []
        for unit in Self.units {
            let text = try Self.read(Self.unitPath(unit))
                .replacingOccurrences(of: "ExecStart=/usr/bin/sigild ", with: "ExecStart=\(Binaries.path("sigild")) ")
            paths.append(directory.write(unit, text, mode: 0o644))
        }
        #expect(try Self.read(paths[0]).contains("ExecStart=\(Binaries.path("sigild")) --config /etc/sigil/sigild.yaml"))
        let result = try run(Self.analyze!, ["verify", "--man=no"] + paths, environment: ["SYSTEMD_LOG_COLOR": "0"])
        // verify exits 0 even for unknown or misspelt settings; it only prints them. So any output fails.
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(result.output)")
    }

    @Test(
        "systemd-analyze security --offline=true rates sigild.service at most 1.5",
        .enabled(if: analyze != nil, "systemd-analyze is not installed (apt-get install systemd)"))
    func securityExposure() throws {
        let result = try run(
            Self.analyze!, ["security", "--offline=true", "--no-pager", Self.unitPath("sigild.service")],
            environment: ["SYSTEMD_LOG_COLOR": "0", "SYSTEMD_COLORS": "0"])
        #expect(result.status == 0, "\(result.output)")
        // Parse warnings (a misspelt setting is ignored, and then scored as absent) go to stderr.
        #expect(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(result.stderr)")
        let line = try #require(
            result.stdout.split(separator: "\n").first { $0.contains("Overall exposure level for sigild.service:") }, "\(result.output)")
        let figure = try #require(
            line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }, "cannot read the figure in: \(line)")
        #expect(figure <= Self.maximumExposure, "exposure \(figure) > \(Self.maximumExposure):\n\(result.stdout)")
    }

    @Test(
        "the units and the example configuration agree: names, paths, modes, the credential",
        .enabled(if: analyze != nil, "systemd-analyze is not installed (apt-get install systemd)"))
    func unitsMatchConfiguration() throws {
        let service = try Self.read(Self.unitPath("sigild.service"))
        let mmr = try Self.read(Self.unitPath("sigild.socket"))
        let admin = try Self.read(Self.unitPath("sigild-admin.socket"))
        let config = try Self.read(Self.unitPath("sigild.yaml"))
        func settings(_ text: String) -> [String] { text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") } }
        #expect(settings(mmr).contains("FileDescriptorName=mmr"))
        #expect(settings(mmr).contains("ListenStream=/run/sigil/sigild.sock"))
        #expect(settings(mmr).contains("SocketMode=0660"))
        #expect(settings(mmr).contains("SocketGroup=sigil-clients"))
        #expect(settings(admin).contains("FileDescriptorName=admin"))
        #expect(settings(admin).contains("ListenStream=/run/sigil/admin.sock"))
        #expect(settings(admin).contains("SocketMode=0600"))
        #expect(settings(admin).contains("Service=sigild.service"))
        #expect(settings(service).contains("Type=notify"))
        #expect(settings(service).contains("ExecStart=/usr/bin/sigild --config /etc/sigil/sigild.yaml"))
        #expect(settings(service).contains("LoadCredential=mmr.signing.key:/etc/sigil/mmr.signing.key"))
        #expect(config.contains("- name: mmr") && config.contains("- name: admin"))
        #expect(config.contains("- credential:mmr.signing.key"))
        #expect(config.contains("group: sigil-clients"))

        // The example loads, with the credential where systemd would put it.
        let directory = TemporaryDirectory()
        let credentials = directory.file("credentials")
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: false)
        directory.write("credentials/mmr.signing.key", TestKeys.mmrFile, mode: 0o400)
        let path = directory.write("sigild.yaml", try Self.exampleConfig(), mode: 0o644)
        let check = try run(Binaries.path("sigild"), ["--check-config", path], environment: ["CREDENTIALS_DIRECTORY": credentials])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.stdout.contains("example.org: signs with ed25519:e5d0oC"), "\(check.output)")
        #expect(check.stdout.contains("listener mmr: systemd socket, 1 rule(s)"), "\(check.output)")
        #expect(check.stdout.contains("listener admin: systemd socket, 1 rule(s)"), "\(check.output)")
    }

    // MARK: SystemCallFilter=, RestrictAddressFamilies=, MemoryDenyWriteExecute=

    /// The system calls the service's SystemCallFilter= lines allow, expanded with
    /// `systemd-analyze syscall-filter` and merged in order as systemd merges them (the first
    /// line is an allow list; a later `~` line removes, a later plain line adds).
    static func allowedSystemCalls() throws -> Set<String> {
        let service = try read(unitPath("sigild.service"))
        let lines = service.split(separator: "\n").filter { $0.hasPrefix("SystemCallFilter=") }
            .map { String($0.dropFirst("SystemCallFilter=".count)) }
        guard let first = lines.first, !first.hasPrefix("~") else { throw FixtureError("the filter must start with an allow list") }
        var cache: [String: Set<String>] = [:]
        func expand(_ item: String) throws -> Set<String> {
            guard item.hasPrefix("@") else { return [item] }
            if let known = cache[item] { return known }
            let listing = try run(analyze!, ["syscall-filter", "--no-pager", item])
            guard listing.status == 0 else { throw FixtureError("systemd-analyze syscall-filter \(item): \(listing.output)") }
            var calls: Set<String> = []
            for entry in listing.stdout.split(separator: "\n").dropFirst() {
                let name = entry.trimmingCharacters(in: .whitespaces)
                if name.isEmpty || name.hasPrefix("#") { continue }
                calls.formUnion(try expand(name))
            }
            cache[item] = calls
            return calls
        }
        var allowed: Set<String> = []
        for line in lines {
            let remove = line.hasPrefix("~")
            for item in (remove ? String(line.dropFirst()) : line).split(separator: " ") {
                let calls = try expand(String(item))
                if remove { allowed.subtract(calls) } else { allowed.formUnion(calls) }
            }
        }
        return allowed
    }

    /// What a run as the unit would do, on this machine: sigild with the example configuration
    /// under systemd-socket-activate with both named sockets, the credential, a notify socket
    /// and a watchdog; where root can arrange it, as an unprivileged user with no capabilities
    /// (so no CAP_IPC_LOCK), LimitMEMLOCK=1M, LimitCORE=0 and NoNewPrivileges=, the credential
    /// owned by that user as systemd hands it over. `wrapper` goes between those and sigild.
    /// The operator's and an MMR worker's requests, a SIGHUP and a SIGTERM are then made.
    struct ServiceRun {
        let daemon: ActivatedDaemon
        let notifications: [String]
        let unprivileged: Bool
    }

    static func runLikeTheService(
        outer: (TemporaryDirectory) throws -> [String] = { _ in [] }, inner: (TemporaryDirectory) throws -> [String] = { _ in [] }
    ) throws -> ServiceRun {
        let directory = TemporaryDirectory()
        chmod(directory.path, 0o711)
        let credentials = directory.file("credentials")
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: false)
        let key = directory.write("credentials/mmr.signing.key", TestKeys.mmrFile, mode: 0o400)
        let receiver = try NotifyReceiver(address: directory.file("notify"))
        defer { receiver.close() }
        chmod(receiver.address, 0o666)
        let mmr = directory.file("s.sock")
        let admin = directory.file("a.sock")
        var asService: [String] = []
        if let setpriv, let prlimit, Posix.effectiveUID == 0 {
            chown(credentials, 65534, 65534)
            chown(key, 65534, 65534)
            asService = [
                prlimit, "--memlock=1048576:1048576", "--core=0", "--",
                setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
            ]
        }
        // systemd-socket-activate passes only the environment it is told to (-E), like a unit;
        // every wrapper execs in place, so LISTEN_PID still names sigild.
        let daemon = try ActivatedDaemon(
            config: try exampleConfig(), sockets: [(mmr, "mmr"), (admin, "admin")],
            environment: ["CREDENTIALS_DIRECTORY": credentials, "WATCHDOG_USEC": "400000"],
            wrapper: try outer(directory) + asService + inner(directory), directory: directory, notify: receiver, probe: 1)
        defer { daemon.stop() }
        chmod(mmr, 0o666)
        chmod(admin, 0o600)
        #expect(receiver.wait(timeout: 30) { $0.contains { $0.hasPrefix("READY=1") } }, "\(receiver.messages)\n\(daemon.log)")
        if !asService.isEmpty {
            let status = (try? read("/proc/\(daemon.pid)/status")) ?? ""
            #expect(status.contains("Uid:\t65534\t65534\t65534\t65534"), "\(status)")
            #expect(status.contains("CapEff:\t0000000000000000"), "\(status)")
            let locked = status.split(separator: "\n").first { $0.hasPrefix("VmLck:") }
            #expect(locked != nil && locked?.contains(" 0 kB") == false, "keys not locked: \(locked ?? "")")
        }

        // Every operation the two listeners grant.
        let client = SigilClient(socketPath: admin, timeout: 20)
        defer { client.close() }
        _ = try client.ping(Array("hi".utf8))
        _ = try client.stats()
        #expect(try client.listKeys().servers.first?.keys.first?.id == "ed25519:e5d0oC")
        _ = try client.keyDocument(server: "example.org")
        if let setpriv, Posix.effectiveUID == 0 {
            let signed = try run(
                setpriv,
                [
                    "--reuid=65534", "--regid=65534", "--clear-groups", Binaries.path("sigil"), "sign-request", "--socket", mmr,
                    "--origin", "example.org", "--destination", "matrix.org", "--uri", "/_matrix/federation/v1/media/download/abc",
                ], timeout: 20)
            #expect(signed.status == 0, "\(signed.output)\n\(daemon.log)")
        }
        #expect(receiver.wait { $0.contains("WATCHDOG=1") }, "\(receiver.messages)\n\(daemon.log)")
        daemon.signal(SIGHUP)
        #expect(receiver.wait { $0.filter { $0.hasPrefix("READY=1") }.count >= 2 }, "\(receiver.messages)\n\(daemon.log)")
        #expect(daemon.stop() == 0, "\(daemon.log)")
        #expect(receiver.wait(timeout: 5) { $0.last == "STOPPING=1" }, "\(receiver.messages)")
        #expect(daemon.log.contains("sigild: stopped"), "\(daemon.log)")
        #expect(!daemon.log.contains("warning"), "\(daemon.log)")
        return ServiceRun(daemon: daemon, notifications: receiver.messages, unprivileged: !asService.isEmpty)
    }

    @Test(
        "under strace, sigild as the unit runs it stays inside SystemCallFilter=, AF_UNIX, W^X and LimitMEMLOCK=",
        .enabled(if: Sanitizer.none, "a sanitizer's runtime makes system calls the unit's SystemCallFilter= forbids, and ASan ignores mlock"),
        .enabled(if: analyze != nil, "systemd-analyze is not installed (apt-get install systemd)"),
        .enabled(if: socketActivate != nil, "systemd-socket-activate is not installed (apt-get install systemd)"),
        .enabled(if: strace != nil, "strace is not installed (apt-get install strace)"))
    func systemCallsUnderTheFilter() throws {
        let allowed = try Self.allowedSystemCalls()
        #expect(allowed.contains("mlock") && allowed.contains("prlimit64") && allowed.contains("sendto"))
        #expect(!allowed.contains("setrlimit") && !allowed.contains("setuid") && !allowed.contains("mount"))

        let service = try Self.runLikeTheService(outer: { directory in [Self.strace!, "-D", "-f", "-q", "-o", directory.file("trace"), "--"] })

        // strace -D writes from a detached process: wait until it has recorded sigild's exit.
        let tracePath = service.daemon.directory.file("trace")
        func recordedExit(_ text: String) -> Bool {
            text.split(separator: "\n").contains { line in
                let fields = line.split(separator: " ", maxSplits: 1)
                return fields.count == 2 && fields[0] == "\(service.daemon.pid)"
                    && fields[1].trimmingCharacters(in: .whitespaces).hasPrefix("+++ exited with ")
            }
        }
        #expect(
            waitUntil { recordedExit((try? Self.read(tracePath)) ?? "") },
            "strace did not record the exit of \(service.daemon.pid): \(((try? Self.read(tracePath)) ?? "").suffix(300))\n\(service.daemon.log)")
        // sigild's own calls: from its execve on (prlimit's and setpriv's are systemd's work).
        let all = try Self.read(tracePath).split(separator: "\n")
        let start = try #require(
            all.firstIndex { $0.contains("execve(\"\(Binaries.path("sigild"))\"") && $0.hasSuffix("= 0") }, "no execve of sigild in the trace")
        let lines = all[start...]
        var used: Set<String> = []
        for line in lines {
            // "1234  name(args) = result"; skip "<... name resumed>", "--- SIGHUP", "+++ exited".
            // strace pads the pid column, so the call starts after some spaces.
            let fields = line.split(separator: " ", maxSplits: 1)
            guard fields.count == 2 else { continue }
            let call = fields[1].drop { $0 == " " }
            guard let open = call.firstIndex(of: "(") else { continue }
            let name = call[..<open]
            if !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) { used.insert(String(name)) }
        }
        #expect(used.count > 20 && used.contains("mlock") && used.contains("accept4"), "\(used.sorted())")
        let refused = used.subtracting(allowed)
        #expect(refused.isEmpty, "system calls SystemCallFilter= would refuse: \(refused.sorted())")

        // RestrictAddressFamilies=AF_UNIX: every socket() sigild opens is AF_UNIX.
        let sockets = lines.filter { $0.contains(" socket(") }
        #expect(!sockets.isEmpty)
        #expect(sockets.allSatisfy { $0.contains("socket(AF_UNIX,") }, "\(sockets)")
        // MemoryDenyWriteExecute=yes: no mapping is ever writable and executable at once.
        let writableCode = lines.filter { ($0.contains("mmap(") || $0.contains("mprotect(")) && $0.contains("PROT_WRITE") && $0.contains("PROT_EXEC") }
        #expect(writableCode.isEmpty, "\(writableCode)")
        // memory_lock: require, within LimitMEMLOCK=1M: every mlock succeeded.
        #expect(lines.contains { $0.contains(" mlock(") })
        let failedLocks = lines.filter { ($0.contains(" mlock(") || $0.contains("<... mlock resumed>")) && $0.contains("= -1") }
        #expect(failedLocks.isEmpty, "\(failedLocks)")
    }

    /// A seccomp loader (libseccomp, which systemd itself links): allows the listed system
    /// calls, kills the process on any other (systemd's default action), then execs the rest.
    static let seccompLoader = """
        #include <errno.h>
        #include <stdio.h>
        #include <string.h>
        #include <unistd.h>
        /* From <seccomp.h>, which needs libseccomp-dev; the library itself comes with systemd. */
        extern void *seccomp_init(unsigned int def_action);
        extern int seccomp_rule_add(void *ctx, unsigned int action, int syscall, unsigned int arg_cnt, ...);
        extern int seccomp_syscall_resolve_name(const char *name);
        extern int seccomp_load(void *ctx);
        int main(int argc, char **argv) {
            if (argc < 3) return 2;
            void *ctx = seccomp_init(0x80000000U /* SCMP_ACT_KILL_PROCESS */);
            FILE *list = fopen(argv[1], "r");
            if (!ctx || !list) { perror("seccomp loader"); return 2; }
            char name[128];
            while (fgets(name, sizeof name, list)) {
                name[strcspn(name, "\\n")] = 0;
                int nr = seccomp_syscall_resolve_name(name);
                if (nr >= 0 && seccomp_rule_add(ctx, 0x7fff0000U /* SCMP_ACT_ALLOW */, nr, 0) != 0) { fprintf(stderr, "rule %s\\n", name); return 2; }
            }
            fclose(list);
            if (seccomp_load(ctx) != 0) { perror("seccomp_load"); return 2; }
            execv(argv[2], argv + 2);
            perror("execv");
            return 2;
        }
        """

    static let compiler = findProgram("cc") ?? findProgram("gcc") ?? findProgram("clang")
    static let libseccomp = ["/usr/lib/x86_64-linux-gnu/libseccomp.so.2", "/usr/lib/aarch64-linux-gnu/libseccomp.so.2", "/usr/lib64/libseccomp.so.2"]
        .first { FileManager.default.fileExists(atPath: $0) }

    @Test(
        "sigild as the unit runs it survives the unit's SystemCallFilter= enforced by seccomp (kill on a refused call)",
        .enabled(if: Sanitizer.none, "a sanitizer's runtime makes system calls the unit's SystemCallFilter= forbids, and ASan ignores mlock"),
        .enabled(if: analyze != nil, "systemd-analyze is not installed (apt-get install systemd)"),
        .enabled(if: socketActivate != nil, "systemd-socket-activate is not installed (apt-get install systemd)"),
        .enabled(if: compiler != nil, "no C compiler to build the seccomp loader"),
        .enabled(if: libseccomp != nil, "libseccomp.so.2 is not installed (apt-get install libseccomp2)"))
    func enforcedSystemCallFilter() throws {
        let allowed = try Self.allowedSystemCalls()
        let service = try Self.runLikeTheService(inner: { directory in
            let source = directory.write("loader.c", Self.seccompLoader, mode: 0o644)
            let loader = directory.file("seccomp-loader")
            let built = try run(Self.compiler!, ["-O1", "-o", loader, source, Self.libseccomp!])
            guard built.status == 0 else { throw FixtureError("cannot build the seccomp loader:\n\(built.output)") }
            chmod(loader, 0o755)
            let list = directory.write("allowed", allowed.sorted().joined(separator: "\n") + "\n", mode: 0o644)
            return [loader, list]
        })
        // Killed by SIGSYS (status 159) had it made any call outside the filter.
        #expect(service.daemon.exitStatus == 0, "\(service.daemon.log)")
        #expect(service.notifications.filter { $0.hasPrefix("READY=1") }.count == 2)
    }
}
