import SigilCore
import SigilPosix

#if canImport(Glibc)
    import Glibc
#endif

/// A raw protocol connection for tests that must send malformed bytes.
public final class RawSocket {
    public let fd: Int32

    public init(path: String, timeout: Double = 10) throws {
        fd = try Posix.socket(type: Int32(SOCK_STREAM.rawValue))
        do {
            try Posix.connect(fd, path: path)
            try Posix.setReceiveTimeout(fd, seconds: timeout)
        } catch {
            Posix.close(fd)
            throw error
        }
    }

    deinit { Posix.close(fd) }

    public func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try Posix.sendAll(fd, $0) }
    }

    /// Reads one whole frame; nil on EOF.
    public func readFrame() throws -> (header: FrameHeader, body: [UInt8])? {
        guard let prefix = try readExactly(4) else { return nil }
        let length = Int(prefix[0]) << 24 | Int(prefix[1]) << 16 | Int(prefix[2]) << 8 | Int(prefix[3])
        guard let rest = try readExactly(length) else { return nil }
        var decoder = FrameDecoder(maxLength: UInt32(max(length, 8)))
        decoder.append(prefix + rest)
        guard case .frame(let header, let range) = try decoder.next() else { return nil }
        return (header, Array(decoder.buffer[range]))
    }

    /// True when the daemon has closed the connection (EOF).
    public func readEOF() throws -> Bool {
        var byte: [UInt8] = [0]
        let n = try byte.withUnsafeMutableBytes { try Posix.recv(fd, into: $0) }
        return n == 0
    }

    private func readExactly(_ count: Int) throws -> [UInt8]? {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: max(count, 1))
        while out.count < count {
            let want = count - out.count
            let n = try chunk.withUnsafeMutableBytes { try Posix.recv(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want])) }
            if n == 0 { return nil }
            out += chunk[0..<n]
        }
        return out
    }
}

/// Encodes one request frame.
public func frameBytes(_ request: Request, id: UInt32) -> [UInt8] {
    var writer = WireWriter()
    request.encodeFrame(requestID: id, into: &writer)
    return writer.bytes
}

/// Raw frame bytes with any header values, for malformed-frame tests.
public func rawFrame(
    length: UInt32? = nil, version: UInt8 = 1, opcode: UInt8, flags: UInt8 = 0, status: UInt8 = 0, id: UInt32, body: [UInt8] = []
) -> [UInt8] {
    var writer = WireWriter()
    writer.u32(length ?? UInt32(8 + body.count))
    writer.u8(version)
    writer.u8(opcode)
    writer.u8(flags)
    writer.u8(status)
    writer.u32(id)
    writer.fixed(body)
    return writer.bytes
}
