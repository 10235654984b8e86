/// A configuration problem: the file, the field (as a dotted path), the line when known, and
/// what is wrong.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public let file: String
    public let field: String
    public let line: Int?
    public let message: String

    public init(file: String, field: String, line: Int? = nil, _ message: String) {
        self.file = file
        self.field = field
        self.line = line
        self.message = message
    }

    /// Where the problem is, without what the file says there: for places every local user can
    /// read (systemd's STATUS=, STATS).
    public var location: String {
        let place = line.map { "\(file):\($0)" } ?? file
        return field.isEmpty ? place : "\(place) (\(field))"
    }

    public var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        return field.isEmpty ? "\(location): \(message)" : "\(location): \(field): \(message)"
    }
}
