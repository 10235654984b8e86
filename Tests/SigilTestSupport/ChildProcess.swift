import Foundation
import SigilPosix

/// The output of a finished process.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public let pid: Int32
    public var output: String { stdout + stderr }
}

/// A child process started with posix_spawn (through SigilPosix), with its output captured by
/// reader threads or sent to a file. No Foundation `Process` or `FileHandle`: both leak under
/// the address sanitizer's leak checker.
public final class ChildProcess: @unchecked Sendable {
    public enum Output: Sendable {
        case capture
        case file(String)
        case discard
    }

    public let pid: Int32
    private let stdout: PipeReader?
    private let stderr: PipeReader?
    private let exitStatus = Locked<Int32?>(nil)

    public init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], input: String? = nil,
        stdout: Output = .capture, stderr: Output = .capture, directory: String? = nil
    ) throws {
        var closeAfter: [Int32] = []
        defer { for fd in closeAfter { Posix.close(fd) } }
        func target(_ output: Output) throws -> (fd: Int32, reader: PipeReader?) {
            switch output {
            case .capture:
                let (read, write) = try Posix.pipe()
                closeAfter.append(write)
                return (write, PipeReader(fd: read))
            case .file(let path):
                let fd = try Posix.open(path, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o644)
                closeAfter.append(fd)
                return (fd, nil)
            case .discard:
                let fd = try Posix.open("/dev/null", flags: O_WRONLY)
                closeAfter.append(fd)
                return (fd, nil)
            }
        }
        let (inRead, inWrite) = try Posix.pipe()
        closeAfter.append(inRead)
        let out = try target(stdout)
        let err = try target(stderr)
        do {
            pid = try Posix.spawn(
                executable, arguments, environment: environment, standardInput: inRead, standardOutput: out.fd, standardError: err.fd,
                directory: directory)
        } catch {
            Posix.close(inWrite)
            throw error
        }
        self.stdout = out.reader
        self.stderr = err.reader
        let bytes = Array((input ?? "").utf8)
        // From a thread: a child that does not read its input must not block us.
        Thread.detachNewThread {
            bytes.withUnsafeBytes { _ = try? Posix.writeAll(inWrite, $0) }
            Posix.close(inWrite)
        }
    }

    /// The exit status (128 + signal for a signal), once it has exited.
    public var status: Int32? {
        exitStatus.withLock { status in
            if status == nil { status = Posix.tryWait(pid) }
            return status
        }
    }

    public var isRunning: Bool { status == nil }

    /// Waits up to `timeout` seconds; the status, or nil if it still runs.
    @discardableResult
    public func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let status { return status }
            usleep(2000)
        }
        return status
    }

    public func signal(_ signal: Int32) {
        if isRunning { try? Posix.kill(pid, signal) }
    }

    /// Waits for the exit (killing the child after `timeout`) and for its output.
    public func finish(timeout: Double = 60) -> ProcessResult {
        if wait(timeout: timeout) == nil {
            signal(SIGKILL)
            wait(timeout: 10)
        }
        return ProcessResult(status: status ?? -1, stdout: stdout?.wait() ?? "", stderr: stderr?.wait() ?? "", pid: pid)
    }

    deinit {
        if isRunning {
            signal(SIGKILL)
            wait(timeout: 5)
        }
    }
}

/// Drains a pipe on a background thread.
final class PipeReader: Sendable {
    private let data = Locked<[UInt8]>([])
    private let done = DispatchSemaphore(value: 0)

    init(fd: Int32) {
        Thread.detachNewThread { [self] in
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = (try? chunk.withUnsafeMutableBytes { try Posix.read(fd, into: $0) }) ?? 0
                if n <= 0 { break }
                data.withLock { $0 += chunk[0..<n] }
            }
            Posix.close(fd)
            done.signal()
        }
    }

    /// Everything until EOF.
    func wait() -> String {
        done.wait()
        done.signal()
        return String(decoding: data.withLock { $0 }, as: UTF8.self)
    }
}

/// Runs a command to completion, with optional standard input, environment and working directory.
@discardableResult
public func run(
    _ executable: String, _ arguments: [String], input: String? = nil, environment: [String: String]? = nil,
    currentDirectory: String? = nil, timeout: Double = 60
) throws -> ProcessResult {
    try ChildProcess(executable, arguments, environment: environment ?? [:], input: input, directory: currentDirectory).finish(timeout: timeout)
}
