import Histogram
import SigilCore

/// The figures of one load run, and their ratios to the in-process baselines.
struct RunReport {
    var operation: String
    var connections: Int
    var depth: Int
    var batch: Int
    var rate: Double?
    var seconds: Double
    var completed: UInt64
    var errors: UInt64
    var firstError: String?
    var failure: String?
    var p50: Double, p90: Double, p99: Double, p999: Double, max: Double, mean: Double
    var daemonCPUNanoseconds: UInt64?
    var daemonRSS: Int?
    var daemonLocked: Int?
    var baseline: BaselineFigures?
    var echoP50: Double?
    /// Which interleaved round this was (0: a combined report).
    var round = 0
    /// For a combined report: the median of the rounds' ratios.
    var medianCPURatio: Double?
    var medianLatencyRatio: Double?
    /// For a combined report: the fastest round's daemon CPU per request over the fastest raw
    /// baseline; robust when the machine's speed drifts between rounds.
    var bestCPURatio: Double?
    /// `--same-core`: the raw figure was measured on the daemon's cores during the load.
    var sameCore = false
    /// For a combined report: the lowest and highest of the rounds' CPU ratios.
    var cpuRatioRange: (low: Double, high: Double)?
    var histogram: Histogram<UInt64>?

    var throughput: Double { Double(completed) / seconds }
    var cpuPerRequest: Double? { daemonCPUNanoseconds.map { completed > 0 ? Double($0) / Double(completed) : 0 } }
    var daemonCores: Double? { daemonCPUNanoseconds.map { Double($0) / (seconds * 1e9) } }
    /// Daemon CPU per request over raw sign time: 1.00 means no overhead at all.
    var cpuRatio: Double? {
        if let medianCPURatio { return medianCPURatio }
        guard let cpu = cpuPerRequest, let baseline else { return nil }
        return cpu / baseline.nanosecondsPerOperation
    }
    /// Throughput per daemon core over raw operations per core.
    var perCoreRatio: Double? { cpuRatio.map { 1 / $0 } }
    /// For one request at a time: p50 over raw operation time plus a bare round trip.
    var latencyRatio: Double? {
        if let medianLatencyRatio { return medianLatencyRatio }
        guard let baseline, let echoP50 else { return nil }
        return p50 * 1000 / (baseline.nanosecondsPerOperation + echoP50)
    }

    func text() -> String {
        func us(_ v: Double) -> String { Self.format(v, decimals: 1) }
        var lines: [String] = []
        let loop = rate.map { "open loop at \(Self.format($0, decimals: 0)) req/s" } ?? "closed loop"
        lines.append(
            "\(operation): \(connections) connection(s) × depth \(depth), batch \(batch), \(loop), \(Self.format(seconds, decimals: 1)) s")
        lines.append("  throughput     \(Self.format(throughput, decimals: 0)) req/s (\(completed) requests, \(errors) errors)")
        lines.append("  latency µs     p50 \(us(p50))  p90 \(us(p90))  p99 \(us(p99))  p99.9 \(us(p999))  max \(us(max))")
        if let cpu = cpuPerRequest, let cores = daemonCores {
            var line = "  daemon CPU     \(Self.format(cpu / 1000, decimals: 2)) µs/request on \(Self.format(cores, decimals: 2)) cores"
            if let ratio = cpuRatio, let baseline {
                line +=
                    "; raw \(Self.format(baseline.nanosecondsPerOperation / 1000, decimals: 2)) µs\(sameCore ? " on the same core at the same time" : "") → \(Self.format(ratio, decimals: 3))× raw\(medianCPURatio != nil ? " (median of rounds)" : "")"
            }
            if let range = cpuRatioRange {
                line += "; rounds \(Self.format(range.low, decimals: 3))–\(Self.format(range.high, decimals: 3))×"
            }
            if let best = bestCPURatio { line += "; best round vs best raw \(Self.format(best, decimals: 3))×" }
            lines.append(line)
            if let perCore = perCoreRatio, let baseline {
                lines.append(
                    "  per core       \(Self.format(throughput / Swift.max(cores, 0.0001), decimals: 0)) req/s per daemon core; raw \(Self.format(1e9 / baseline.nanosecondsPerOperation, decimals: 0)) → \(Self.format(perCore, decimals: 3)) of raw"
                )
            }
        }
        if let ratio = latencyRatio, let echo = echoP50, let baseline, depth == 1 && connections == 1 && rate == nil {
            lines.append(
                "  one at a time  p50 \(us(p50)) µs vs raw \(us(baseline.nanosecondsPerOperation / 1000)) + round trip \(us(echo / 1000)) µs → \(Self.format(ratio, decimals: 3))×"
            )
        }
        if let rss = daemonRSS {
            lines.append(
                "  daemon memory  RSS \(Self.format(Double(rss) / 1_048_576, decimals: 1)) MiB, locked \(Self.format(Double(daemonLocked ?? 0) / 1024, decimals: 0)) KiB"
            )
        }
        if let firstError { lines.append("  first error    \(firstError)") }
        if let failure { lines.append("  RUN CUT SHORT  \(failure); figures cover what completed") }
        return lines.joined(separator: "\n")
    }

