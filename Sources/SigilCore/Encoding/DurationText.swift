/// Durations as operators write them in configs and flags: `500ms`, `30s`, `5m`, `12h`, `1d`,
/// `1w`, or combinations such as `1h30m`. A bare number is seconds.
public enum DurationText {
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public let text: String
        public var description: String { "'\(text)' is not a duration (examples: 30s, 5m, 12h, 1d, 1h30m)" }
    }

    /// Milliseconds.
    public static func milliseconds(_ text: String) throws(ParseError) -> Int64 {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw ParseError(text: text) }
        if bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            guard bytes.count <= 12, let seconds = Int64(text) else { throw ParseError(text: text) }
            return seconds * 1000
        }
        var total: Int64 = 0
        var index = 0
        while index < bytes.count {
            var value: Int64 = 0
            let start = index
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39, index - start < 12 {
                value = value * 10 + Int64(bytes[index] - 0x30)
                index += 1
            }
            guard index > start else { throw ParseError(text: text) }
            let unitStart = index
            while index < bytes.count, bytes[index] >= 0x61, bytes[index] <= 0x7A { index += 1 }
            let unit = String(decoding: bytes[unitStart..<index], as: UTF8.self)
            let scale: Int64
            switch unit {
            case "ms": scale = 1
            case "s": scale = 1000
            case "m": scale = 60_000
            case "h": scale = 3_600_000
            case "d": scale = 86_400_000
            case "w": scale = 7 * 86_400_000
            default: throw ParseError(text: text)
            }
            let (product, overflow) = value.multipliedReportingOverflow(by: scale)
            guard !overflow, total <= Int64.max - product else { throw ParseError(text: text) }
            total += product
        }
        return total
    }
}
