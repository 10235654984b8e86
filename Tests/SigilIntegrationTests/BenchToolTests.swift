import Foundation
import SigilCore
import SigilPosix
import SigilTestSupport
import Testing

/// sigil-bench against a real sigild: the figures it reports, its two yardsticks, its errors.
extension DaemonEndToEnd {
    @Suite("sigil-bench")
    struct BenchTool {
        static let bench = Binaries.path("sigil-bench")

        /// A short run's JSON report, with the process's text output for failure messages.
        static func runJSON(_ arguments: [String]) throws -> (object: [String: Any], output: String) {
            let result = try run(bench, ["run"] + arguments + ["--json"], timeout: 120)
            #expect(result.status == 0, "\(result.output)")
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.output)")
            return (object, result.output)
        }

        @Test("a run against a live daemon answers every request and reports CPU, memory and the raw ratio")
        func runReportsFigures() throws {
            // A turn of 4 frames with 64 in flight: replies are held back while the backlog is
            // worked through, and every one must still arrive, matched to its request.
            let daemon = try DaemonFixture.quickStart(limits: "  frames_per_turn: 4")
            defer { daemon.stop() }
            let (report, output) = try Self.runJSON([
                "--socket", daemon.socketPath, "--depth", "64", "--duration", "1", "--rounds", "1", "--warmup", "0.2", "--baseline-seconds",
                "0.2",
            ])
            let completed = try #require(report["completed"] as? Int, "\(output)")
            #expect(completed > 100, "\(output)")
            #expect(report["errors"] as? Int == 0, "\(output)")
            #expect(report["failure"] == nil, "\(output)")
            #expect((report["daemon_cpu_ns_per_request"] as? Int ?? 0) > 0, "\(output)")
            #expect((report["raw_ns_per_operation"] as? Int ?? 0) > 0, "\(output)")
            #expect((report["daemon_rss_bytes"] as? Int ?? 0) > 1 << 20, "\(output)")
            #expect(report["yardstick"] as? String == "sequential", "\(output)")
            let ratio = try #require(report["cpu_ratio_to_raw_x1000"] as? Int, "\(output)")
            #expect(ratio > 300 && ratio < 10_000, "a daemon CPU ratio of \(ratio)/1000 is not plausible: \(output)")
        }

        @Test(
            "--same-core measures raw signing on the daemon's own core during the load, then unpins the loop",
            .enabled(if: Posix.allowedCPUs().count >= 2, "needs a core for the clients besides the loop's"))
        func sameCore() throws {
            let daemon = try DaemonFixture.quickStart(extraConfig: "workers: 1")
            defer { daemon.stop() }
            let before = Self.loopAffinity(pid: daemon.pid)
            #expect(before != nil)
            let (report, output) = try Self.runJSON([
                "--socket", daemon.socketPath, "--depth", "64", "--duration", "1", "--rounds", "2", "--warmup", "0.2", "--same-core",
                "--wait", "poll",
            ])
            #expect(report["yardstick"] as? String == "same-core", "\(output)")
            #expect(report["errors"] as? Int == 0, "\(output)")
            let ratio = try #require(report["cpu_ratio_to_raw_x1000"] as? Int, "\(output)")
            #expect(ratio > 300 && ratio < 10_000, "a daemon CPU ratio of \(ratio)/1000 is not plausible: \(output)")
            let range = try #require(report["cpu_ratio_range_x1000"] as? [Int], "\(output)")
            #expect(range.count == 2 && range[0] <= ratio && ratio <= range[1], "\(output)")
            #expect(Self.loopAffinity(pid: daemon.pid) == before, "the event loop was left pinned")
        }

        /// Cpus_allowed_list of the daemon's event loop thread.
        static func loopAffinity(pid: Int32) -> String? {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            for task in tasks {
                let comm = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8)) ?? ""
                guard comm.hasPrefix("sigild-loop") else { continue }
                let status = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8)) ?? ""
                return status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }.map(String.init)
            }
            return nil
        }

        @Test(
            "bad arguments are refused with a message naming the option",
            arguments: [
                (["run", "--same-core", "--no-baseline"], "--same-core"),
                (["sweep", "--same-core"], "--same-core is for 'run'"),
                (["run", "--depth", "0"], "--depth must be"),
                (["run", "--op", "sign-everything"], "unknown operation 'sign-everything'"),
                (["run", "--op", "verify:0"], "must be a positive integer"),
                (["run", "--rounds", "0"], "--rounds must be"),
                (["run", "--wait", "spin"], "'spin' is invalid for '--wait"),
            ])
        func badArguments(arguments: [String], message: String) throws {
            let result = try run(Self.bench, arguments + ["--socket", "/nonexistent/s.sock"])
            #expect(result.status != 0)
            #expect(result.stderr.contains(message), "\(result.output)")
        }

        @Test("a daemon that goes away mid-run ends the run with a report of what completed")
        func daemonGoesAway() throws {
            let daemon = try DaemonFixture.quickStart()
            let process = try ChildProcess(
                Self.bench,
                ["run", "--socket", daemon.socketPath, "--no-baseline", "--duration", "20", "--warmup", "0.2", "--rounds", "1"],
                stderr: .capture)
            usleep(1_500_000)
            daemon.signal(SIGKILL)
            let result = process.finish(timeout: 60)
            let text = result.stdout
            #expect(result.status == 2, "\(text) \(result.stderr)")
            #expect(text.contains("RUN CUT SHORT"), "\(text)")
            // "  throughput     N req/s (COMPLETED requests, E errors)"
            let throughput = text.split(separator: "\n").first { $0.contains("throughput") } ?? ""
            let completed = throughput.split(separator: "(").last?.split(separator: " ").first.flatMap { Int($0) } ?? 0
            #expect(completed > 0, "the report should count what completed before the daemon went away: \(text)")
        }
    }
}
