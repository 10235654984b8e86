import ArgumentParser
import Histogram
import SigilClient
import SigilCore
import SigilPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

@main
struct SigilBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sigil-bench",
        abstract: "Load-test sigild and compare it, in the same run, with raw in-process libsodium.",
        discussion: """
            Every figure is also given as a ratio to a baseline measured in the same run on the same \
            bytes: raw crypto_sign_detached (or _verify_detached) and a bare Unix-socket round trip. \
            Without --socket, sigil-bench starts its own sigild (the one next to it) with throwaway keys.
            """,
        subcommands: [Run.self, Sweep.self, Startup.self, Connections.self],
        defaultSubcommand: Run.self)
}

/// Options shared by `run` and `sweep`.
struct LoadOptions: ParsableArguments {
    @Option(help: "sigild's socket; omit to start a private sigild with throwaway keys.")
    var socket: String?

    @Option(help: "sigild binary to start when --socket is not given.")
    var daemon: String?

    @Option(help: "Event loops for a started sigild (0: one per CPU).")
    var workers = 0

    @Option(help: "Operation mix: sign-request, sign-json, verify, verify-request, with weights (e.g. sign-request:8,verify:2).")
    var op = "sign-request"

    @Option(help: "Connections.")
    var connections = 1

    @Option(help: "Requests kept in flight per connection (closed loop).")
    var depth = 64

    @Option(help: "Items per frame (1: no batches).")
    var batch = 1

    @Option(help: "JSON content bytes for sign-request and verify-request (0: none, like MMR's GETs).")
    var contentSize = 0

    @Option(help: "Message bytes for verify and sign-json.")
    var messageSize = 128

    @Option(help: "Server name to sign as (default: the first one sigild offers).")
    var server: String?

    @Option(help: "Warm-up seconds, not recorded.")
    var warmup = 1.0

    @Option(help: "Baseline seconds per measurement.")
    var baselineSeconds = 2.0

    @Option(help: "Threads for the raw baseline (default: the daemon's event loops, at most the CPUs).")
    var baselineThreads: Int?

    @Flag(help: "Skip the in-process baselines.")
    var noBaseline = false

    func validate() throws {
        guard connections >= 1, connections <= 10000 else { throw ValidationError("--connections must be 1…10000") }
        guard depth >= 1, depth <= 32768 else { throw ValidationError("--depth must be 1…32768") }
        guard batch >= 1, batch <= 65535 else { throw ValidationError("--batch must be 1…65535") }
        guard contentSize >= 0, contentSize <= 60000, messageSize >= 0, messageSize <= 60000 else {
            throw ValidationError("--content-size and --message-size must be 0…60000")
        }
        guard warmup >= 0, baselineSeconds > 0 else { throw ValidationError("--warmup must be ≥ 0 and --baseline-seconds > 0") }
        _ = try OperationMix(parsing: op)
    }
}

/// A daemon to measure: given, or started for the run.
final class Target {
    let socketPath: String
    let spawned: SpawnedDaemon?
    let server: String
    let eventLoops: Int
    let pid: Int32?

    init(_ options: LoadOptions) throws {
        if let socket = options.socket {
            socketPath = socket
            spawned = nil
        } else {
            let daemon = try SpawnedDaemon(daemonPath: options.daemon ?? siblingDaemonPath(), workers: options.workers)
            try daemon.waitUntilServing()
            socketPath = daemon.socketPath
            spawned = daemon
        }
        let connection = try SigilConnection(path: socketPath)
        defer { connection.close() }
        guard case .hello(let info) = try connection.send(.hello(clientName: "sigil-bench")) else { throw BenchError("no HELLO answer") }
        guard let server = options.server ?? info.servers.first else { throw BenchError("sigild offers this user no server; pass --server") }
        self.server = server
        guard case .stats(let statsJSON) = try connection.send(.stats) else { throw BenchError("no STATS answer") }
        let stats = try JSONValue(parsing: statsJSON).objectValue
        eventLoops = Int(stats?["event_loops"]?.integerValue ?? 1)
        // The peer's pid, for CPU and memory figures from /proc.
        let fd = try Posix.socket(type: Int32(SOCK_STREAM.rawValue))
        defer { Posix.close(fd) }
        try Posix.connect(fd, path: socketPath)
        pid = try? Posix.peerCredentials(fd).pid
    }

