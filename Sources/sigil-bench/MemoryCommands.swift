import ArgumentParser
import Histogram
import SigilClient
import SigilCore
import SigilPosix
import Synchronization

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

    func run() throws {
        var samples: [Double] = []
        var rss: [Int] = []
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
                daemonPath: daemon ?? siblingDaemonPath(), servers: servers, keysPerServer: keysPerServer, notifySocket: notifyPath)
            var buffer = [UInt8](repeating: 0, count: 4096)
            var ready = false
            while !ready {
                let n = try buffer.withUnsafeMutableBytes { try Posix.recv(fd, into: $0) }
                if String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n").contains("READY=1") { ready = true }
            }
            samples.append(Double(Posix.monotonicNanoseconds() - start) / 1e6)
            sleepSeconds(0.2)
            rss.append(DaemonProbe(pid: spawned.pid).residentBytes() ?? 0)
            _ = spawned.stop()
        }
        samples.sort()
        print("sigild with \(servers * keysPerServer) keys (\(servers) servers × \(keysPerServer)): spawn → READY=1 over \(runs) starts")
        print("  p50 \(RunReport.format(samples[samples.count / 2], decimals: 1)) ms, max \(RunReport.format(samples.last!, decimals: 1)) ms")
        print("  idle RSS p50 \(RunReport.format(Double(rss.sorted()[rss.count / 2]) / 1_048_576, decimals: 1)) MiB")
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
