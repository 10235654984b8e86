import Foundation
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// sigild's side of `Type=notify` and `WatchdogSec=`, checked against a datagram socket the
/// test binds in place of systemd's: what is sent, and in what order.
@Suite("systemd notify protocol")
struct SystemdNotifyTests {
    static let env = findProgram("env")

    static let config = """
        listen:
          - name: main
            path: {dir}/s.sock
        servers:
          domain:
            keys: [{dir}/spec.key]
        access:
          - uid: 0
        workers: 2
        """

    @Test("a failed reload shows in STATUS= until a reload works again")
    func failedReloadStatus() throws {
        let directory = TemporaryDirectory()
        let receiver = try NotifyReceiver(address: directory.file("notify"))
        defer { receiver.close() }
        let daemon = try DaemonFixture(
            config: Self.config, files: ["spec.key": TestKeys.specSynapseFile],
            directory: directory, notify: receiver)
        defer { daemon.stop() }
        #expect(receiver.wait { $0.contains { $0.hasPrefix("READY=1") } }, "\(receiver.messages)")
        directory.write("spec.key", "ed25519 1 tooShort\n")
        daemon.signal(SIGHUP)
        #expect(
            receiver.wait { $0.filter { $0.hasPrefix("READY=1") }.count >= 2 }, "\(receiver.messages)\n\(daemon.log)")
        let failed = try #require(receiver.messages.last { $0.hasPrefix("READY=1") }).notifyFields["STATUS"] ?? ""
        #expect(failed.hasPrefix("RELOAD FAILED at "), "\(failed)")
        #expect(failed.contains("spec.key:1"), "\(failed)")
        #expect(failed.contains("serving the previous keys"), "\(failed)")
        // Where, never what: every local user can read STATUS=.
        #expect(!failed.contains("tooShort") && !failed.contains("seed"), "\(failed)")
        directory.write("spec.key", TestKeys.specSynapseFile)
        daemon.signal(SIGHUP)
        #expect(receiver.wait { $0.filter { $0.hasPrefix("READY=1") }.count >= 3 }, "\(receiver.messages)")
        let recovered = try #require(receiver.messages.last { $0.hasPrefix("READY=1") }).notifyFields["STATUS"] ?? ""
        #expect(recovered.hasPrefix("1 key(s) for domain"), "\(recovered)")
        #expect(!recovered.contains("RELOAD FAILED"), "\(recovered)")
    }

    @Test(
        "READY with STATUS, WATCHDOG while running, RELOADING then READY around SIGHUP, STOPPING on SIGTERM",
        .enabled(if: env != nil, "env is not installed"))
    func lifecycle() throws {
        let directory = TemporaryDirectory()
        let receiver = try NotifyReceiver(address: directory.file("notify"))
        defer { receiver.close() }
        // `env -u` execs sigild in place (same pid) without any WATCHDOG_PID the runner may have.
        let daemon = try DaemonFixture(
            config: Self.config, files: ["spec.key": TestKeys.specSynapseFile], prefix: [Self.env!, "-u", "WATCHDOG_PID"],
            environment: ["WATCHDOG_USEC": "400000"], directory: directory, notify: receiver)
        defer { daemon.stop() }

        // Keep-alives at half of WATCHDOG_USEC (200 ms): two within a second or so.
        #expect(receiver.wait { $0.filter { $0 == "WATCHDOG=1" }.count >= 2 }, "\(receiver.messages)")
        let beforeReload = Posix.monotonicNanoseconds() / 1000
        daemon.signal(SIGHUP)
        #expect(receiver.wait { $0.filter { $0.hasPrefix("READY=1") }.count >= 2 }, "\(receiver.messages)\n\(daemon.log)")
        let afterReload = Posix.monotonicNanoseconds() / 1000
        #expect(
            receiver.wait { messages in
                guard let reload = messages.firstIndex(where: { $0.hasPrefix("RELOADING=1") }) else { return false }
                return messages[(reload + 1)...].contains("WATCHDOG=1")
            }, "\(receiver.messages)")
        #expect(daemon.stop() == 0, "\(daemon.log)")
        #expect(receiver.wait(timeout: 5) { $0.last == "STOPPING=1" }, "\(receiver.messages)")

        let messages = receiver.messages
        // Startup: READY=1 first, with a STATUS= line for `systemctl status`.
        let first = try #require(messages.first).notifyFields
        #expect(first["READY"] == "1")
        #expect(first["STATUS"]?.hasPrefix("1 key(s) for domain") == true, "\(messages)")

        // One reload: RELOADING=1 with CLOCK_MONOTONIC in µs, READY=1 straight after.
        let reloads = messages.indices.filter { messages[$0].hasPrefix("RELOADING=1") }
        try #require(reloads.count == 1, "\(messages)")
        let reload = reloads[0]
        let reloading = messages[reload].notifyFields
        let stamp = try #require(reloading["MONOTONIC_USEC"].flatMap { UInt64($0) }, "\(messages[reload])")
        #expect(stamp >= beforeReload && stamp <= afterReload, "MONOTONIC_USEC \(stamp) not in [\(beforeReload), \(afterReload)]")
        let readies = messages.indices.filter { messages[$0].hasPrefix("READY=1") }
        try #require(readies == [0, reload + 1], "\(messages)")
        #expect(messages[reload + 1].notifyFields["STATUS"] != nil)

        // Between: only STATUS and WATCHDOG, and at least two keep-alives before and one after.
        let running = messages[1..<reload]
        let reloaded = messages.dropFirst(reload + 2).dropLast()
        #expect(running.filter { $0 == "WATCHDOG=1" }.count >= 2)
        #expect(reloaded.contains("WATCHDOG=1"))
        for message in running + reloaded {
            #expect(message == "WATCHDOG=1" || message.hasPrefix("STATUS="), "unexpected \(message)")
        }

        // Drain: STOPPING=1 once, last.
        #expect(messages.filter { $0 == "STOPPING=1" }.count == 1)
        #expect(messages.last == "STOPPING=1")
    }

    @Test("the abstract namespace (@name) works; no keep-alives when WATCHDOG_PID names another process")
    func abstractSocketAndForeignWatchdog() throws {
        let directory = TemporaryDirectory()
        let receiver = try NotifyReceiver(address: "@sigil-test-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { receiver.close() }
        let daemon = try DaemonFixture(
            config: Self.config, files: ["spec.key": TestKeys.specSynapseFile],
            environment: ["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"], directory: directory, notify: receiver)
        defer { daemon.stop() }
        #expect(receiver.wait { $0.first?.hasPrefix("READY=1") == true }, "\(receiver.messages)\n\(daemon.log)")
        // Ten keep-alive periods: none may come, the watchdog belongs to pid 1.
        usleep(1_000_000)
        #expect(daemon.stop() == 0)
        #expect(receiver.wait(timeout: 5) { $0.last == "STOPPING=1" }, "\(receiver.messages)")
        #expect(!receiver.messages.contains("WATCHDOG=1"), "\(receiver.messages)")
    }
}
