/// Protocol version 1 framing (docs/PROTOCOL.md): every integer is big-endian.
///
///     u32 length      bytes after this field: 8 + body
///     u8  version     1
///     u8  opcode
///     u8  flags       0x01 BATCH, 0x80 RESPONSE
///     u8  status      0 in requests
///     u32 request_id  echoed in the response
///     ... body
public enum Wire {
    public static let version: UInt8 = 1
    /// Bytes before the body: the length field plus the 8 bytes it always counts.
    public static let headerSize = 12
    public static let flagBatch: UInt8 = 0x01
    public static let flagResponse: UInt8 = 0x80
}

/// The fixed part of a frame.
public struct FrameHeader: Sendable, Equatable {
    /// The `length` field: 8 + body length.
    public var length: UInt32
    public var version: UInt8
    public var opcode: UInt8
    public var flags: UInt8
    public var status: UInt8
    public var requestID: UInt32

    public var bodyLength: Int { Int(length) - 8 }
    public var isBatch: Bool { flags & Wire.flagBatch != 0 }
    public var isResponse: Bool { flags & Wire.flagResponse != 0 }

    public init(length: UInt32, version: UInt8 = Wire.version, opcode: UInt8, flags: UInt8, status: UInt8, requestID: UInt32) {
        self.length = length
        self.version = version
        self.opcode = opcode
        self.flags = flags
        self.status = status
        self.requestID = requestID
    }

    init(reading bytes: UnsafeRawBufferPointer) {
        length = UInt32(bigEndianBytes: bytes, at: 0)
        version = bytes[4]
        opcode = bytes[5]
        flags = bytes[6]
        status = bytes[7]
        requestID = UInt32(bigEndianBytes: bytes, at: 8)
    }
}

extension UInt32 {
    @inline(__always)
    public init(bigEndianBytes bytes: UnsafeRawBufferPointer, at offset: Int) {
        self = UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }
}

/// Splits a byte stream into frames. Pure: no I/O, so it can be fed one byte at a time, in odd
/// chunks or all at once, and must give the same frames. The length is checked against the
/// limit as soon as its 4 bytes arrive, before any body is buffered.
public struct FrameDecoder: Sendable {
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        /// `length` below 8: the header itself does not fit. The stream cannot be resynchronised.
        case lengthTooSmall(UInt32)
        /// `length` above the limit. The rest of the header (opcode, flags, request ID) is known
        /// once 12 bytes have arrived, so the refusal can be addressed to the request.
        case tooLarge(length: UInt32, limit: UInt32, header: FrameHeader?)

