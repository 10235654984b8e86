import Logging
import SigilPosix

/// One line per event on standard error. Under systemd (JOURNAL_STREAM set) each line starts
/// with a `<N>` syslog priority, which journald turns into the entry's level, and carries no
/// timestamp (the journal adds its own); otherwise lines start with a UTC timestamp.
public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let journal: Bool
    private static let lock = Locked(())

    public init(label: String, level: Logger.Level, journal: Bool = Posix.environment("JOURNAL_STREAM") != nil) {
        self.label = label
        self.logLevel = level
        self.journal = journal
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let suffix = (fields.isEmpty ? "" : " " + fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            .replacingNewlines()
        // Messages are single lines: a newline in a message (say, from a client's data) must not forge a second entry.
        let message = "\(event.message)".replacingNewlines()
        let line: String
        if journal {
            line = "<\(LineLogHandler.priority(event.level))>\(message)\(suffix)"
        } else {
            line = "\(LineLogHandler.timestamp()) \(event.level) \(label): \(message)\(suffix)"
        }
        LineLogHandler.lock.withLock { _ in Posix.printError(line) }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func timestamp() -> String {
        timestamp(milliseconds: Posix.wallClockMilliseconds())
    }

    /// RFC 3339 UTC with milliseconds, for a time in milliseconds since the epoch.
    static func timestamp(milliseconds: Int64) -> String {
        var seconds = milliseconds / 1000
        let millis = milliseconds % 1000
        let second = seconds % 60
        seconds /= 60
        let minute = seconds % 60
        seconds /= 60
        let hour = seconds % 24
        var days = seconds / 24
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(year)-\(two(month))-\(two(day))T\(two(hour)):\(two(minute)):\(two(second)).\(ms)Z"
    }
}

extension String {
    /// One line, whatever the text: control characters (CR and LF included, also as the single
    /// Character "\r\n"), DEL and the Unicode line and paragraph separators become spaces, so
    /// client data in a message can neither end the entry nor forge a `<N>` priority on a new one.
    fileprivate func replacingNewlines() -> String {
        guard unicodeScalars.contains(where: Self.breaksLine) else { return self }
        var scalars = String.UnicodeScalarView()
        for scalar in unicodeScalars { scalars.append(Self.breaksLine(scalar) ? " " : scalar) }
        return String(scalars)
    }

    private static func breaksLine(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x85 || scalar.value == 0x2028 || scalar.value == 0x2029
    }
}