    func stop() {
        if let spawned { _ = spawned.stop() }
    }
}

/// Runs one load shape and measures it.
func measure(
    _ options: LoadOptions, target: Target, duration: Double, depth: Int, rate: Double?, baselines: (BaselineFigures, Double)?,
    progress: Bool, count: Int? = nil
) throws -> RunReport {
    let mix = try OperationMix(parsing: options.op)
    let workload = Workload(mix: mix, server: target.server, contentSize: options.contentSize, messageSize: options.messageSize, batch: options.batch)
    let shape = LoadShape(connections: options.connections, depth: depth, rate: rate, workload: workload, mix: mix)
    let phase = RunPhase()
    let drivers = (0..<options.connections).map { ConnectionDriver(index: $0, shape: shape, phase: phase, socketPath: target.socketPath) }
    let threads = try drivers.map { driver in
        try PosixThread(name: "bench-conn") {
            if let rate { driver.runOpenLoop(rate: rate / Double(options.connections)) } else { driver.runClosedLoop() }
        }
    }
    let probe = target.pid.map(DaemonProbe.init)
    sleepSeconds(options.warmup)
    phase.store(Phase.measure.rawValue, ordering: .relaxed)
    let cpuStart = probe?.cpuNanoseconds()
    let start = Posix.monotonicNanoseconds()
    let end = start + UInt64(duration * 1e9)
    var lastPrint = start
    while Posix.monotonicNanoseconds() < end && phase.load(ordering: .relaxed) == Phase.measure.rawValue
        && (count.map { phase.answeredCount < $0 } ?? true)
    {
        usleep(50_000)
        let now = Posix.monotonicNanoseconds()
        if progress && now - lastPrint > 500_000_000 {
            lastPrint = now
            Posix.printErrorRaw("\r  \(RunReport.format(Double(now - start) / 1e9, decimals: 1)) s of \(RunReport.format(duration, decimals: 1)) …")
        }
    }
    let stopped = Posix.monotonicNanoseconds()
    let cpuEnd = probe?.cpuNanoseconds()
    phase.store(Phase.stop.rawValue, ordering: .relaxed)
    let rss = probe?.residentBytes()
    let locked = probe?.lockedBytes()
    for thread in threads { thread.join() }
    if progress { Posix.printErrorRaw("\r\u{1B}[K") }
    var histogram = drivers[0].tally.histogram
    for driver in drivers.dropFirst() { histogram.add(driver.tally.histogram) }
    let completed = drivers.reduce(0) { $0 + $1.tally.completed }
    let errors = drivers.reduce(0) { $0 + $1.tally.errors }
    func us(_ p: Double) -> Double { Double(histogram.valueAtPercentile(p)) / 1000 }
    return RunReport(
        operation: mix.description, connections: options.connections, depth: depth, batch: options.batch, rate: rate,
        seconds: Double(stopped - start) / 1e9, completed: completed, errors: errors,
        firstError: drivers.compactMap { $0.tally.firstError }.first, failure: drivers.compactMap { $0.tally.failure }.first,
        p50: us(50), p90: us(90), p99: us(99), p999: us(99.9), max: Double(histogram.max) / 1000, mean: histogram.mean / 1000,
        daemonCPUNanoseconds: cpuStart.flatMap { start in cpuEnd.map { $0 - start } }, daemonRSS: rss, daemonLocked: locked,
        baseline: baselines?.0, echoP50: baselines?.1, histogram: histogram)
}

