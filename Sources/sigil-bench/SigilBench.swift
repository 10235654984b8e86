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
        subcommands: [Run.self, Sweep.self, Startup.self, Connections.self, Reload.self],
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

    @Option(help: "Servers a started sigild holds, each with its own key, from a key directory (bench0.local …).")
    var servers = 1

    @Flag(
        help: """
            Sign as origins chosen at random among all --servers (up to 16,384 distinct ones, used in turn), not as one. \
            The raw baseline (--same-core) then signs with as many keys, in a shuffled order.
            """)
    var randomOrigins = false

    @Option(help: "Directory of generated key files to reuse between runs (created and filled if empty).")
    var keysCache: String?

    @Option(
        help: ArgumentHelp(
            "Turn the started sigild's audit trail on: 'file' (JSON lines to a file in its temporary directory) or 'journal'.",
            valueName: "file|journal"))
    var audit: AuditDestination?

    @Option(help: "Warm-up seconds, not recorded.")
    var warmup = 1.0

    @Option(help: "Baseline seconds per measurement.")
    var baselineSeconds = 2.0

    @Option(help: "Threads for the raw baseline (default: the daemon's event loops, at most the CPUs).")
    var baselineThreads: Int?

    @Option(
        help:
            "How connections wait for replies: recv (like SigilClient and Go's netpoller: also woken when the daemon drains the socket) or poll (woken by replies only)."
    )
    var wait: ReplyWait = .recv

    @Flag(help: "Skip the in-process baselines.")
    var noBaseline = false

    @Flag(
        help: """
            Measure the raw baseline on the daemon's own cores during the load (run only): each event \
            loop is pinned to a core shared with a raw libsodium thread, clients use the other cores. \
            The CPU ratio is then immune to the machine's speed wandering; throughput halves.
            """)
    var sameCore = false

    func validate() throws {
        guard connections >= 1, connections <= 10000 else { throw ValidationError("--connections must be 1…10000") }
        guard depth >= 1, depth <= 32768 else { throw ValidationError("--depth must be 1…32768") }
        guard batch >= 1, batch <= 65535 else { throw ValidationError("--batch must be 1…65535") }
        guard contentSize >= 0, contentSize <= 60000, messageSize >= 0, messageSize <= 60000 else {
            throw ValidationError("--content-size and --message-size must be 0…60000")
        }
        guard warmup >= 0, baselineSeconds > 0 else { throw ValidationError("--warmup must be ≥ 0 and --baseline-seconds > 0") }
        guard servers >= 1, servers <= 1_000_000 else { throw ValidationError("--servers must be 1…1000000") }
        if randomOrigins && socket != nil { throw ValidationError("--random-origins needs a sigild started by sigil-bench (no --socket)") }
        _ = try OperationMix(parsing: op)
        if sameCore && noBaseline { throw ValidationError("--same-core measures a baseline; it cannot go with --no-baseline") }
    }
}

/// A daemon to measure: given, or started for the run.
final class Target {
    let socketPath: String
    let spawned: SpawnedDaemon?
    let server: String
    let eventLoops: Int
    let pid: Int32?
    /// The origins to sign as, in turn (empty: `server` alone).
    let origins: [String]

    init(_ options: LoadOptions) throws {
        if let socket = options.socket {
            socketPath = socket
            spawned = nil
        } else {
            let daemon = try SpawnedDaemon(
                daemonPath: options.daemon ?? siblingDaemonPath(), servers: options.servers, keyDirectory: options.servers > 1,
                keysCache: options.keysCache, workers: options.workers, extraConfig: options.audit?.configuration ?? "")
            try daemon.waitUntilServing(timeout: 120)
            socketPath = daemon.socketPath
            spawned = daemon
        }
        let connection = try SigilConnection(path: socketPath)
        defer { connection.close() }
        guard case .hello(let info) = try connection.send(.hello(clientName: "sigil-bench")) else { throw BenchError("no HELLO answer") }
        guard let server = options.server ?? info.servers.first else {
            throw BenchError("sigild offers this user no server; pass --server")
        }
        self.server = server
        if options.randomOrigins, let spawned {
            var generator = SystemRandomNumberGenerator()
            let count = min(spawned.serverNames.count, 16384)
            origins = (0..<count).map { _ in spawned.serverNames[Int.random(in: 0..<spawned.serverNames.count, using: &generator)] }
        } else {
            origins = []
        }
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
    progress: Bool, count: Int? = nil, placement: SameCorePlacement? = nil
) throws -> RunReport {
    let mix = try OperationMix(parsing: options.op)
    let workload = Workload(
        mix: mix, server: target.server, contentSize: options.contentSize, messageSize: options.messageSize, batch: options.batch,
        origins: target.origins)
    let shape = LoadShape(connections: options.connections, depth: depth, rate: rate, workload: workload, mix: mix, wait: options.wait)
    let phase = RunPhase()
    let drivers = (0..<options.connections).map { ConnectionDriver(index: $0, shape: shape, phase: phase, socketPath: target.socketPath) }
    let threads = try drivers.map { driver in
        try PosixThread(name: "bench-conn") { [clientCPUs = placement?.clientCPUs] in
            if let clientCPUs { try? Posix.setAffinity(thread: 0, cpus: clientCPUs) }
            if let rate { driver.runOpenLoop(rate: rate / Double(options.connections)) } else { driver.runClosedLoop() }
        }
    }
    let probe = target.pid.map(DaemonProbe.init)
    sleepSeconds(options.warmup)
    let yardstick = try placement.map { _ in
        try ConcurrentYardstick(
            cpus: placement!.loopCPUs, operations: rawOperations(mix: mix, workload: workload), keys: max(Set(target.origins).count, 1))
    }
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
            Posix.printErrorRaw(
                "\r  \(RunReport.format(Double(now - start) / 1e9, decimals: 1)) s of \(RunReport.format(duration, decimals: 1)) …")
        }
    }
    let stopped = Posix.monotonicNanoseconds()
    let cpuEnd = probe?.cpuNanoseconds()
    let concurrentRaw = yardstick?.stop()
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
        // A daemon that died (a zombie's threads are gone) can read lower at the end: no figure then.
        daemonCPUNanoseconds: cpuStart.flatMap { start in cpuEnd.flatMap { $0 >= start ? $0 - start : nil } }, daemonRSS: rss,
        daemonLocked: locked,
        baseline: concurrentRaw ?? baselines?.0, echoP50: baselines?.1, sameCore: placement != nil, histogram: histogram)
}

