import SigilCore
import SigilPosix

/// What systemd hears from the daemon: READY, RELOADING, STOPPING, the STATUS line and the
/// watchdog keep-alive. The status line is readable by every local user (`systemctl status`), so
/// it never carries more of a failed reload than where it failed.
struct StatusReporter {
    let notifier = SystemdNotifier()
    private var lastRequests: UInt64 = 0
    private var lastAt: UInt64 = Posix.monotonicNanoseconds()
    /// Where the latest reload failed, while it stays failed.
    var reloadFailure: String?

    /// The timer period: 10 s, or half the watchdog period if systemd wants keep-alives sooner.
    var interval: UInt64 { min(10_000, notifier.watchdogInterval.map { max(1, $0 / 1000) } ?? 10_000) }

    mutating func line(_ context: ServingContext) -> String {
        let state = context.state
        let totals = context.stats.totals()
        let now = Posix.monotonicNanoseconds()
        let seconds = Double(now - lastAt) / 1e9
        let requests = totals.allRequests
        let rate = seconds > 0 ? Double(requests &- lastRequests) / seconds : 0
        lastAt = now
        lastRequests = requests
        let open = totals.listeners.reduce(0) { $0 + $1.connectionsOpen }
        let summary =
            "\(state.keyring.keyCount) key(s) for \(StatusReporter.serverSummary(state.keyring)); \(open) connection(s); \(String(format2: rate)) requests/s"
        guard let reloadFailure else { return summary }
        return "RELOAD FAILED at \(reloadFailure.truncatedUTF8(120)), serving the previous keys (see the journal); " + summary
    }

    /// A few names, then a count: the line stays short with a hundred thousand servers.
    static func serverSummary(_ keyring: Keyring) -> String {
        let names = keyring.servers.prefix(3).map(\.serverName)
        let rest = keyring.servers.count - names.count
        return names.joined(separator: ", ") + (rest > 0 ? " and \(rest) more" : "")
    }

    /// For the log after a load: each server's key IDs when there are few, otherwise counts.
    static func keySummary(_ keyring: Keyring) -> String {
        guard keyring.servers.count <= 10 else {
            return "\(keyring.keyCount) key(s) for \(keyring.servers.count) servers (\(serverSummary(keyring)))"
        }
        return keyring.servers.map { "\($0.serverName): \($0.activeKeys.map(\.id.description).joined(separator: ", "))" }.joined(
            separator: "; ")
    }

    func ready(_ status: String) { notifier.ready(status: status) }
    func reloading() { notifier.reloading() }
    func stopping() { notifier.stopping() }
    func status(_ line: String) { notifier.status(line) }

    /// A keep-alive, only while every worker loop's heartbeat is fresh.
    func watchdog(workers: [WorkerMailbox]) {
        guard notifier.watchdogInterval != nil, workers.allSatisfy({ $0.isResponsive(within: 5_000_000_000) }) else { return }
        notifier.watchdog()
    }
}

extension String {
    /// Two decimals, without Foundation.
    init(format2 value: Double) {
        let scaled = Int((value * 100).rounded())
        let whole = scaled / 100
        let fraction = abs(scaled % 100)
        self = "\(whole).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
