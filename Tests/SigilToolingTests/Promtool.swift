import Foundation
import Testing

/// Prometheus' own checker, from Debian's `prometheus` package. Tests that need it run wherever
/// it is installed, and always in CI (CI=true), where its absence is a failure, not a skip.
enum Promtool {
    static let path: String? = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let inCI = ProcessInfo.processInfo.environment["CI"].map { !$0.isEmpty && $0 != "false" && $0 != "0" } ?? false
    static let shouldRun = path != nil || inCI
    static let skipReason: Comment = "promtool is not installed (apt-get install prometheus); CI runs this test"

    struct Result {
        let status: Int32
        let output: String
    }

    /// `promtool check metrics` on the classic text format: a parse error or a lint finding
    /// (a counter without _total, a missing HELP, a non-base unit) fails.
    static func checkMetrics(_ text: String) throws -> Result {
        try run(["check", "metrics"], input: text)
    }

    /// OpenMetrics: promtool has no checker for it, but its backfill reader parses it with
    /// Prometheus' OpenMetrics parser. That reader needs a timestamp on every sample, which the
    /// exposition (for a scrape) has none of, so one is added to each sample line.
    static func parseOpenMetrics(_ text: String) throws -> Result {
        let stamped = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.isEmpty || line.hasPrefix("#") ? String(line) : line + " 1700000000"
        }.joined(separator: "\n")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sigil-om-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("input.txt")
        try Data(stamped.utf8).write(to: input)
        return try run(
            ["tsdb", "create-blocks-from", "openmetrics", input.path, directory.appendingPathComponent("blocks").path], input: "")
    }

    private static func run(_ arguments: [String], input: String) throws -> Result {
        guard let path else { throw PromtoolMissing() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let stdin = Pipe()
        let output = Pipe()
        process.standardInput = stdin
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let writer = Thread {
            stdin.fileHandleForWriting.write(Data(input.utf8)); try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    struct PromtoolMissing: Error, CustomStringConvertible {
        var description: String { "promtool is missing and CI is set: .ci/run installs Debian's prometheus package for it" }
    }
}
