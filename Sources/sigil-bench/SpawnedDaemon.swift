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

    /// The servers it holds, in the order their keys were made.
    let serverNames: [String]

    /// Writes `servers` servers with `keysPerServer` fresh keys each and starts sigild on them:
    /// each in the YAML, or (`keyDirectory`) one key file per server in a key directory, which
    /// `keysCache` keeps between runs. `notifySocket`, when given, becomes the daemon's
    /// NOTIFY_SOCKET.
    init(
        daemonPath: String, servers: Int = 1, keysPerServer: Int = 1, keyDirectory: Bool = false, keysCache: String? = nil,
        workers: Int = 0,
        notifySocket: String? = nil, extraLimits: String = "", extraConfig: String = ""
    ) throws {
        var template = Array("/tmp/sigil-bench-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { throw BenchError("mkdtemp failed") }
        directory = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        socketPath = directory + "/s.sock"
        logPath = directory + "/sigild.log"
        var serverLines: [String] = []
        var names: [String] = []
        var directoryLines = ""
        if keyDirectory {
            let keys = keysCache ?? directory + "/keys"
            names = try SpawnedDaemon.fillKeyDirectory(keys, servers: servers)
            directoryLines = "key_directories:\n  - path: \(keys)\n    pattern: \"*.key\""
        } else {
            for server in 0..<servers {
                let name = servers == 1 ? "bench.local" : "bench\(server).local"
                names.append(name)
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
        }
        serverNames = names
        let config = """
            listen:
              - name: bench
                path: \(socketPath)
                mode: "0600"
            \(serverLines.isEmpty ? "" : "servers:\n" + serverLines.joined(separator: "\n"))
            \(directoryLines)
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
            \(extraConfig.replacing("{dir}", with: directory))
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

    /// Makes `count` servers' key files (`bench<N>.local.key`, one fresh key each, Synapse format)
    /// in `path`, unless it already holds them; returns the server names.
    static func fillKeyDirectory(_ path: String, servers count: Int) throws -> [String] {
        let names = (0..<count).map { "bench\($0).local" }
        if (try? Posix.stat(path)) == nil { try Posix.makeDirectory(path, mode: 0o700) }
        let present = Set((try? Posix.listDirectory(path)) ?? [])
        let missing = names.filter { !present.contains($0 + ".key") }
        guard !missing.isEmpty else { return names }
        var builder = try KeyArena.Builder(capacity: missing.count, lockPolicy: .warn)
        let made = missing.map { name in (name, builder.addRandom()) }
        let arena = builder.finish()
        for (name, (slot, publicKey)) in made {
            let key = SigningKey(id: KeyID(version: "b")!, publicKey: publicKey, arena: arena, slot: slot)
            try KeyFileIO.write(
                try KeyFileWriter.encode([key], format: .synapse, lockPolicy: .warn), to: "\(path)/\(name).key", durable: false)
        }
        return names
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
        let keys = directory + "/keys"
        for name in (try? Posix.listDirectory(keys)) ?? [] { try? Posix.unlink(keys + "/" + name) }
        rmdir(keys)
        for name in (try? Posix.listDirectory(directory)) ?? [] { try? Posix.unlink(directory + "/" + name) }
        rmdir(directory)
        return status
    }
}

/// The sigild next to this sigil-bench binary.
func siblingDaemonPath() -> String {
    let me = CommandLine.arguments[0]
    var resolved = [CChar](repeating: 0, count: Int(PATH_MAX))
    let path =
        realpath(me, &resolved) != nil ? String(decoding: resolved.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : me
    let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
    return directory + "/sigild"
}
