import ArgumentParser
import Histogram
import SigilClient
import SigilCore
import SigilPosix

#if canImport(Glibc)
import Glibc
#endif

// `run` and `sweep`: load against a daemon, with the in-process baselines beside it.

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
                if load.sameCore {
                    print("baseline (in-process libsodium, same bytes, on the daemon's core(s) during each round): \(RunReport.format(raw.nanosecondsPerOperation / 1000, decimals: 2)) µs/op (mean of \(rounds.count) round(s)); bare round trip p50 \(RunReport.format(echo / 1000, decimals: 1)) µs")
                } else {
                    print("baseline (in-process libsodium, same bytes, mean of \(rounds.count) round(s)): \(RunReport.format(raw.nanosecondsPerOperation / 1000, decimals: 2)) µs/op on one core, \(RunReport.format(raw.throughput, decimals: 0)) op/s on \(raw.threads) thread(s); bare round trip p50 \(RunReport.format(echo / 1000, decimals: 1)) µs")
                }
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

    func validate() throws {
        if load.sameCore { throw ValidationError("--same-core is for 'run'; a sweep compares its points with one baseline") }
    }

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
