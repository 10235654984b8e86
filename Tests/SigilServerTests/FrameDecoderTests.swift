import SigilCore
import SigilTestSupport
import Testing

/// The frame decoder must give the same frames whether the stream arrives one byte at a time,
/// in random pieces, or all at once (as swift-nio's decoder tests check), and must judge a
/// length as soon as its four bytes are in.
@Suite("FrameDecoder")
struct FrameDecoderTests {
    /// A stream of assorted frames: every opcode, a batch, an empty body, a large body.
    static func stream() -> (bytes: [UInt8], frames: [(FrameHeader, [UInt8])]) {
        var writer = WireWriter()
        var expected: [(FrameHeader, [UInt8])] = []
        let requests: [Request] = [
            .hello(clientName: "t"), .ping(payload: Array(repeating: 7, count: 3000)), .listKeys(), .stats,
            .signRequest(SignRequestParams(origin: "domain", destination: "example.org", uri: "/x")),
            .keyDocument(server: "domain", validUntilTS: 1),
        ]
        for (index, request) in requests.enumerated() {
            let start = writer.bytes.count
            request.encodeFrame(requestID: UInt32(index + 1), into: &writer)
            let frame = Array(writer.bytes[start...])
            let header = FrameHeader(
                length: UInt32(frame.count - 4), opcode: frame[5], flags: frame[6], status: frame[7], requestID: UInt32(index + 1))
            expected.append((header, Array(frame[12...])))
        }
        return (writer.bytes, expected)
    }

    static func decode(_ chunks: [ArraySlice<UInt8>]) throws -> [(FrameHeader, [UInt8])] {
        var decoder = FrameDecoder(maxLength: 65536)
        var frames: [(FrameHeader, [UInt8])] = []
        for chunk in chunks {
            decoder.append(chunk)
            while case .frame(let header, let range) = try decoder.next() {
                frames.append((header, Array(decoder.buffer[range])))
            }
        }
        return frames
    }

    static func same(_ a: [(FrameHeader, [UInt8])], _ b: [(FrameHeader, [UInt8])]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    @Test("all at once, one byte at a time, and in random pieces: the same frames")
    func splits() throws {
        let (bytes, expected) = Self.stream()
        #expect(Self.same(try Self.decode([bytes[...]]), expected))
        #expect(Self.same(try Self.decode(bytes.indices.map { bytes[$0...$0] }), expected))
        var random = SeededGenerator("FrameDecoder random splits")
        for _ in 0..<200 {
            var chunks: [ArraySlice<UInt8>] = []
            var start = 0
            while start < bytes.count {
                let length = Int.random(in: 1...max(1, min(700, bytes.count - start)), using: &random)
                chunks.append(bytes[start..<(start + length)])
                start += length
            }
            #expect(Self.same(try Self.decode(chunks), expected), "seed \(random.seed)")
        }
    }

    @Test("a length over the limit is refused once its 4 bytes are in, with the header when it has arrived")
    func tooLarge() throws {
        var decoder = FrameDecoder(maxLength: 1024)
        decoder.append([0, 0, 4, 1])
        #expect(throws: FrameDecoder.Failure.tooLarge(length: 1025, limit: 1024, header: nil)) { _ = try decoder.next() }
        var whole = FrameDecoder(maxLength: 1024)
        whole.append([0, 0, 4, 1, 1, 0x02, 0x01, 0, 0, 0, 0, 9])
        #expect(
            throws: FrameDecoder.Failure.tooLarge(
                length: 1025, limit: 1024, header: FrameHeader(length: 1025, opcode: 0x02, flags: 0x01, status: 0, requestID: 9))
        ) {
            _ = try whole.next()
        }
    }