        public var description: String {
            switch self {
            case .lengthTooSmall(let length): return "frame length \(length) is below the 8-byte minimum"
            case .tooLarge(let length, let limit, _): return "frame length \(length) exceeds the limit of \(limit)"
            }
        }
    }

    public enum Next: Equatable, Sendable {
        /// A whole frame: its header and the range of its body in the buffer.
        case frame(FrameHeader, body: Range<Int>)
        case needMoreData
    }

    /// The largest `length` field accepted.
    public let maxLength: UInt32
    /// Bytes received and not yet consumed.
    public private(set) var buffer: [UInt8] = []
    private var consumed = 0

    /// The buffer capacity kept when everything has been consumed; a larger one is dropped.
    public let retainedCapacity: Int

    /// `retainedCapacity`: what a busy connection keeps between reads (a buffer freed and
    /// reallocated on every read costs the allocator a madvise and the next read page faults).
    public init(maxLength: UInt32, retainedCapacity: Int = 16384) {
        precondition(maxLength >= 8)
        self.maxLength = maxLength
        self.retainedCapacity = retainedCapacity
    }

    /// Drops everything buffered, consumed or not (a connection that will read no more frames).
    public mutating func releaseAll() {
        buffer = []
        consumed = 0
    }

    /// Gives the buffer's memory back if nothing is waiting in it: for connections gone quiet.
    public mutating func releaseIdleMemory() {
        if consumed == buffer.count && buffer.capacity > 0 {
            buffer = []
            consumed = 0
        }
    }

    /// Bytes waiting (part of a frame, or frames not yet taken).
    public var bufferedCount: Int { buffer.count - consumed }
    /// Whether a frame has started but not finished arriving.
    public var hasPartialFrame: Bool { bufferedCount > 0 }

    /// Puts back the frame `next()` just returned, so the same call returns it again. Valid only
    /// before the next `append`.
    public mutating func unread(_ header: FrameHeader) {
        consumed -= 4 + Int(header.length)
        precondition(consumed >= 0, "unread of a frame that was not just read")
    }

    /// The whole, well-sized frame that follows the first `skipping` ones, without taking it: the
    /// header and the range of its body in the buffer, or nil when it has not all arrived (or its
    /// length is an error, which `next()` reports when it gets there). For looking ahead only.
    public func peek(skipping: Int = 0) -> (header: FrameHeader, body: Range<Int>)? {
        var start = consumed
        var skipped = 0
        return buffer.withUnsafeBytes { raw in
            while true {
                guard raw.count - start >= Wire.headerSize else { return nil }
                let length = UInt32(bigEndianBytes: raw, at: start)
                guard length >= 8, length <= maxLength, raw.count - start >= 4 + Int(length) else { return nil }
                if skipped == skipping {
                    let header = FrameHeader(reading: UnsafeRawBufferPointer(rebasing: raw[start...]))
                    return (header, (start + Wire.headerSize)..<(start + 4 + Int(length)))
                }
                skipped += 1
                start += 4 + Int(length)
            }
        }
    }

    /// Whether at least one whole frame (or a frame whose length is already an error) is waiting.
    public var hasCompleteFrame: Bool {
        let available = buffer.count - consumed
        guard available >= 4 else { return false }
        let length = buffer.withUnsafeBytes { UInt32(bigEndianBytes: $0, at: consumed) }
        return length < 8 || length > maxLength || available >= 4 + Int(length)
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compactIfWorthIt()
        buffer.append(contentsOf: bytes)
    }

    public mutating func append<C: Collection<UInt8>>(_ bytes: C) {
        compactIfWorthIt()
        buffer.append(contentsOf: bytes)
    }

    /// The next whole frame, if one has arrived. The body range stays valid until the next call
    /// to `append` or `next`.
    public mutating func next() throws(Failure) -> Next {
        let available = buffer.count - consumed
        guard available >= 4 else { return .needMoreData }
        let start = consumed
        let header: FrameHeader? = buffer.withUnsafeBytes { raw in
            available >= Wire.headerSize ? FrameHeader(reading: UnsafeRawBufferPointer(rebasing: raw[start...])) : nil
        }
        let length = buffer.withUnsafeBytes { UInt32(bigEndianBytes: $0, at: start) }
        guard length >= 8 else { throw .lengthTooSmall(length) }
        guard length <= maxLength else { throw .tooLarge(length: length, limit: maxLength, header: header) }
        let total = 4 + Int(length)
        guard available >= total, let header else { return .needMoreData }
        consumed += total
        return .frame(header, body: (start + Wire.headerSize)..<(start + total))
    }

    /// Drops consumed bytes once they dominate the buffer, keeping compaction amortised O(1).
    private mutating func compactIfWorthIt() {
        if consumed == buffer.count {
            // Keep a buffer for the next read unless it has grown past what one read needs.
            buffer.removeAll(keepingCapacity: buffer.capacity <= retainedCapacity)
            consumed = 0
        } else if consumed > 4096 && consumed * 2 > buffer.count {
            buffer.removeSubrange(0..<consumed)
            consumed = 0
        }
    }
}

