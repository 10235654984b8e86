import ArgumentParser
import Histogram
import SigilClient
import SigilCore
import SigilPosix

#if canImport(Glibc)
import Glibc
#endif

// `startup` and `connections`: start-up time and memory.

struct Startup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time from starting sigild to its systemd READY=1, with many keys loaded, and its idle memory.")

    @Option(help: "sigild binary (default: the one next to sigil-bench).")
    var daemon: String?
    @Option(help: "Servers.")
    var servers = 10
    @Option(help: "Keys per server.")
    var keysPerServer = 10
    @Option(help: "Starts to time.")
    var runs = 10
    @Flag(help: "One key file per server in a key directory (key_directories), instead of a YAML block each.")
    var keyDirectory = false
    @Option(help: "With --key-directory: a directory of generated key files to reuse (created and filled if needed).")
    var keysCache: String?

    func run() throws {
        var cache = keysCache
        if keyDirectory && cache == nil {
            // Made once for every run (generating 100,000 keys takes longer than loading them).
            cache = "/tmp/sigil-bench-keys-\(Posix.pid)"
        }
        defer {
            if keyDirectory && keysCache == nil, let cache {
                _ = try? Posix.listDirectory(cache).forEach { try? Posix.unlink(cache + "/" + $0) }
                rmdir(cache)
            }
        }
        if keyDirectory, let cache { _ = try SpawnedDaemon.fillKeyDirectory(cache, servers: servers) }
        var samples: [Double] = []
        var rss: [Int] = []
        var locked: [Int] = []
        for _ in 0..<runs {
            let notifyPath = "/tmp/sigil-bench-notify-\(Posix.pid)"
            try? Posix.unlink(notifyPath)
            let fd = try Posix.socket(type: Int32(SOCK_DGRAM.rawValue))
            defer {
                Posix.close(fd)
                try? Posix.unlink(notifyPath)
            }
            try Posix.bind(fd, path: notifyPath)
            try Posix.setReceiveTimeout(fd, seconds: 10)
            let start = Posix.monotonicNanoseconds()
            let spawned = try SpawnedDaemon(
                daemonPath: daemon ?? siblingDaemonPath(), servers: servers, keysPerServer: keyDirectory ? 1 : keysPerServer,
                keyDirectory: keyDirectory, keysCache: cache, notifySocket: notifyPath)
            var buffer = [UInt8](repeating: 0, count: 4096)
            var ready = false
            while !ready {
                let n = try buffer.withUnsafeMutableBytes { try Posix.recv(fd, into: $0) }
                if String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n").contains("READY=1") { ready = true }
            }
            samples.append(Double(Posix.monotonicNanoseconds() - start) / 1e6)
            sleepSeconds(0.2)
            rss.append(DaemonProbe(pid: spawned.pid).residentBytes() ?? 0)
            locked.append(DaemonProbe(pid: spawned.pid).lockedBytes() ?? 0)
            _ = spawned.stop()
        }
        samples.sort()
        let keys = keyDirectory ? servers : servers * keysPerServer
        let layout = keyDirectory ? "a key directory, one file per server" : "\(servers) YAML servers × \(keysPerServer) keys"
        print("sigild with \(keys) keys (\(layout)): spawn → READY=1 over \(runs) starts")
        print("  p50 \(RunReport.format(samples[samples.count / 2], decimals: 1)) ms, max \(RunReport.format(samples.last!, decimals: 1)) ms")
        print("  idle RSS p50 \(RunReport.format(Double(rss.sorted()[rss.count / 2]) / 1_048_576, decimals: 1)) MiB; locked (VmLck) \(RunReport.format(Double(locked.max() ?? 0) / 1024, decimals: 0)) KiB")
    }
}

struct Connections: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Memory with many connected clients: open N connections, say HELLO on each, read the daemon's RSS.")

    @Option(help: "sigild's socket; omit to start a private sigild.")
    var socket: String?
    @Option(help: "sigild binary to start when --socket is not given.")
    var daemon: String?
    @Option(help: "Connections to hold open.")
    var count = 1000

    func run() throws {
        let limit = Posix.raiseFileLimit()
        guard UInt64(count) + 64 <= limit else { throw BenchError("RLIMIT_NOFILE is \(limit); raise it (ulimit -n) for \(count) connections") }
        var options = try LoadOptions.parse([])
        options.socket = socket
        options.daemon = daemon
        let target = try Target(options)
        defer { target.stop() }
        let probe = target.pid.map(DaemonProbe.init)
        sleepSeconds(0.3)
        let idle = probe?.residentBytes() ?? 0
        var fds: [Int32] = []
        var hello = WireWriter()
        Request.hello(clientName: "sigil-bench").encodeFrame(requestID: 1, into: &hello)
        for _ in 0..<count {
            let fd = try Posix.socket(type: Int32(SOCK_STREAM.rawValue))
            try Posix.connect(fd, path: target.socketPath)
            try hello.bytes.withUnsafeBytes { try Posix.sendAll(fd, $0) }
            fds.append(fd)
        }
        var answered = 0
        var buffer = [UInt8](repeating: 0, count: 4096)
        for fd in fds {
            try Posix.setReceiveTimeout(fd, seconds: 10)
            if let n = try? buffer.withUnsafeMutableBytes({ try Posix.recv(fd, into: $0) }), n > 0 { answered += 1 }
        }
        sleepSeconds(0.3)
        let loaded = probe?.residentBytes() ?? 0
        for fd in fds { Posix.close(fd) }
        print("sigild pid \(target.pid.map(String.init) ?? "?"): idle RSS \(RunReport.format(Double(idle) / 1_048_576, decimals: 1)) MiB; with \(count) connected clients (\(answered) answered HELLO) RSS \(RunReport.format(Double(loaded) / 1_048_576, decimals: 1)) MiB")
    }
}
