import FuzzSupport
import SigilCore

/// What the client sent, read independently of the engine: every whole request frame that
/// reached it (by request ID, opcode and BATCH bit), and the connection-fatal length prefix, if
/// one arrived. Responses are checked off against it.
struct RequestLedger {
    struct Key: Hashable {
        let id: UInt32
        let opcode: UInt8
        let batch: Bool
    }

    let maxFrameLength: UInt32
    private var sent: [UInt8] = []
    private var walked = 0
    /// Requests not yet answered (a client may reuse an ID).
    private(set) var outstanding: [Key: Int] = [:]
    private(set) var requestCount = 0
    /// The answer a connection-fatal length prefix calls for (request ID 0 and opcode 0 when its
    /// header had not fully arrived, or for a length below 8).
    private(set) var fatal: Key?

    init(maxFrameLength: UInt32) {
        self.maxFrameLength = maxFrameLength
    }

    var isEmpty: Bool { outstanding.values.allSatisfy { $0 == 0 } }

    /// Bytes the engine was given in one read; walks the frames they complete.
    mutating func received(_ bytes: ArraySlice<UInt8>) {
        sent += bytes
        while fatal == nil, sent.count - walked >= 4 {
            let length =
                UInt32(sent[walked]) << 24 | UInt32(sent[walked + 1]) << 16 | UInt32(sent[walked + 2]) << 8 | UInt32(sent[walked + 3])
            let hasHeader = sent.count - walked >= Wire.headerSize
            if length < 8 {
                fatal = Key(id: 0, opcode: 0, batch: false)
                break
            }
            if length > maxFrameLength {
                fatal = hasHeader ? key(at: walked) : Key(id: 0, opcode: 0, batch: false)
                break
            }
            guard sent.count - walked >= 4 + Int(length) else { break }
            outstanding[key(at: walked), default: 0] += 1
            requestCount += 1
            walked += 4 + Int(length)
        }
        // Keep only the partial frame.
        if walked > 65536 {
            sent.removeFirst(walked)
            walked = 0
        }
    }

    private func key(at offset: Int) -> Key {
        let id =
            UInt32(sent[offset + 8]) << 24 | UInt32(sent[offset + 9]) << 16 | UInt32(sent[offset + 10]) << 8 | UInt32(sent[offset + 11])
        return Key(id: id, opcode: sent[offset + 5], batch: sent[offset + 6] & Wire.flagBatch != 0)
    }

    /// Checks a response off; false when no request it could answer is outstanding.
    mutating func answer(_ key: Key) -> Bool {
        guard let count = outstanding[key], count > 0 else { return false }
        outstanding[key] = count - 1
        return true
    }
}