/// The in-process baselines for this workload: the raw primitive time on one core (for a mix,
/// each operation's primitive on its own bytes, weighted as the mix is), throughput with the
/// daemon's number of threads, and a bare round trip.
func measureBaselines(_ options: LoadOptions, target: Target, seconds: Double? = nil) throws -> (BaselineFigures, Double)? {
    guard !options.noBaseline else { return nil }
    let mix = try OperationMix(parsing: options.op)
    let workload = Workload(mix: mix, server: target.server, contentSize: options.contentSize, messageSize: options.messageSize, batch: 1)
    let time = seconds ?? options.baselineSeconds
    let threads = options.baselineThreads ?? min(target.eventLoops, Posix.cpuCount)
    let totalWeight = Double(mix.entries.reduce(0) { $0 + $1.weight })
    var weightedNanoseconds = 0.0
    for entry in mix.entries {
        let verify = entry.operation == .verify || entry.operation == .verifyRequest
        let single = Baseline.measure(verify: verify, message: workload.signedBytes[entry.operation]!, threads: 1, seconds: time / Double(mix.entries.count))
        weightedNanoseconds += single.nanosecondsPerOperation * Double(entry.weight) / totalWeight
    }
    // Throughput on `threads` threads, for the first operation, scaled to the mix.
    let first = mix.entries[0].operation
    let firstVerify = first == .verify || first == .verifyRequest
    let parallel = threads == 1
        ? BaselineFigures(nanosecondsPerOperation: weightedNanoseconds, throughput: 1e9 / weightedNanoseconds, threads: 1)
        : Baseline.measure(verify: firstVerify, message: workload.signedBytes[first]!, threads: threads, seconds: time / 2)
    let firstSingle = mix.entries.count == 1 ? weightedNanoseconds : Baseline.measure(verify: firstVerify, message: workload.signedBytes[first]!, threads: 1, seconds: time / 4).nanosecondsPerOperation
    let scale = firstSingle / weightedNanoseconds
    let echo = try Baseline.echoRoundTrip(requestSize: workload.templates[first]!.count, responseSize: 250, rounds: 20000)
    return (BaselineFigures(nanosecondsPerOperation: weightedNanoseconds, throughput: parallel.throughput * scale, threads: threads), echo.p50)
}

/// Load runs interleaved with baselines, so a drift in the machine's speed (other tenants,
/// clock changes) hits both sides of each ratio alike. Each round's ratio is kept; the median
/// is reported.
func measureRounds(
    _ options: LoadOptions, target: Target, duration: Double, depth: Int, rate: Double?, rounds: Int, progress: Bool, count: Int? = nil
) throws -> (RunReport, [RunReport]) {
    var reports: [RunReport] = []
    for round in 0..<rounds {
        let baselines = try measureBaselines(options, target: target, seconds: options.baselineSeconds / Double(rounds) * 2)
        var report = try measure(
            options, target: target, duration: duration / Double(rounds), depth: depth, rate: rate, baselines: baselines,
            progress: progress, count: count.map { ($0 + rounds - 1) / rounds })
        report.round = round + 1
        reports.append(report)
        if report.failure != nil { break }
    }
    return (RunReport.combine(reports), reports)
}

func sleepSeconds(_ seconds: Double) {
    guard seconds > 0 else { return }
    var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    nanosleep(&ts, nil)
}

extension Posix {
    static func printErrorRaw(_ text: String) {
        Array(text.utf8).withUnsafeBytes { _ = try? Posix.writeAll(2, $0) }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One load run: closed loop (--depth) or open loop (--rate).")

    @OptionGroup var load: LoadOptions

    @Option(help: "Seconds to measure.")
    var duration = 5.0

    @Option(help: "Open loop: requests per second across all connections, sent on schedule.")
    var rate: Double?

    @Option(help: "Rounds of (baseline, load) to interleave; ratios are reported per round and as their median.")
    var rounds = 3

    @Option(help: "Stop after this many requests have been answered (--duration stays the upper bound).")
    var count: Int?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be 0…3600 seconds") }
        if let rate { guard rate > 0 else { throw ValidationError("--rate must be positive") } }
        guard rounds >= 1, rounds <= 100 else { throw ValidationError("--rounds must be 1…100") }
        if let count { guard count >= 1 else { throw ValidationError("--count must be positive") } }
    }

