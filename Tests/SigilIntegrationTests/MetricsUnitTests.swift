import Foundation
import SigilPosix
import SigilTestSupport
import Testing

/// sigil-metrics.service and .timer: they parse, the service is hardened, the timer fires every
/// 15 s, and the service's own command line works, against a real sigild, as root without any
/// capability and under the service's SystemCallFilter= enforced by seccomp.
@Suite("systemd metrics units")
struct MetricsUnitTests {
    static let analyze = SystemdUnitTests.analyze
    static let units = ["sigil-metrics.service", "sigil-metrics.timer"]
    static let maximumExposure = 1.0

    static func unit(_ name: String) throws -> String { try SystemdUnitTests.read(SystemdUnitTests.unitPath(name)) }
    static func settings(_ text: String, _ key: String) -> [String] {
        text.split(separator: "\n").filter { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    @Test("systemd-analyze verify accepts both units without a warning", .enabled(if: analyze != nil, "systemd-analyze is not installed (apt-get install systemd)"))
    func verify() throws {
        let directory = TemporaryDirectory()
        var paths: [String] = []
        for name in Self.units {
            let text = try Self.unit(name).replacingOccurrences(of: "ExecStart=/usr/bin/sigil ", with: "ExecStart=\(Binaries.path("sigil")) ")
            paths.append(directory.write(name, text, mode: 0o644))
        }
        let result = try run(Self.analyze!, ["verify", "--man=no"] + paths, environment: ["SYSTEMD_LOG_COLOR": "0"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(result.output)")
    }

    @Test("systemd-analyze security rates sigil-metrics.service at most 1.0", .enabled(if: analyze != nil, "systemd-analyze is not installed (apt-get install systemd)"))
    func security() throws {
        let result = try run(Self.analyze!, ["security", "--offline=true", "--no-pager", SystemdUnitTests.unitPath("sigil-metrics.service")],
                             environment: ["SYSTEMD_LOG_COLOR": "0", "SYSTEMD_COLORS": "0"])
        #expect(result.status == 0 && result.stderr.isEmpty, "\(result.output)")
        let line = try #require(result.stdout.split(separator: "\n").first { $0.contains("Overall exposure level for sigil-metrics.service:") })
        let figure = try #require(line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) })
        #expect(figure <= Self.maximumExposure, "\(result.stdout)")
    }

    @Test("the timer starts the service every 15 seconds, on the clock", .enabled(if: analyze != nil, "systemd-analyze is not installed (apt-get install systemd)"))
    func timer() throws {
        let calendar = try #require(Self.settings(try Self.unit("sigil-metrics.timer"), "OnCalendar").first)
        let result = try run(Self.analyze!, ["calendar", "--iterations=4", calendar], environment: ["TZ": "UTC", "SYSTEMD_COLORS": "0"])
        #expect(result.status == 0, "\(result.output)")
        // "Next elapse: Fri 2026-12-04 05:28:15 UTC", then "Iter. #2: …": the seconds fields.
        let seconds = result.stdout.split(separator: "\n").filter { $0.contains("Next elapse:") || $0.contains("Iter. #") }
            .compactMap { $0.split(separator: " ").dropLast().last?.split(separator: ":").last.flatMap { Int($0) } }
        #expect(seconds.count == 4, "\(result.stdout)")
        for (a, b) in zip(seconds, seconds.dropFirst()) { #expect((b - a + 60) % 60 == 15, "\(result.stdout)") }
    }

    @Test(
        "ExecStart= works against a real sigild as root with no capability, under the unit's SystemCallFilter= (seccomp)",
        .enabled(if: Sanitizer.none, "a sanitizer's runtime makes system calls the unit's SystemCallFilter= forbids"),
        .enabled(if: analyze != nil, "systemd-analyze is not installed (apt-get install systemd)"),
        .enabled(if: SystemdUnitTests.compiler != nil, "no C compiler to build the seccomp loader"),
        .enabled(if: SystemdUnitTests.libseccomp != nil, "libseccomp.so.2 is not installed (apt-get install libseccomp2)"),
        .enabled(if: SystemdUnitTests.setpriv != nil && Posix.effectiveUID == 0, "needs root and setpriv"))
    func commandUnderTheFilter() throws {
        let service = try Self.unit("sigil-metrics.service")
        // The same filter lines as sigild.service, so the set SystemdUnitTests computes applies.
        #expect(Self.settings(service, "SystemCallFilter") == Self.settings(try SystemdUnitTests.read(SystemdUnitTests.unitPath("sigild.service")), "SystemCallFilter"))
        #expect(Self.settings(service, "CapabilityBoundingSet") == [""])
        let allowed = try SystemdUnitTests.allowedSystemCalls()

        let daemon = try DaemonFixture.quickStart()
        defer { daemon.stop() }
        let directory = daemon.directory
        let textfiles = try #require(Self.settings(service, "ReadWritePaths").first)
        let socket = "/run/sigil/admin.sock"
        let command = try #require(Self.settings(service, "ExecStart").first)
        #expect(command.hasPrefix("/usr/bin/sigil stats --socket \(socket) --format prometheus --output \(textfiles)/sigil.prom"))
        let output = directory.file("textfiles")
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: false)
        let arguments = command.split(separator: " ").dropFirst().map {
            String($0).replacingOccurrences(of: socket, with: daemon.socketPath).replacingOccurrences(of: textfiles, with: output)
        }

        let source = directory.write("loader.c", SystemdUnitTests.seccompLoader, mode: 0o644)
        let loader = directory.file("seccomp-loader")
        let built = try run(SystemdUnitTests.compiler!, ["-O1", "-o", loader, source, SystemdUnitTests.libseccomp!])
        try #require(built.status == 0, "\(built.output)")
        let list = directory.write("allowed", allowed.sorted().joined(separator: "\n") + "\n", mode: 0o644)
        // The socket and the directory are root's and not writable by others, as on a real host.
        chmod(daemon.socketPath, 0o600)
        chmod(output, 0o755)
        let result = try run(SystemdUnitTests.setpriv!, [
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", loader, list, Binaries.path("sigil"),
        ] + arguments, environment: ["SWIFT_BACKTRACE": "enable=no"])
        // Killed by SIGSYS had it made a call outside the filter.
        #expect(result.status == 0, "\(result.output)")
        let written = try String(contentsOfFile: output + "/sigil.prom", encoding: .utf8)
        #expect(written.contains("\nsigil_up 1\n"), "\(written)")
        #expect(written.contains(#"sigil_key_info{server="domain",key_id="ed25519:1",state="signing"} 1"#), "\(written)")
    }
}
