/// Reads structured choices from fuzz bytes, for targets that build their inputs (like LLVM's
/// FuzzedDataProvider). Past the end every read gives zeros or empty values, so any input is a
/// complete program and small mutations make small changes.
public struct FuzzReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    public var isAtEnd: Bool { offset >= bytes.count }
    public var remaining: Int { max(0, bytes.count - offset) }

    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    /// A value in `range` from one byte (or two for wider ranges).
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        let width = range.upperBound - range.lowerBound
        if width == 0 { return range.lowerBound }
        let raw = width < 256 ? Int(byte()) : Int(byte()) << 8 | Int(byte())
        return range.lowerBound + raw % (width + 1)
    }

    public mutating func pick<T>(_ options: [T]) -> T {
        options[int(in: 0...(options.count - 1))]
    }

    public mutating func uint64() -> UInt64 {
        var value: UInt64 = 0
        for _ in 0..<8 { value = value << 8 | UInt64(byte()) }
        return value
    }

    /// Up to `maxCount` bytes, the count taken from the next byte.
    public mutating func bytes(upTo maxCount: Int) -> [UInt8] {
        let count = min(int(in: 0...maxCount), remaining)
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    /// Bytes up to (not including) the next `delimiter`, which is consumed; the rest when none.
    public mutating func bytes(until delimiter: UInt8) -> [UInt8] {
        let start = min(offset, bytes.count)
        var end = start
        while end < bytes.count, bytes[end] != delimiter { end += 1 }
        offset = end + 1
        return Array(bytes[start..<end])
    }

    public mutating func rest() -> [UInt8] {
        let start = min(offset, bytes.count)
        offset = bytes.count
        return Array(bytes[start...])
    }
}
