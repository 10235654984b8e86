import Foundation
import SigilClient
import SigilCore
import SigilPosix

/// The spec's test key, as fixtures for every integration test.
enum TestKeys {
    /// The Matrix spec's published test seed (non-zero trailing bits included).
    static let specSeed = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
    static let specPublicKey = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
    static let specSynapseFile = "ed25519 1 \(specSeed)\n"
    /// MMR's own test fixture (research notes §1.2), 142 bytes.
    static let mmrFile = """
        -----BEGIN MMR PRIVATE KEY-----
        Key-ID: ed25519:e5d0oC
        Version: 1

        PJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcgc=
        -----END MMR PRIVATE KEY-----

        """
    static let mmrPublicKey = "TohekYXzLx7VzV8FtLQlI3XsSdPv1CjhVYY5rZmFCvU"
}

/// Where `swift build` put the executables: next to the test bundle.
enum Binaries {
    static let directory: URL = {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // On Linux the test runner is `<bin>/<package>PackageTests.xctest`; on macOS the bundle is a directory.
        if url.pathExtension == "xctest" { url.deleteLastPathComponent() }
        return url
    }()

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// A scratch directory, removed at the end.
final class TemporaryDirectory: @unchecked Sendable {
    let path: String

    init() {
        // Short paths: Unix socket paths are limited to 107 bytes.
        let template = "/tmp/sigil-test-XXXXXX"
        var bytes = Array(template.utf8CString)
        let made = bytes.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// Writes a file with the given mode (0600 by default, as key files must be).
    @discardableResult
    func write(_ name: String, _ contents: String, mode: Int = 0o600) -> String {
        let target = file(name)
        _ = FileManager.default.createFile(atPath: target, contents: Data(contents.utf8), attributes: [.posixPermissions: mode])
        chmod(target, mode_t(mode))
        return target
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// The output of a finished process.
struct ProcessResult {
    let status: Int32
    let stdout: String
    let stderr: String
    var output: String { stdout + stderr }
}

/// Runs a command to completion, with optional standard input, environment and working directory.
@discardableResult
func run(
    _ executable: String, _ arguments: [String], input: String? = nil, environment: [String: String]? = nil,
    currentDirectory: String? = nil, timeout: Double = 60
) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
    if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe()
    let err = Pipe()
    let inPipe = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = inPipe
    try process.run()
    if let input { inPipe.fileHandleForWriting.write(Data(input.utf8)) }
    try inPipe.fileHandleForWriting.close()
    // Read both pipes fully before waiting, so a chatty child cannot block on a full pipe.
    let outData = ReadAll(out.fileHandleForReading)
    let errData = ReadAll(err.fileHandleForReading)
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(2000) }
    if process.isRunning {
        process.terminate()
        process.waitUntilExit()
    }
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus, stdout: outData.wait(), stderr: errData.wait())
}

/// Drains a pipe on a background thread.
final class ReadAll: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    func wait() -> String {
        done.wait()
        return String(decoding: data, as: UTF8.self)
    }
}

/// A real sigild process on a real socket in a scratch directory.
final class DaemonFixture: @unchecked Sendable {
    let directory: TemporaryDirectory
    let socketPath: String
    let logPath: String
    let process: Process
    private var stopped = false

    /// Starts sigild with a YAML configuration. `{dir}` in the text is replaced by the scratch
    /// directory; the socket is `{dir}/s.sock`.
    init(config: String, files: [String: String] = [:], arguments extra: [String] = [], prefix: [String] = [], environment: [String: String] = [:], directory: TemporaryDirectory = TemporaryDirectory()) throws {
        self.directory = directory
        socketPath = directory.file("s.sock")
        logPath = directory.file("sigild.log")
        for (name, contents) in files { directory.write(name, contents) }
        let configPath = directory.write("sigild.yaml", config.replacingOccurrences(of: "{dir}", with: directory.path), mode: 0o644)
        process = Process()
        let command = [Binaries.path("sigild"), "--config", configPath] + extra
        if prefix.isEmpty {
            process.executableURL = URL(fileURLWithPath: command[0])
            process.arguments = Array(command.dropFirst())
        } else {
            process.executableURL = URL(fileURLWithPath: prefix[0])
            process.arguments = Array(prefix.dropFirst()) + command
        }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        try process.run()
        try waitUntilServing()
    }

