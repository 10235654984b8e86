import ArgumentParser
import SigilClient
import SigilCore
import SigilPosix
import SigilTooling

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a running sigild's counters: as its JSON, or as Prometheus metrics.",
        discussion: """
            --format prometheus writes the classic text format that node_exporter's textfile \
            collector reads (sigil-metrics.timer runs this every 15 s into \
            /var/lib/prometheus/node-exporter/sigil.prom); openmetrics writes OpenMetrics 1.0. Both \
            also list the keys (IDs and states, never key material) when the caller may use list_keys.

            When sigild cannot be reached or read, the metric formats still write their output: \
            sigil_up 0 and no other series, so alerts on sigil_up fire and no stale figure survives.

            Exit status: 0 when the figures were written; 3 when sigild could not be reached or read \
            (with --format prometheus or openmetrics, sigil_up 0 was written); 1 on any other failure \
            (nothing was written).
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case json, prometheus, openmetrics
    }

    static let unreachableStatus: Int32 = 3

    @OptionGroup var socket: SocketOption

    @Option(help: "json (the daemon's own object), prometheus (text format 0.0.4) or openmetrics.")
    var format: Format = .json

    @Option(
        help: ArgumentHelp(
            "Write to this file instead of standard output: atomically (a temporary file in the same directory, fsync, rename), mode 0644.",
            valueName: "file"))
    var output: String?

    @Option(help: "Seconds to wait for sigild's answers.")
    var timeout: Double = 10

    func validate() throws {
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
    }

    func run() {
        Self.failing {
            let client = SigilClient(socketPath: socket.path, timeout: timeout)
            defer { client.close() }
            switch format {
            case .json:
                let stats: [UInt8]
                do {
                    stats = try client.stats()
                } catch {
                    Posix.printError("stats: \(error)")
                    throw ExitCode(Self.unreachableStatus)
                }
                try emit(stats + [0x0A])
            case .prometheus, .openmetrics:
                let exposition: ExpositionFormat = format == .prometheus ? .prometheus : .openMetrics
                func down(_ reason: any Error) throws -> ExitCode {
                    try emit(Array(SigilMetrics.renderDown(format: exposition).utf8))
                    Posix.printError("stats: \(reason); wrote sigil_up 0")
                    return ExitCode(Self.unreachableStatus)
                }
                let rendered: SigilMetrics.Rendered
                do {
                    rendered = try SigilMetrics.render(try scrape(client).get(), format: exposition)
                } catch {
                    throw try down(error)
                }
                for problem in rendered.problems { Posix.printError("stats: warning: \(problem)") }
                try emit(Array(rendered.text.utf8))
            }
        }
    }

    /// STATS, which must succeed; then HELLO for the version and LIST_KEYS for the keys, which
    /// may be refused (the admin listener's rules decide) without costing the scrape.
    private func scrape(_ client: SigilClient) -> Result<SigilMetrics.Scrape, SigilClientError> {
        let stats: [UInt8]
        do {
            stats = try client.stats()
        } catch {
            return .failure(error)
        }
        var scrape = SigilMetrics.Scrape(stats: stats)
        scrape.daemonVersion = try? client.hello(clientName: "sigil-stats").daemonVersion
        do {
            scrape.keys = try client.listKeys()
        } catch .rejected(let failure) {
            // DENIED, or a listing too large for one frame: STATS' own `keys` section stands in.
            if failure.status != .denied { Posix.printError("stats: warning: list_keys: \(failure); key series come from STATS") }
        } catch {
            Posix.printError("stats: warning: list_keys: \(error); key series come from STATS")
        }
        return .success(scrape)
    }

    private func emit(_ bytes: [UInt8]) throws {
        if let output {
            try AtomicFile.write(bytes, to: output)
        } else {
            let written = bytes.withUnsafeBytes { raw in Result { () throws(PosixError) in try Posix.writeAll(1, raw) } }
            do { try written.get() } catch { throw ToolError("cannot write to standard output: \(error)") }
        }
    }
}