    func run() throws {
        let target = try Target(load)
        defer { target.stop() }
        let (report, rounds) = try measureRounds(
            load, target: target, duration: duration, depth: load.depth, rate: rate, rounds: load.noBaseline ? 1 : self.rounds,
            progress: !json && Posix.isatty(2), count: count)
        if json {
            var object = report.json().objectValue!
            object["rounds"] = .array(rounds.map { $0.json() })
            print(JSONValue.object(object).canonicalString)
        } else {
            print("sigild pid \(target.pid.map(String.init) ?? "?"), \(target.eventLoops) event loop(s), server \(target.server)")
            if let raw = report.baseline, let echo = report.echoP50 {
                print("baseline (in-process libsodium, same bytes, mean of \(rounds.count) round(s)): \(RunReport.format(raw.nanosecondsPerOperation / 1000, decimals: 2)) µs/op on one core, \(RunReport.format(raw.throughput, decimals: 0)) op/s on \(raw.threads) thread(s); bare round trip p50 \(RunReport.format(echo / 1000, decimals: 1)) µs")
            }
            print(report.text())
            if rounds.count > 1 {
                for round in rounds { print(round.roundLine()) }
            }
        }
        if report.failure != nil { throw ExitCode(2) }
    }
}

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Latency against throughput over pipelining depths or offered rates; writes an SVG chart.")

    @OptionGroup var load: LoadOptions

    @Option(help: "Comma-separated depths (closed loop).")
    var depths = "1,2,4,8,16,32,64,128"

    @Option(help: "Comma-separated rates in req/s (open loop); replaces --depths.")
    var rates: String?

    @Option(help: "Seconds to measure each point.")
    var duration = 2.0

    @Option(help: "Where to write the SVG chart.")
    var svg = "sigil-bench-sweep.svg"

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let target = try Target(load)
        defer { target.stop() }
        let baselines = try measureBaselines(load, target: target)
        var reports: [RunReport] = []
        if let rates {
            for rate in try numbers(rates) {
                reports.append(try measure(load, target: target, duration: duration, depth: load.depth, rate: rate, baselines: baselines, progress: false))
                if !json { print(reports.last!.text()) }
            }
        } else {
            for depth in try numbers(depths) {
                reports.append(try measure(load, target: target, duration: duration, depth: Int(depth), rate: nil, baselines: baselines, progress: false))
                if !json { print(reports.last!.text()) }
            }
        }
        let title = "sigild \(load.op): latency vs throughput (\(load.connections) connection(s))"
        let chart = Chart.svg(title: title, points: reports, rawCeiling: baselines.map { $0.0.throughput })
        let fd = try Posix.open(svg, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        try Array(chart.utf8).withUnsafeBytes { try Posix.writeAll(fd, $0) }
        Posix.close(fd)
        if json {
            print(JSONValue.array(reports.map { $0.json() }).canonicalString)
        } else {
            print("chart written to \(svg)")
        }
    }

    private func numbers(_ text: String) throws -> [Double] {
        try text.split(separator: ",").map { part in
            guard let value = Double(part), value > 0 else { throw ValidationError("'\(part)' is not a positive number") }
            return value
        }
    }
}

