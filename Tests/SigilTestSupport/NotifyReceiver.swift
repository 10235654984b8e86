import Foundation
import SigilPosix
import Synchronization

/// A stand-in for systemd's notify socket: a bound SOCK_DGRAM Unix socket that records every
/// datagram sigild sends (`READY=1`, `STATUS=…`, `WATCHDOG=1`, …), in arrival order.
public final class NotifyReceiver: Sendable {
    private static let counter = Atomic<Int>(0)

    /// A number for a fresh socket name (a daemon restarted in the same directory gets its own).
    public static func nextNumber() -> Int { counter.add(1, ordering: .relaxed).newValue }

    /// What goes in `NOTIFY_SOCKET`: a path, or `@name` for the abstract namespace.
    public let address: String
    private let fd: Int32
    private let received = Locked<[String]>([])
    private let stopped = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)

    public init(address: String) throws {
        self.address = address
        fd = try Posix.socket(type: Int32(SOCK_DGRAM.rawValue))
        do {
            try Posix.bind(fd, path: address)
            try Posix.setReceiveTimeout(fd, seconds: 0.05)
        } catch {
            Posix.close(fd)
            throw error
        }
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !stopped.load(ordering: .acquiring) {
                let count = (try? buffer.withUnsafeMutableBytes { try Posix.recv(fd, into: $0) }) ?? 0
                if count > 0 {
                    let message = String(decoding: buffer[0..<count], as: UTF8.self)
                    received.withLock { $0.append(message) }
                }
            }
            finished.store(true, ordering: .releasing)
        }
    }

    /// Every datagram so far, each as its text (`KEY=VALUE` lines).
    public var messages: [String] { received.withLock { $0 } }

    /// Waits until the datagrams so far satisfy `condition`.
    public func wait(timeout: Double = 10, until condition: ([String]) -> Bool) -> Bool {
        waitUntil(timeout: timeout) { condition(messages) }
    }

    public func close() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = waitUntil(timeout: 2) { finished.load(ordering: .acquiring) }
        Posix.close(fd)
        if !address.hasPrefix("@") { try? Posix.unlink(address) }
    }

    deinit { close() }
}

extension String {
    /// The `KEY=VALUE` lines of a notify datagram, as a dictionary.
    public var notifyFields: [String: String] {
        var fields: [String: String] = [:]
        for line in split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return fields
    }
}

