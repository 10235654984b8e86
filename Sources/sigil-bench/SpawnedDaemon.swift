import SigilCore
import SigilPosix

#if canImport(Glibc)
import Glibc
#endif

/// A sigild started by sigil-bench itself, with throwaway keys in a scratch directory, so a
/// run needs nothing but the built binaries.
final class SpawnedDaemon {
    let directory: String
    let socketPath: String
    let pid: Int32
    let logPath: String

    /// Writes `servers` servers with `keysPerServer` fresh keys each and starts sigild on them.
    /// `notifySocket`, when given, becomes the daemon's NOTIFY_SOCKET.
    init(daemonPath: String, servers: Int = 1, keysPerServer: Int = 1, workers: Int = 0, notifySocket: String? = nil, extraLimits: String = "") throws {
        var template = Array("/tmp/sigil-bench-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { throw BenchError("mkdtemp failed") }
        directory = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        socketPath = directory + "/s.sock"
        logPath = directory + "/sigild.log"
        var serverLines: [String] = []
        for server in 0..<servers {
            let name = servers == 1 ? "bench.local" : "bench\(server).local"
            var builder = try KeyArena.Builder(capacity: keysPerServer, lockPolicy: .warn)
            let keys = (0..<keysPerServer).map { index in
                let (slot, publicKey) = builder.addRandom()
                return (slot, publicKey, KeyID(version: "b\(server)k\(index)")!)
            }
            let arena = builder.finish()
            let signingKeys = keys.map { SigningKey(id: $0.2, publicKey: $0.1, arena: arena, slot: $0.0) }
            let path = "\(directory)/\(name).key"
            try KeyFileIO.write(try KeyFileWriter.encode(signingKeys, format: .mmr, lockPolicy: .warn), to: path)
            serverLines.append("  \(name):\n    keys: [\(path)]")
        }
        let config = """
            listen:
              - name: bench
                path: \(socketPath)
                mode: "0600"
            servers:
            \(serverLines.joined(separator: "\n"))
            access:
              - uid: \(Posix.effectiveUID)
                operations: [hello, ping, list_keys, sign_request, sign_json, sign_raw, verify, verify_json, verify_request, key_document, stats]
            limits:
              max_connections: 100000
              idle_timeout: 1h
            \(extraLimits)
            memory_lock: warn
            workers: \(workers)
            log_level: notice
            """
        let configPath = directory + "/sigild.yaml"
        let configFD = try Posix.open(configPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        try Array(config.utf8).withUnsafeBytes { try Posix.writeAll(configFD, $0) }
        Posix.close(configFD)
        let logFD = try Posix.open(logPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { Posix.close(logFD) }
        var environment: [String: String] = [:]
        if let notifySocket { environment["NOTIFY_SOCKET"] = notifySocket }
        pid = try Posix.spawn(daemonPath, ["--config", configPath], environment: environment, logFD: logFD)
    }

    /// Waits until the socket accepts connections.
    func waitUntilServing(timeout: Double = 20) throws {
        let deadline = Posix.monotonicNanoseconds() + UInt64(timeout * 1e9)
        while Posix.monotonicNanoseconds() < deadline {
            if let fd = try? Posix.socket(type: Int32(SOCK_STREAM.rawValue)) {
                defer { Posix.close(fd) }
                if (try? Posix.connect(fd, path: socketPath)) != nil { return }
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { throw BenchError("sigild exited at start; its log: \(logPath)") }
            usleep(2000)
        }
        throw BenchError("sigild did not start within \(timeout) s; its log: \(logPath)")
    }

    func stop() -> Int32 {
        kill(pid, SIGTERM)
        let status = Posix.wait(pid)
        _ = try? Posix.listDirectory(directory).forEach { try? Posix.unlink(directory + "/" + $0) }
        rmdir(directory)
        return status
    }
}

/// The sigild next to this sigil-bench binary.
func siblingDaemonPath() -> String {
    let me = CommandLine.arguments[0]
    var resolved = [CChar](repeating: 0, count: Int(PATH_MAX))
    let path = realpath(me, &resolved) != nil ? String(decoding: resolved.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : me
    let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
    return directory + "/sigild"
}
