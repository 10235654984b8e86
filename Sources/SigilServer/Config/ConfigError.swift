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

    public var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        return field.isEmpty ? "\(location): \(message)" : "\(location): \(field): \(message)"
    }
}
