import CSodium
import CSodiumShims
import SigilCore
import SigilPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

// `run --same-core`: the raw yardstick measured on the daemon's own cores, at the same moments.
//
// On a shared machine a core's speed wanders by 10–20 % within a second, faster than rounds of
// (baseline, then load) can follow, so a ratio of two figures taken seconds apart carries that
// noise. Here each event loop thread is pinned to a core of its own and a raw libsodium thread
// is pinned beside it for the whole measured window; the scheduler alternates the two every few
// milliseconds, so whatever slows the core slows both. The connections run on the other cores.
// Both sides are timed by the same clock (each thread's scheduler CPU time). The daemon gets
// about half its core, so throughput halves: use this mode for the CPU ratio, not for req/s.

/// Where the daemon's loops, the raw threads and the clients run.
struct SameCorePlacement {
    let loopThreads: [Int32]
    let loopCPUs: [Int]
    let clientCPUs: [Int]
    /// Each loop thread's affinity before we pinned it, to put back.
    private let previous: [[Int]]

    init(daemonPID: Int32) throws {
        let cpus = Posix.allowedCPUs()
        let tasks = (try? Posix.listDirectory("/proc/\(daemonPID)/task")) ?? []
        let loops = tasks.compactMap { task -> Int32? in
            guard let comm = try? Posix.readSmallFile("/proc/\(daemonPID)/task/\(task)/comm"),
                String(decoding: comm, as: UTF8.self).hasPrefix("sigild-loop")
            else { return nil }
            return Int32(task)
        }.sorted()
        guard !loops.isEmpty else {
            throw BenchError(
                "--same-core: found no sigild-loop threads in /proc/\(daemonPID)/task (is the daemon on this machine, and ours to read?)")
        }
        guard loops.count < cpus.count else {
            throw BenchError(
                "--same-core needs a CPU for the clients besides one per event loop: sigild has \(loops.count) loop(s), this process may use \(cpus.count) CPU(s); run sigild with fewer workers (--workers)"
            )
        }
        loopThreads = loops
        loopCPUs = Array(cpus.suffix(loops.count))
        clientCPUs = Array(cpus.prefix(cpus.count - loops.count))
        previous = loops.map { Posix.allowedCPUs(thread: $0) }
    }

    func pinLoops() throws {
        for (thread, cpu) in zip(loopThreads, loopCPUs) {
            do {
                try Posix.setAffinity(thread: thread, cpus: [cpu])
            } catch {
                throw BenchError("--same-core: cannot pin sigild's loop thread \(thread) to CPU \(cpu): \(error)")
            }
        }
    }

    func release() {
        for (thread, cpus) in zip(loopThreads, previous) { try? Posix.setAffinity(thread: thread, cpus: cpus) }
    }

    var summary: String {
        "event loop(s) and raw thread(s) sharing CPU \(loopCPUs.map(String.init).joined(separator: ",")), clients on CPU \(clientCPUs.map(String.init).joined(separator: ","))"
    }
}

/// Raw libsodium threads that run, pinned, until stopped: one per event loop, each on that
/// loop's core, cycling through the workload's operations in the mix's proportions.
final class ConcurrentYardstick {
    /// What the threads share with the caller.
    private final class Shared: Sendable {
        let stopping = Atomic<Bool>(false)
        let results: Locked<[(cpu: UInt64, operations: UInt64)]>
        init(threads: Int) { results = Locked(Array(repeating: (0, 0), count: threads)) }
    }
    private let shared: Shared
    private var threads: [PosixThread] = []
    private let secret: UnsafeMutableRawPointer

    /// `operations`: one period of the mix, each with the bytes the daemon would sign or verify.
    /// `keys`: signing keys to sign with in turn, in a shuffled order (a daemon signing for many
    /// origins touches another key each time; one key stays in the cache).
    init(cpus: [Int], operations: [(verify: Bool, message: [UInt8])], keys: Int = 1) throws {
        precondition(sodium_init() >= 0 && !operations.isEmpty && keys >= 1)
        shared = Shared(threads: cpus.count)
        // The secret keys in sodium_malloc memory, read-only, as the daemon keeps its keys.
        let keyBytes = Int(crypto_sign_secretkeybytes())
        secret = sodium_malloc(keyBytes * keys)!
        var publicKey = [UInt8](repeating: 0, count: Int(crypto_sign_publickeybytes()))
        for key in (0..<keys).reversed() {
            publicKey.withUnsafeMutableBytes {
                _ = crypto_sign_keypair(
                    $0.baseAddress!.assumingMemoryBound(to: UInt8.self), (secret + key * keyBytes).assumingMemoryBound(to: UInt8.self))
            }
        }
        // Key offsets in a shuffled order; the public key above is key 0's, for verifying.
        let order: [Int] = keys == 1 ? [0] : (0..<keys).shuffled().map { $0 * keyBytes }
        let signatures = operations.map { operation in
            var signature = [UInt8](repeating: 0, count: 64)
            signature.withUnsafeMutableBytes { sig in
                operation.message.withUnsafeBytes { msg in
                    _ = CSodiumShims_sign_detached(sig.baseAddress, msg.baseAddress, msg.count, secret)
                }
            }
            return signature
        }
        sodium_mprotect_readonly(secret)
        let secretAddress = UInt(bitPattern: secret)
        for (index, cpu) in cpus.enumerated() {
            threads.append(
                try PosixThread(name: "raw-yardstick") { [shared, operations, signatures, publicKey, order] in
                    try? Posix.setAffinity(thread: 0, cpus: [cpu])
                    let base = UnsafeRawPointer(bitPattern: secretAddress)!
                    var next = index % order.count
                    var out = [UInt8](repeating: 0, count: 64)
                    var count: UInt64 = 0
                    let start = Posix.threadCPUNanoseconds()
                    publicKey.withUnsafeBytes { pk in
                        out.withUnsafeMutableBytes { o in
                            while !shared.stopping.load(ordering: .relaxed) {
                                for (operation, signature) in zip(operations, signatures) {
                                    operation.message.withUnsafeBytes { msg in
                                        if operation.verify {
                                            signature.withUnsafeBytes { sig in
                                                _ = CSodiumShims_verify_detached(
                                                    sig.baseAddress, msg.baseAddress, msg.count, pk.baseAddress)
                                            }
                                        } else {
                                            _ = CSodiumShims_sign_detached(o.baseAddress, msg.baseAddress, msg.count, base + order[next])
                                            next = next + 1 == order.count ? 0 : next + 1
                                        }
                                    }
                                }
                                count += UInt64(operations.count)
                            }
                        }
                    }
                    let cpu = Posix.threadCPUNanoseconds() - start
                    shared.results.withLock { $0[index] = (cpu, count) }
                })
        }
    }

    /// Stops the threads; the raw CPU time per operation, averaged over them.
    func stop() -> BaselineFigures {
        shared.stopping.store(true, ordering: .relaxed)
        for thread in threads { thread.join() }
        threads = []
        sodium_free(secret)
        let figures = shared.results.withLock { $0 }
        let perOperation = figures.map { Double($0.cpu) / Double(max($0.operations, 1)) }
        let mean = perOperation.reduce(0, +) / Double(max(perOperation.count, 1))
        return BaselineFigures(nanosecondsPerOperation: mean, throughput: 1e9 / mean * Double(figures.count), threads: figures.count)
    }

    deinit {
        if !threads.isEmpty { _ = stop() }
    }
}