    /// One line per interleaved round: its own baseline and ratios.
    func roundLine() -> String {
        var line = "  round \(round): \(Self.format(throughput, decimals: 0)) req/s, p50 \(Self.format(p50, decimals: 1)) µs"
        if let baseline { line += "; raw \(Self.format(baseline.nanosecondsPerOperation / 1000, decimals: 2)) µs" }
        if let cpu = cpuPerRequest { line += ", daemon \(Self.format(cpu / 1000, decimals: 2)) µs/request" }
        if let ratio = cpuRatio { line += " → \(Self.format(ratio, decimals: 3))× raw CPU" }
        if let ratio = latencyRatio, depth == 1 && connections == 1 && rate == nil {
            line += ", latency \(Self.format(ratio, decimals: 3))× (raw + round trip)"
        }
        return line
    }

    /// Pools interleaved rounds: totals summed, histograms merged, baselines averaged, and
    /// ratios taken as the median of the rounds' own ratios.
    static func combine(_ rounds: [RunReport]) -> RunReport {
        guard var combined = rounds.first, rounds.count > 1 else { return rounds.first! }
        var histogram = rounds[0].histogram
        for round in rounds.dropFirst() {
            combined.seconds += round.seconds
            combined.completed += round.completed
            combined.errors += round.errors
            combined.firstError = combined.firstError ?? round.firstError
            combined.failure = combined.failure ?? round.failure
            if let cpu = round.daemonCPUNanoseconds { combined.daemonCPUNanoseconds = (combined.daemonCPUNanoseconds ?? 0) + cpu }
            combined.daemonRSS = Swift.max(combined.daemonRSS ?? 0, round.daemonRSS ?? 0)
            if let other = round.histogram { histogram?.add(other) }
        }
        if let histogram {
            func us(_ p: Double) -> Double { Double(histogram.valueAtPercentile(p)) / 1000 }
            combined.p50 = us(50)
            combined.p90 = us(90)
            combined.p99 = us(99)
            combined.p999 = us(99.9)
            combined.max = Double(histogram.max) / 1000
            combined.mean = histogram.mean / 1000
            combined.histogram = histogram
        }
        let baselines = rounds.compactMap(\.baseline)
        if !baselines.isEmpty {
            combined.baseline = BaselineFigures(
                nanosecondsPerOperation: baselines.map(\.nanosecondsPerOperation).reduce(0, +) / Double(baselines.count),
                throughput: baselines.map(\.throughput).reduce(0, +) / Double(baselines.count), threads: baselines[0].threads)
        }
        let echoes = rounds.compactMap(\.echoP50)
        if !echoes.isEmpty { combined.echoP50 = echoes.reduce(0, +) / Double(echoes.count) }
        func median(_ values: [Double]) -> Double? {
            guard !values.isEmpty else { return nil }
            let sorted = values.sorted()
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        let ratios = rounds.compactMap(\.cpuRatio)
        combined.medianCPURatio = median(ratios)
        if let low = ratios.min(), let high = ratios.max() { combined.cpuRatioRange = (low, high) }
        // Fastest against fastest only makes sense when the two were measured apart.
        if !combined.sameCore, let fastestDaemon = rounds.compactMap(\.cpuPerRequest).min(),
            let fastestRaw = rounds.compactMap({ $0.baseline?.nanosecondsPerOperation }).min()
        {
            combined.bestCPURatio = fastestDaemon / fastestRaw
        }
        combined.medianLatencyRatio = median(rounds.compactMap(\.latencyRatio))
        combined.round = 0
        return combined
    }

    func json() -> JSONValue {
        var object = JSONObject()
        object["operation"] = .string(operation)
        object["connections"] = .integer(Int64(connections))
        object["depth"] = .integer(Int64(depth))
        object["batch"] = .integer(Int64(batch))
        if let rate { object["rate"] = .integer(Int64(rate)) }
        object["seconds_x1000"] = .integer(Int64(seconds * 1000))
        object["completed"] = .integer(Int64(completed))
        object["errors"] = .integer(Int64(errors))
        object["throughput"] = .integer(Int64(throughput))
        object["latency_ns"] = [
            "p50": .integer(Int64(p50 * 1000)), "p90": .integer(Int64(p90 * 1000)), "p99": .integer(Int64(p99 * 1000)),
            "p99_9": .integer(Int64(p999 * 1000)), "max": .integer(Int64(max * 1000)), "mean": .integer(Int64(mean * 1000)),
        ]
        if let cpu = cpuPerRequest { object["daemon_cpu_ns_per_request"] = .integer(Int64(cpu)) }
        if let cores = daemonCores { object["daemon_cores_x1000"] = .integer(Int64(cores * 1000)) }
        if let ratio = cpuRatio { object["cpu_ratio_to_raw_x1000"] = .integer(Int64(ratio * 1000)) }
        if let best = bestCPURatio { object["best_cpu_ratio_to_raw_x1000"] = .integer(Int64(best * 1000)) }
        if let range = cpuRatioRange {
            object["cpu_ratio_range_x1000"] = .array([.integer(Int64(range.low * 1000)), .integer(Int64(range.high * 1000))])
        }
        object["yardstick"] = .string(sameCore ? "same-core" : "sequential")
        if let ratio = perCoreRatio { object["per_core_ratio_to_raw_x1000"] = .integer(Int64(ratio * 1000)) }
        if let ratio = latencyRatio, depth == 1 && connections == 1 { object["latency_ratio_x1000"] = .integer(Int64(ratio * 1000)) }
        if let baseline {
            object["raw_ns_per_operation"] = .integer(Int64(baseline.nanosecondsPerOperation))
            object["raw_throughput"] = .integer(Int64(baseline.throughput))
            object["raw_threads"] = .integer(Int64(baseline.threads))
        }
        if let echoP50 { object["echo_round_trip_p50_ns"] = .integer(Int64(echoP50)) }
        if let rss = daemonRSS { object["daemon_rss_bytes"] = .integer(Int64(rss)) }
        if let failure { object["failure"] = .string(failure) }
        if let firstError { object["first_error"] = .string(firstError) }
        return .object(object)
    }

    /// Thousands separators, fixed decimals; no Foundation.
    static func format(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return "-" }
        let scale = decimals == 0 ? 1.0 : Double((0..<decimals).reduce(1) { acc, _ in acc * 10 })
        let scaled = Int64((abs(value) * scale).rounded())
        let whole = scaled / Int64(scale)
        var digits = String(whole)
        var grouped = ""
        while digits.count > 3 {
            grouped = "," + digits.suffix(3) + grouped
            digits = String(digits.dropLast(3))
        }
        grouped = digits + grouped
        if decimals > 0 {
            let fraction = String(scaled % Int64(scale))
            grouped += "." + String(repeating: "0", count: decimals - fraction.count) + fraction
        }
        return (value < 0 ? "-" : "") + grouped
    }
}