/// One period of the mix, as raw operations on the bytes the daemon signs or verifies.
func rawOperations(mix: OperationMix, workload: Workload) -> [(verify: Bool, message: [UInt8])] {
    let period = mix.entries.reduce(0) { $0 + $1.weight }
    return (0..<period).map { index in
        let operation = mix.operation(at: index)
        return (operation == .verify || operation == .verifyRequest, workload.signedBytes[operation]!)
    }
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
        let single = Baseline.measure(
            verify: verify, message: workload.signedBytes[entry.operation]!, threads: 1, seconds: time / Double(mix.entries.count))
        weightedNanoseconds += single.nanosecondsPerOperation * Double(entry.weight) / totalWeight
    }
    // Throughput on `threads` threads, for the first operation, scaled to the mix.
    let first = mix.entries[0].operation
    let firstVerify = first == .verify || first == .verifyRequest
    let parallel =
        threads == 1
        ? BaselineFigures(nanosecondsPerOperation: weightedNanoseconds, throughput: 1e9 / weightedNanoseconds, threads: 1)
        : Baseline.measure(verify: firstVerify, message: workload.signedBytes[first]!, threads: threads, seconds: time / 2)
    let firstSingle =
        mix.entries.count == 1
        ? weightedNanoseconds
        : Baseline.measure(verify: firstVerify, message: workload.signedBytes[first]!, threads: 1, seconds: time / 4)
            .nanosecondsPerOperation
    let scale = firstSingle / weightedNanoseconds
    let echo = try measureEcho(options, target: target)
    return (BaselineFigures(nanosecondsPerOperation: weightedNanoseconds, throughput: parallel.throughput * scale, threads: threads), echo)
}

/// The bare Unix-socket round trip for this workload's first operation (p50, ns).
func measureEcho(_ options: LoadOptions, target: Target) throws -> Double {
    let mix = try OperationMix(parsing: options.op)
    let workload = Workload(mix: mix, server: target.server, contentSize: options.contentSize, messageSize: options.messageSize, batch: 1)
    return try Baseline.echoRoundTrip(requestSize: workload.templates[mix.entries[0].operation]!.count, responseSize: 250, rounds: 20000)
        .p50
}

/// Load runs interleaved with baselines, so a drift in the machine's speed (other tenants,
/// clock changes) hits both sides of each ratio alike. Each round's ratio is kept; the median
/// is reported.
func measureRounds(
    _ options: LoadOptions, target: Target, duration: Double, depth: Int, rate: Double?, rounds: Int, progress: Bool, count: Int? = nil
) throws -> (RunReport, [RunReport]) {
    var reports: [RunReport] = []
    // --same-core: the raw figure comes from each round's own window; only the round trip is
    // measured beforehand (once).
    var placement: SameCorePlacement?
    var echo: Double?
    if options.sameCore {
        guard let pid = target.pid else { throw BenchError("--same-core needs the daemon's pid (SO_PEERCRED gave none)") }
        echo = try measureEcho(options, target: target)
        placement = try SameCorePlacement(daemonPID: pid)
        try placement!.pinLoops()
    }
    defer { placement?.release() }
    for round in 0..<rounds {
        let baselines =
            try echo.map { (BaselineFigures(nanosecondsPerOperation: 0, throughput: 0, threads: 0), $0) }
            ?? measureBaselines(options, target: target, seconds: options.baselineSeconds / Double(rounds) * 2)
        var report = try measure(
            options, target: target, duration: duration / Double(rounds), depth: depth, rate: rate, baselines: baselines,
            progress: progress, count: count.map { ($0 + rounds - 1) / rounds }, placement: placement)
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

/// Where `--audit` sends a started sigild's audit records.
enum AuditDestination: String, ExpressibleByArgument, CaseIterable {
    case file
    case journal

    /// The configuration's `audit` section ({dir}: the daemon's temporary directory).
    var configuration: String {
        switch self {
        case .file: return "audit:\n  file: {dir}/audit.jsonl"
        case .journal: return "audit:\n  journal: true"
        }
    }
}