    @Test("peek: the frames next() will return, looked at without taking them, however the stream arrives")
    func peekAhead() throws {
        let (bytes, expected) = Self.stream()
        var decoder = FrameDecoder(maxLength: 65536)
        var taken = 0
        var peeked = 0
        for index in bytes.indices {
            decoder.append(bytes[index...index])
            for skipping in 0..<3 {
                guard let (header, range) = decoder.peek(skipping: skipping) else { continue }
                try #require(taken + skipping < expected.count)
                #expect(header == expected[taken + skipping].0)
                #expect(Array(decoder.buffer[range]) == expected[taken + skipping].1)
                peeked += 1
            }
            // Take a frame only every other byte, so several wait whole at times.
            if index % 2 == 0, case .frame = try decoder.next() { taken += 1 }
        }
        while case .frame = try decoder.next() { taken += 1 }
        #expect(taken == expected.count)
        #expect(peeked > 0)
        #expect(decoder.peek() == nil)
    }

    @Test("peek stops at a length that next() will refuse, and never reads past the buffer")
    func peekBadLengths() throws {
        var decoder = FrameDecoder(maxLength: 64)
        let ping = frameBytes(.ping(payload: [1]), id: 1)
        decoder.append(ping + [0, 0, 0, 7] + ping)
        #expect(decoder.peek()?.header.requestID == 1)
        #expect(decoder.peek(skipping: 1) == nil)
        #expect(decoder.peek(skipping: 2) == nil)
        var large = FrameDecoder(maxLength: 64)
        large.append(ping + [0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 2])
        #expect(large.peek(skipping: 1) == nil)
        // A whole header whose body has not all arrived.
        var partial = FrameDecoder(maxLength: 64)
        partial.append(ping + Array(ping.dropLast()))
        #expect(partial.peek(skipping: 1) == nil)
        #expect(partial.peek()?.header.requestID == 1)
        // A length of exactly the limit is a frame.
        var exact = FrameDecoder(maxLength: 64)
        let prefix = frameBytes(.ping(payload: []), id: 7).count - Wire.headerSize
        exact.append(frameBytes(.ping(payload: [UInt8](repeating: 3, count: 64 - 8 - prefix)), id: 7))
        #expect(exact.peek()?.header.length == 64)
        #expect(exact.peek()?.body.count == 56)
    }

    @Test("peek after the buffer was compacted (taken frames dropped from its front)")
    func peekAfterCompaction() throws {
        var decoder = FrameDecoder(maxLength: 1024)
        let pings = (1...301).map { frameBytes(.ping(payload: [UInt8](repeating: UInt8($0 & 0xFF), count: 20)), id: UInt32($0)) }
        decoder.append(pings[..<300].joined().map { $0 })
        for _ in 0..<250 { _ = try decoder.next() }
        let before = decoder.buffer.count
        // Over 4 KiB taken, and most of the buffer: this append compacts it.
        decoder.append(pings[300])
        #expect(decoder.buffer.count < before)
        for skipping in 0..<51 {
            let (header, range) = try #require(decoder.peek(skipping: skipping))
            #expect(header.requestID == UInt32(251 + skipping))
            #expect(Array(decoder.buffer[range]) == Array(pings[250 + skipping][12...]))
        }
        #expect(decoder.peek(skipping: 51) == nil)
    }

    @Test("a length below 8 cannot be a frame")
    func tooSmall() throws {
        var decoder = FrameDecoder(maxLength: 1024)
        decoder.append([0, 0, 0, 7])
        #expect(throws: FrameDecoder.Failure.lengthTooSmall(7)) { _ = try decoder.next() }
    }

    @Test("partial frames wait; the buffer is compacted as frames are taken")
    func partial() throws {
        let (bytes, expected) = Self.stream()
        var decoder = FrameDecoder(maxLength: 65536)
        decoder.append(bytes[0..<5])
        #expect(try decoder.next() == .needMoreData)
        #expect(decoder.hasPartialFrame && !decoder.hasCompleteFrame)
        decoder.append(bytes[5...])
        var count = 0
        while case .frame = try decoder.next() { count += 1 }
        #expect(count == expected.count)
        #expect(decoder.bufferedCount == 0)
    }
}