/// Why a frame body could not be read. The message names the field.
public struct WireError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reads the fields of a body. Strings and byte fields come back as slices of the body: no copy.
public struct WireReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    public var remaining: Int { bytes.count - offset }

    @inline(__always)
    private mutating func take(_ count: Int, _ field: StaticString) throws(WireError) -> UnsafeRawBufferPointer {
        guard count <= remaining else { throw WireError("truncated body: \(field) needs \(count) bytes, \(remaining) left") }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        return slice
    }

    public mutating func u8(_ field: StaticString) throws(WireError) -> UInt8 {
        try take(1, field)[0]
    }

    public mutating func u16(_ field: StaticString) throws(WireError) -> UInt16 {
        let b = try take(2, field)
        return UInt16(b[0]) << 8 | UInt16(b[1])
    }

    public mutating func u32(_ field: StaticString) throws(WireError) -> UInt32 {
        UInt32(bigEndianBytes: try take(4, field), at: 0)
    }

    public mutating func u64(_ field: StaticString) throws(WireError) -> UInt64 {
        let b = try take(8, field)
        var value: UInt64 = 0
        for i in 0..<8 { value = value << 8 | UInt64(b[i]) }
        return value
    }

    /// `u16 length` + UTF-8, as raw bytes (validated UTF-8).
    public mutating func stringBytes(_ field: StaticString) throws(WireError) -> UnsafeRawBufferPointer {
        let count = Int(try u16(field))
        let slice = try take(count, field)
        guard UTF8Validation.isValid(slice) else { throw WireError("\(field) is not valid UTF-8") }
        return slice
    }

    /// `u16 length` + bytes, unchecked: for fields whose own grammar is checked later (ASCII).
    public mutating func rawStringBytes(_ field: StaticString) throws(WireError) -> UnsafeRawBufferPointer {
        let count = Int(try u16(field))
        return try take(count, field)
    }

    public mutating func string(_ field: StaticString) throws(WireError) -> String {
        String(decoding: try stringBytes(field), as: UTF8.self)
    }

    /// `u32 length` + bytes.
    public mutating func bytesField(_ field: StaticString) throws(WireError) -> UnsafeRawBufferPointer {
        let count = Int(try u32(field))
        return try take(count, field)
    }

    /// A fixed number of raw bytes (keys, signatures).
    public mutating func fixed(_ count: Int, _ field: StaticString) throws(WireError) -> UnsafeRawBufferPointer {
        try take(count, field)
    }

    /// Every byte must have been read.
    public func finish() throws(WireError) {
        guard remaining == 0 else { throw WireError("\(remaining) unexpected bytes after the last field") }
    }
}

/// Appends fields to a byte array.
public struct WireWriter {
    public var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }

    public mutating func u16(_ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    public mutating func u32(_ value: UInt32) {
        bytes.append(UInt8(value >> 24))
        bytes.append(UInt8(value >> 16 & 0xFF))
        bytes.append(UInt8(value >> 8 & 0xFF))
        bytes.append(UInt8(value & 0xFF))
    }

    public mutating func u64(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(value >> UInt64(shift) & 0xFF)) }
    }

    /// `u16 length` + UTF-8. Strings over 65535 bytes are a caller bug.
    public mutating func string(_ value: String) {
        let utf8 = value.utf8
        precondition(utf8.count <= Int(UInt16.max), "wire string longer than 65535 bytes")
        u16(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    public mutating func string(_ value: UnsafeRawBufferPointer) {
        precondition(value.count <= Int(UInt16.max), "wire string longer than 65535 bytes")
        u16(UInt16(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func bytesField<C: Collection<UInt8>>(_ value: C) {
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func fixed<C: Collection<UInt8>>(_ value: C) {
        bytes.append(contentsOf: value)
    }

    /// Starts a frame; finish it with `endFrame(at:)` once the body is written.
    public mutating func beginFrame(opcode: UInt8, flags: UInt8, status: UInt8, requestID: UInt32) -> Int {
        let start = bytes.count
        u32(0)
        u8(Wire.version)
        u8(opcode)
        u8(flags)
        u8(status)
        u32(requestID)
        return start
    }

    /// Fills in the length of the frame started at `start`.
    public mutating func endFrame(at start: Int) {
        patchLength(at: start)
    }

    /// Reserves a `u32` to fill in later with `patchLength(at:)` (batch item lengths).
    public mutating func placeholderU32() -> Int {
        let at = bytes.count
        u32(0)
        return at
    }

    /// Writes, into the `u32` at `position`, the number of bytes written after it.
    public mutating func patchLength(at position: Int) {
        let length = UInt32(bytes.count - position - 4)
        bytes[position] = UInt8(length >> 24)
        bytes[position + 1] = UInt8(length >> 16 & 0xFF)
        bytes[position + 2] = UInt8(length >> 8 & 0xFF)
        bytes[position + 3] = UInt8(length & 0xFF)
    }
}
