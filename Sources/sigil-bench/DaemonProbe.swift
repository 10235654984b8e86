import SigilPosix

/// The daemon's CPU time and memory, read from /proc: every thread's scheduler time in
/// nanoseconds (schedstat), so short runs still measure precisely.
struct DaemonProbe {
    let pid: Int32

    /// Total CPU time of all the daemon's threads, in nanoseconds.
    func cpuNanoseconds() -> UInt64? {
        guard let tasks = try? Posix.listDirectory("/proc/\(pid)/task") else { return nil }
        var total: UInt64 = 0
        for task in tasks {
            guard let bytes = try? Posix.readSmallFile("/proc/\(pid)/task/\(task)/schedstat") else { continue }
            let text = String(decoding: bytes, as: UTF8.self)
            if let first = text.split(separator: " ").first, let value = UInt64(first) { total += value }
        }
        return total
    }

    /// Resident set size in bytes.
    func residentBytes() -> Int? { statusField("VmRSS:").map { $0 * 1024 } }
    func lockedBytes() -> Int? { statusField("VmLck:").map { $0 * 1024 } }
    func threads() -> Int? { statusField("Threads:") }

    private func statusField(_ name: String) -> Int? {
        guard let bytes = try? Posix.readSmallFile("/proc/\(pid)/status") else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name) {
            return Int(line.dropFirst(name.count).filter(\.isNumber))
        }
        return nil
    }
}
