import Logging

/// Log level names as operators write them.
enum LogLevelName {
    static let names = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    static func parse(_ text: String) -> Logger.Level? {
        Logger.Level(rawValue: text.lowercased())
    }
}
