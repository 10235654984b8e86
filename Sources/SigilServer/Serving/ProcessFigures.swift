import SigilPosix

/// Figures about this process read from /proc, for STATS and the systemd status line.
enum ProcessFigures {
    /// Resident set size in bytes (VmRSS).
    static func residentBytes() -> Int? {
        statusField("VmRSS:").map { $0 * 1024 }
    }

    /// Locked memory in bytes (VmLck).
    static func lockedBytes() -> Int? {
        statusField("VmLck:").map { $0 * 1024 }
    }

    private static func statusField(_ name: String) -> Int? {
        guard let bytes = try? Posix.readSmallFile("/proc/self/status") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let digits = line.dropFirst(name.count).filter { $0.isNumber }
            return Int(digits)
        }
        return nil
    }
}
