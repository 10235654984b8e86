import ArgumentParser
import SigilClient
import SigilCore
import SigilPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// `reload`: what a reload of every server's keys costs a signer that is working meanwhile.

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A signer's latency while sigild reloads every server's keys (SIGHUP), against the same signer between reloads.")

    @Option(help: "sigild binary (default: the one next to sigil-bench).")
    var daemon: String?
    @Option(help: "Servers, each with its own key file in a key directory.")
    var servers = 10000
    @Option(help: "A directory of generated key files to reuse (created and filled if needed).")
    var keysCache: String?
    @Option(help: "Seconds of signing in all.")
    var duration = 20.0
    @Option(help: "Seconds from the end of one reload to the next SIGHUP.")
    var interval = 2.0
    @Option(help: "Event loops (0: one per CPU).")
    var workers = 0

    func validate() throws {
        guard servers >= 1, duration > 0, interval > 0 else { throw ValidationError("--servers, --duration and --interval must be positive") }
    }

    func run() throws {
        let notifyPath = "/tmp/sigil-bench-notify-\(Posix.pid)"
        try? Posix.unlink(notifyPath)
        let notify = try Posix.socket(type: Int32(SOCK_DGRAM.rawValue))
        defer {
            Posix.close(notify)
            try? Posix.unlink(notifyPath)
        }
        try Posix.bind(notify, path: notifyPath)
        let spawned = try SpawnedDaemon(
            daemonPath: daemon ?? siblingDaemonPath(), servers: servers, keyDirectory: true, keysCache: keysCache, workers: workers,
            notifySocket: notifyPath)
        defer { _ = spawned.stop() }
        try waitForReady(notify, timeout: 120)

        // The signer: one request at a time, each stamped with when it started.
        let samples = Locked<[(start: UInt64, nanoseconds: UInt64)]>([])
        let stop = Atomic<Bool>(false)
        let failures = Atomic<Int>(0)
        let names = spawned.serverNames
        let socketPath = spawned.socketPath
        let signer = try PosixThread(name: "bench-signer") {
            guard let connection = try? SigilConnection(path: socketPath) else {
                failures.add(1, ordering: .relaxed)
                return
            }
            defer { connection.close() }
            var generator = SystemRandomNumberGenerator()
            var local: [(UInt64, UInt64)] = []
            local.reserveCapacity(1 << 20)
            while !stop.load(ordering: .relaxed) {
                let origin = names[Int.random(in: 0..<names.count, using: &generator)]
                let request = Request.signRequest(
                    SignRequestParams(origin: origin, destination: "bench.example.org", uri: "/_matrix/federation/v1/media/download/reload"))
                let start = Posix.monotonicNanoseconds()
                guard case .signedRequest = try? connection.send(request) else {
                    failures.add(1, ordering: .relaxed)
                    continue
                }
                local.append((start, Posix.monotonicNanoseconds() - start))
            }
            samples.withLock { $0 = local }
        }

        // The reloads: SIGHUP, then READY=1 on the notify socket ends the window.
        var windows: [(start: UInt64, end: UInt64)] = []
        let deadline = Posix.monotonicNanoseconds() + UInt64(duration * 1e9)
        sleepSeconds(min(interval, duration / 4))
        while Posix.monotonicNanoseconds() + UInt64(interval * 1e9) < deadline {
            let start = Posix.monotonicNanoseconds()
            kill(spawned.pid, SIGHUP)
            try waitForReady(notify, timeout: 120)
            windows.append((start, Posix.monotonicNanoseconds()))
            sleepSeconds(interval)
        }
        while Posix.monotonicNanoseconds() < deadline { sleepSeconds(0.05) }
        stop.store(true, ordering: .relaxed)
        signer.join()

        let all = samples.withLock { $0 }
        var quiet: [UInt64] = []
        var reloading: [UInt64] = []
        var window = 0
        for sample in all {
            while window < windows.count && windows[window].end < sample.start { window += 1 }
            let end = sample.start + sample.nanoseconds
            let overlaps = window < windows.count && end >= windows[window].start && sample.start <= windows[window].end
            if overlaps { reloading.append(sample.nanoseconds) } else { quiet.append(sample.nanoseconds) }
        }
        quiet.sort()
        reloading.sort()
        let reloadTimes = windows.map { Double($0.end - $0.start) / 1e6 }.sorted()
        func percentile(_ values: [UInt64], _ p: Double) -> Double {
            values.isEmpty ? 0 : Double(values[min(values.count - 1, Int(Double(values.count) * p / 100))]) / 1000
        }
        print("sigild pid \(spawned.pid), \(servers) servers (one key file each): \(windows.count) full reloads in \(RunReport.format(duration, decimals: 0)) s")
        if !reloadTimes.isEmpty {
            print("  reload (SIGHUP → READY=1): p50 \(RunReport.format(reloadTimes[reloadTimes.count / 2], decimals: 1)) ms, max \(RunReport.format(reloadTimes.last!, decimals: 1)) ms")
        }
        print("  signer, one request at a time, random origin:")
        print("    between reloads  \(quiet.count) requests: p50 \(RunReport.format(percentile(quiet, 50), decimals: 1)) µs  p99 \(RunReport.format(percentile(quiet, 99), decimals: 1)) µs  max \(RunReport.format(Double(quiet.last ?? 0) / 1000, decimals: 1)) µs")
        print("    during reloads   \(reloading.count) requests: p50 \(RunReport.format(percentile(reloading, 50), decimals: 1)) µs  p99 \(RunReport.format(percentile(reloading, 99), decimals: 1)) µs  max \(RunReport.format(Double(reloading.last ?? 0) / 1000, decimals: 1)) µs")
        print("  p99 added by reloading: \(RunReport.format((percentile(reloading, 99) - percentile(quiet, 99)) / 1000, decimals: 3)) ms; failed requests: \(failures.load(ordering: .relaxed))")
    }

    private func waitForReady(_ fd: Int32, timeout: Double) throws {
        try Posix.setReceiveTimeout(fd, seconds: timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try Posix.recv(fd, into: $0) }
            if String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n").contains("READY=1") { return }
        }
    }
}