    /// The quick-start form: one server `domain` with the spec key.
    static func quickStart(key: String = TestKeys.specSynapseFile, extraConfig: String = "", limits: String = "") throws -> DaemonFixture {
        try DaemonFixture(
            config: """
                listen:
                  - name: main
                    path: {dir}/s.sock
                    mode: "0666"
                servers:
                  domain:
                    keys: [{dir}/spec.key]
                \(extraConfig)
                limits:
                  frame_timeout: 2s
                \(limits)
                log_level: debug
                """,
            files: ["spec.key": key])
    }

    private func waitUntilServing(timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !process.isRunning {
                throw FixtureError("sigild exited with status \(process.terminationStatus):\n\(log)")
            }
            if (try? SigilConnection(path: socketPath))?.close() != nil { return }
            usleep(5000)
        }
        throw FixtureError("sigild did not start serving within \(timeout) s:\n\(log)")
    }

    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func client(timeout: Double? = 30) -> SigilClient { SigilClient(socketPath: socketPath, timeout: timeout) }

    func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits for the log to contain `text`.
    func waitForLog(_ text: String, timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if log.contains(text) { return true }
            usleep(10_000)
        }
        return false
    }

    /// SIGTERM, then waits; returns the exit status.
    @discardableResult
    func stop(timeout: Double = 20) -> Int32 {
        guard !stopped else { return process.terminationStatus }
        stopped = true
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return -1
        }
        return process.terminationStatus
    }

    deinit {
        stop()
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A raw protocol connection for tests that must send malformed bytes.
final class RawSocket {
    let fd: Int32

    init(path: String) throws {
        fd = try Posix.socket(type: Int32(SOCK_STREAM.rawValue))
        try Posix.connect(fd, path: path)
        try Posix.setReceiveTimeout(fd, seconds: 10)
    }

    deinit { Posix.close(fd) }

    func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try Posix.sendAll(fd, $0) }
    }

    /// Reads one whole frame; nil on EOF.
    func readFrame() throws -> (header: FrameHeader, body: [UInt8])? {
        guard let prefix = try readExactly(4) else { return nil }
        let length = Int(prefix[0]) << 24 | Int(prefix[1]) << 16 | Int(prefix[2]) << 8 | Int(prefix[3])
        guard let rest = try readExactly(length) else { return nil }
        var decoder = FrameDecoder(maxLength: UInt32(max(length, 8)))
        decoder.append(prefix + rest)
        guard case .frame(let header, let range) = try decoder.next() else { return nil }
        return (header, Array(decoder.buffer[range]))
    }

    /// True when the daemon has closed the connection (EOF).
    func readEOF() throws -> Bool {
        var byte: [UInt8] = [0]
        let n = try byte.withUnsafeMutableBytes { try Posix.recv(fd, into: $0) }
        return n == 0
    }

    private func readExactly(_ count: Int) throws -> [UInt8]? {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: max(count, 1))
        while out.count < count {
            let want = count - out.count
            let n = try chunk.withUnsafeMutableBytes { try Posix.recv(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want])) }
            if n == 0 { return nil }
            out += chunk[0..<n]
        }
        return out
    }
}

/// Encodes one request frame.
func frameBytes(_ request: Request, id: UInt32) -> [UInt8] {
    var writer = WireWriter()
    request.encodeFrame(requestID: id, into: &writer)
    return writer.bytes
}

/// Raw frame bytes with any header values, for malformed-frame tests.
func rawFrame(length: UInt32? = nil, version: UInt8 = 1, opcode: UInt8, flags: UInt8 = 0, status: UInt8 = 0, id: UInt32, body: [UInt8] = []) -> [UInt8] {
    var writer = WireWriter()
    writer.u32(length ?? UInt32(8 + body.count))
    writer.u8(version)
    writer.u8(opcode)
    writer.u8(flags)
    writer.u8(status)
    writer.u32(id)
    writer.fixed(body)
    return writer.bytes
}