struct Startup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time from starting sigild to its systemd READY=1, with many keys loaded, and its idle memory.")

    @Option(help: "sigild binary (default: the one next to sigil-bench).")
    var daemon: String?
    @Option(help: "Servers.")
    var servers = 10
    @Option(help: "Keys per server.")
    var keysPerServer = 10
    @Option(help: "Starts to time.")
    var runs = 10

    func run() throws {
        var samples: [Double] = []
        var rss: [Int] = []
        for _ in 0..<runs {
            let notifyPath = "/tmp/sigil-bench-notify-\(Posix.pid)"
            try? Posix.unlink(notifyPath)
            let fd = try Posix.socket(type: Int32(SOCK_DGRAM.rawValue))
            defer {
                Posix.close(fd)
                try? Posix.unlink(notifyPath)
            }
            try Posix.bind(fd, path: notifyPath)
            try Posix.setReceiveTimeout(fd, seconds: 10)
            let start = Posix.monotonicNanoseconds()
            let spawned = try SpawnedDaemon(
                daemonPath: daemon ?? siblingDaemonPath(), servers: servers, keysPerServer: keysPerServer, notifySocket: notifyPath)
            var buffer = [UInt8](repeating: 0, count: 4096)
            var ready = false
            while !ready {
                let n = try buffer.withUnsafeMutableBytes { try Posix.recv(fd, into: $0) }
                if String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n").contains("READY=1") { ready = true }
            }
            samples.append(Double(Posix.monotonicNanoseconds() - start) / 1e6)
            sleepSeconds(0.2)
            rss.append(DaemonProbe(pid: spawned.pid).residentBytes() ?? 0)
            _ = spawned.stop()
        }
        samples.sort()
        print("sigild with \(servers * keysPerServer) keys (\(servers) servers × \(keysPerServer)): spawn → READY=1 over \(runs) starts")
        print("  p50 \(RunReport.format(samples[samples.count / 2], decimals: 1)) ms, max \(RunReport.format(samples.last!, decimals: 1)) ms")
        print("  idle RSS p50 \(RunReport.format(Double(rss.sorted()[rss.count / 2]) / 1_048_576, decimals: 1)) MiB")
    }
}

struct Connections: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Memory with many connected clients: open N connections, say HELLO on each, read the daemon's RSS.")

    @Option(help: "sigild's socket; omit to start a private sigild.")
    var socket: String?
    @Option(help: "sigild binary to start when --socket is not given.")
    var daemon: String?
    @Option(help: "Connections to hold open.")
    var count = 1000

    func run() throws {
        let limit = Posix.raiseFileLimit()
        guard UInt64(count) + 64 <= limit else { throw BenchError("RLIMIT_NOFILE is \(limit); raise it (ulimit -n) for \(count) connections") }
        var options = try LoadOptions.parse([])
        options.socket = socket
        options.daemon = daemon
        let target = try Target(options)
        defer { target.stop() }
        let probe = target.pid.map(DaemonProbe.init)
        sleepSeconds(0.3)
        let idle = probe?.residentBytes() ?? 0
        var fds: [Int32] = []
        var hello = WireWriter()
        Request.hello(clientName: "sigil-bench").encodeFrame(requestID: 1, into: &hello)
        for _ in 0..<count {
            let fd = try Posix.socket(type: Int32(SOCK_STREAM.rawValue))
            try Posix.connect(fd, path: target.socketPath)
            try hello.bytes.withUnsafeBytes { try Posix.sendAll(fd, $0) }
            fds.append(fd)
        }
        var answered = 0
        var buffer = [UInt8](repeating: 0, count: 4096)
        for fd in fds {
            try Posix.setReceiveTimeout(fd, seconds: 10)
            if let n = try? buffer.withUnsafeMutableBytes({ try Posix.recv(fd, into: $0) }), n > 0 { answered += 1 }
        }
        sleepSeconds(0.3)
        let loaded = probe?.residentBytes() ?? 0
        for fd in fds { Posix.close(fd) }
        print("sigild pid \(target.pid.map(String.init) ?? "?"): idle RSS \(RunReport.format(Double(idle) / 1_048_576, decimals: 1)) MiB; with \(count) connected clients (\(answered) answered HELLO) RSS \(RunReport.format(Double(loaded) / 1_048_576, decimals: 1)) MiB")
    }
}
