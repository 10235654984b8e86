import FuzzSupport
import SigilCore

/// `FrameDecoder` must give the same frames, then the same error, however the bytes arrive.
enum FrameStreams {
    struct Frame: Equatable {
        let header: FrameHeader
        let body: [UInt8]
    }

    enum End: Equatable {
        case needMoreData(buffered: Int)
        case lengthTooSmall(UInt32)
        /// The request ID is only known once 12 bytes of the frame have arrived, so it is
        /// compared only when both sides have it.
        case tooLarge(length: UInt32, requestID: UInt32?)

        func agrees(with other: End) -> Bool {
            switch (self, other) {
            case (.tooLarge(let a, let x), .tooLarge(let b, let y)): return a == b && (x == nil || y == nil || x == y)
            default: return self == other
            }
        }
    }

    static func check(_ stream: UnsafeRawBufferPointer, chunking: UInt8) {
        let maxLength = UInt32(8 + Int(chunking) * 64)
        let whole = decode(stream, maxLength: maxLength, chunkSizes: { stream.count })
        let single = decode(stream, maxLength: maxLength, chunkSizes: { 1 })
        var state = UInt32(chunking) | 0x100
        let chunked = decode(stream, maxLength: maxLength) {
            state = state &* 1_103_515_245 &+ 12345
            return 1 + Int(state >> 16) % 37
        }
        for (name, other) in [("byte by byte", single), ("in chunks", chunked)] {
            fuzzCheck(other.frames == whole.frames, "\(name): \(other.frames.count) frames, whole: \(whole.frames.count)")
            fuzzCheck(other.end.agrees(with: whole.end), "\(name) ends with \(other.end), whole with \(whole.end)")
        }
    }

    static func decode(_ stream: UnsafeRawBufferPointer, maxLength: UInt32, chunkSizes next: () -> Int) -> (frames: [Frame], end: End) {
        var decoder = FrameDecoder(maxLength: maxLength, retainedCapacity: 64)
        var frames: [Frame] = []
        var offset = 0
        repeat {
            let count = min(max(1, next()), stream.count - offset)
            if count > 0 {
                decoder.append(UnsafeRawBufferPointer(rebasing: stream[offset..<(offset + count)]))
                offset += count
            }
            while true {
                let complete = decoder.hasCompleteFrame
                let result: FrameDecoder.Next
                do {
                    result = try decoder.next()
                } catch {
                    fuzzCheck(complete, "an error with hasCompleteFrame false")
                    switch error {
                    case .lengthTooSmall(let length): return (frames, .lengthTooSmall(length))
                    case .tooLarge(let length, let limit, let header):
                        fuzzCheck(limit == maxLength && length > limit, "tooLarge \(length) for \(limit)")
                        fuzzCheck(header.map { $0.length == length } ?? true, "tooLarge carries another frame's header")
                        return (frames, .tooLarge(length: length, requestID: header?.requestID))
                    }
                }
                guard case .frame(let header, let range) = result else {
                    fuzzCheck(!complete, "hasCompleteFrame but no frame")
                    break
                }
                fuzzCheck(complete, "a frame with hasCompleteFrame false")
                fuzzCheck(header.bodyLength == range.count && header.length <= maxLength, "body \(range) for \(header)")
                let frame = Frame(header: header, body: Array(decoder.buffer[range]))
                // Put back and read again: the same frame.
                decoder.unread(header)
                guard case .frame(let again, let range2)? = try? decoder.next(), again == header,
                    decoder.buffer[range2].elementsEqual(frame.body)
                else {
                    fuzzCheck(false, "unread then next gave another frame")
                    return (frames, .needMoreData(buffered: -1))
                }
                frames.append(frame)
            }
            if decoder.bufferedCount == 0 { decoder.releaseIdleMemory() }
        } while offset < stream.count
        fuzzCheck(decoder.hasPartialFrame == (decoder.bufferedCount > 0), "hasPartialFrame disagrees with bufferedCount")
        return (frames, .needMoreData(buffered: decoder.bufferedCount))
    }
}
