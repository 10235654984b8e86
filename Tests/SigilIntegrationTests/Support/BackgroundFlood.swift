import Foundation
import Glibc
import Synchronization

/// Writes `bytes` to a socket from another thread without blocking (so a daemon that stops
/// reading pushes back instead of hanging the test), for at most `seconds`.
final class BackgroundFlood: Sendable {
    let count: Int
    private let sentBytes = Atomic<Int>(0)
    private let pushedBack = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    init(fd: Int32, bytes: [UInt8], seconds: Double = 30) {
        count = bytes.count
        Thread.detachNewThread { [self] in
            let deadline = Date().addingTimeInterval(seconds)
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count && Date() < deadline {
                    let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                    if n > 0 {
                        offset += n
                        sentBytes.store(offset, ordering: .relaxed)
                    } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                        pushedBack.store(true, ordering: .relaxed)
                        usleep(1000)
                    } else if n < 0 && errno != EINTR {
                        break
                    }
                }
            }
            done.signal()
        }
    }

    /// Bytes the socket has taken so far.
    var sent: Int { sentBytes.load(ordering: .relaxed) }
    /// Whether a write has found the socket full.
    var blocked: Bool { pushedBack.load(ordering: .relaxed) }

    /// Waits for the writer to finish (all sent, an error, or its deadline).
    func wait(seconds: Double) -> Bool { done.wait(timeout: .now() + seconds) == .success }
}
