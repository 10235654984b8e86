import CSodium
import CSodiumShims
import SigilCore
import SigilPosix

#if canImport(Glibc)
import Glibc
#endif

/// In-process libsodium on the same bytes, measured in the same run: the yardstick every
/// daemon figure is divided by.
struct BaselineFigures {
    /// Mean CPU time of one raw operation on one core (ns), by the thread's CPU clock: the
    /// clock the daemon's CPU time is read with.
    var nanosecondsPerOperation: Double
    /// Operations per second with `threads` threads.
    var throughput: Double
    var threads: Int
}

enum Baseline {
    /// Raw `crypto_sign_detached` (or `_verify_detached`) on `message`, `threads` at once, for
    /// about `seconds`. The secret key sits in sodium_malloc memory, as the daemon's does.
    static func measure(verify: Bool, message: [UInt8], threads: Int, seconds: Double) -> BaselineFigures {
        precondition(sodium_init() >= 0)
        let secret = sodium_malloc(Int(crypto_sign_secretkeybytes()))!
        var publicKey = [UInt8](repeating: 0, count: Int(crypto_sign_publickeybytes()))
        publicKey.withUnsafeMutableBytes { _ = crypto_sign_keypair($0.baseAddress!.assumingMemoryBound(to: UInt8.self), secret.assumingMemoryBound(to: UInt8.self)) }
        var signature = [UInt8](repeating: 0, count: 64)
        signature.withUnsafeMutableBytes { sig in
            message.withUnsafeBytes { msg in _ = CSodiumShims_sign_detached(sig.baseAddress, msg.baseAddress, msg.count, secret) }
        }
        sodium_mprotect_readonly(secret)
        let secretAddress = UInt(bitPattern: secret)
        let counts = Locked([UInt64](repeating: 0, count: threads))
        let busy = Locked([UInt64](repeating: 0, count: threads))
        let elapsedWall = Locked([UInt64](repeating: 0, count: threads))
        let deadline = Posix.monotonicNanoseconds() + UInt64(seconds * 1e9)
        let work: [PosixThread] = (0..<threads).map { index in
            try! PosixThread(name: "baseline-\(index)") { [message, signature, publicKey] in
                let secret = UnsafeRawPointer(bitPattern: secretAddress)!
                var out = [UInt8](repeating: 0, count: 64)
                var count: UInt64 = 0
                let start = Posix.monotonicNanoseconds()
                let cpuStart = Posix.threadCPUNanoseconds()
                var now = start
                message.withUnsafeBytes { msg in
                    signature.withUnsafeBytes { sig in
                        publicKey.withUnsafeBytes { pk in
                            out.withUnsafeMutableBytes { o in
                                while now < deadline {
                                    for _ in 0..<64 {
                                        if verify {
                                            _ = CSodiumShims_verify_detached(sig.baseAddress, msg.baseAddress, msg.count, pk.baseAddress)
                                        } else {
                                            _ = CSodiumShims_sign_detached(o.baseAddress, msg.baseAddress, msg.count, secret)
                                        }
                                    }
                                    count += 64
                                    now = Posix.monotonicNanoseconds()
                                }
                            }
                        }
                    }
                }
                let cpu = Posix.threadCPUNanoseconds() - cpuStart
                counts.withLock { $0[index] = count }
                busy.withLock { $0[index] = cpu }
                elapsedWall.withLock { $0[index] = now - start }
            }
        }
        for thread in work { thread.join() }
        sodium_free(secret)
        let total = counts.withLock { $0.reduce(0, +) }
        let wall = elapsedWall.withLock { $0.max() ?? 1 }
        let perThread = counts.withLock { $0 }.enumerated().map { Double(busy.withLock { $0 }[$0.offset]) / Double(max($0.element, 1)) }
        return BaselineFigures(
            nanosecondsPerOperation: perThread.reduce(0, +) / Double(perThread.count),
            throughput: Double(total) / (Double(wall) / 1e9), threads: threads)
    }

    /// A bare Unix-socket round trip: a thread echoes frames of the response's size back to a
    /// client sending frames of the request's size, one at a time. The floor under any
    /// request-response latency on this machine.
    static func echoRoundTrip(requestSize: Int, responseSize: Int, rounds: Int) throws -> (p50: Double, mean: Double) {
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw BenchError("socketpair failed")
        }
        let server = pair[1]
        let client = pair[0]
        let echo = try PosixThread(name: "echo") {
            var request = [UInt8](repeating: 0, count: requestSize)
            let response = [UInt8](repeating: 0x5A, count: responseSize)
            for _ in 0..<rounds {
                var got = 0
                while got < requestSize {
                    let n = request.withUnsafeMutableBytes { (try? Posix.recv(server, into: UnsafeMutableRawBufferPointer(rebasing: $0[got...]))) ?? 0 }
                    if n <= 0 { return }
                    got += n
                }
                response.withUnsafeBytes { _ = try? Posix.sendAll(server, $0) }
            }
        }
        let request = [UInt8](repeating: 0xA5, count: requestSize)
        var response = [UInt8](repeating: 0, count: responseSize)
        var samples: [UInt64] = []
        samples.reserveCapacity(rounds)
        for _ in 0..<rounds {
            let start = Posix.monotonicNanoseconds()
            request.withUnsafeBytes { _ = try? Posix.sendAll(client, $0) }
            var got = 0
            while got < responseSize {
                let n = response.withUnsafeMutableBytes { (try? Posix.recv(client, into: UnsafeMutableRawBufferPointer(rebasing: $0[got...]))) ?? 0 }
                if n <= 0 { break }
                got += n
            }
            samples.append(Posix.monotonicNanoseconds() - start)
        }
        echo.join()
        Posix.close(client)
        Posix.close(server)
        samples.sort()
        let mean = Double(samples.reduce(0, +)) / Double(samples.count)
        return (Double(samples[samples.count / 2]), mean)
    }
}
