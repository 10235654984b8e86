import SigilCore

/// What a request frame is, decided once from its header and batch shape, before any operation
/// sees it: the one place a frame is validated as a frame. The operation then reads only its own
/// fields.
enum FrameVerdict: Equatable {
    case single(Opcode)
    /// `items` ranges are relative to the body (filled into the caller's scratch array).
    case batch(Opcode, itemCount: Int)
    case refused(WireStatus, String)
}

enum FrameCheck {
    /// Checks, in this order (the first failure wins): version, flags, status, opcode, whether
    /// the caller may use the operation at all, and for a batch frame whether the operation takes
    /// batches, the item count (1 to `max_batch`) and the item layout.
    static func check(
        _ header: FrameHeader, body: UnsafeRawBufferPointer, operations: Caller.Operations, identity: @autoclosure () -> String,
        maxBatchItems: Int, items: inout [Range<Int>]
    ) -> FrameVerdict {
        guard header.version == Wire.version else {
            return .refused(
                .unsupportedVersion, "protocol version \(header.version) is not supported; this daemon speaks version \(Wire.version)")
        }
        guard header.flags & ~Wire.flagBatch == 0 else {
            return .refused(.badFrame, "unknown or response flags 0x\(String(header.flags, radix: 16)) in a request")
        }
        guard header.status == 0 else { return .refused(.badFrame, "requests carry status 0, not \(header.status)") }
        guard let op = Opcode(rawValue: header.opcode) else {
            return .refused(.unknownOpcode, "unknown opcode 0x\(String(header.opcode, radix: 16))")
        }
        guard operations.contains(op) else { return .refused(.denied, "\(op) is not allowed for \(identity())") }
        guard header.isBatch else { return .single(op) }
        guard op.acceptsBatch else { return .refused(.badRequest, "\(op) does not take batch frames") }
        guard body.count >= 2 else { return .refused(.badRequest, "malformed batch: item_count needs 2 bytes, \(body.count) left") }
        let count = Int(body[0]) << 8 | Int(body[1])
        guard count > 0 else { return .refused(.badRequest, "malformed batch: a batch needs at least one item") }
        guard count <= maxBatchItems else {
            return .refused(.batchTooLarge, "batch of \(count) items exceeds the limit of \(maxBatchItems)")
        }
        items.removeAll(keepingCapacity: true)
        var offset = 2
        for index in 0..<count {
            guard body.count - offset >= 4 else {
                return .refused(.badRequest, "malformed batch: item \(index) needs a 4-byte length, \(body.count - offset) left")
            }
            let length = Int(UInt32(bigEndianBytes: body, at: offset))
            offset += 4
            guard length <= body.count - offset else {
                return .refused(.badRequest, "malformed batch: item \(index) needs \(length) bytes, \(body.count - offset) left")
            }
            items.append(offset..<(offset + length))
            offset += length
        }
        guard offset == body.count else {
            return .refused(.badRequest, "malformed batch: \(body.count - offset) unexpected bytes after the last item")
        }
        return .batch(op, itemCount: count)
    }
}
