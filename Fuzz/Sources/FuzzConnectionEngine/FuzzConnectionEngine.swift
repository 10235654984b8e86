import FuzzSupport
import SigilCore

@_cdecl("FuzzConnectionEngine_main")
public func fuzzConnectionEngineMain(argc: Int32, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzMain(ConnectionEngineTarget.self, argc: argc, argv: argv)
}

/// SigilServer's connection engine, driven as the daemon's libuv driver drives it: reads of odd
/// sizes, a kernel that takes only part of a write, clock ticks (timeouts, the drain), batches
/// finishing in any order, backlog turns, EOF, I/O errors and the memory budget's shedding.
///
/// Input: a setup byte (EngineSetup.all), a program length P, P program bytes, then the byte
/// stream the client sends. Each program byte is an event (low 3 bits) with an argument (the
/// other 5). When the program ends, the client reads everything and sends the rest of the
/// stream, then EOF (EngineSession.finish).
///
/// Checks: no crash or trap; every response frame decodes, answers an outstanding request (ID,
/// opcode and BATCH bit) or is the one connection-fatal reply (request ID 0 when the header
/// had not arrived), and nothing follows that; reply sizes within the protocol's bounds; no read
/// while replies over max_pending_output wait or whole frames are backlogged; pending output
/// within max_pending_output plus one reply, the fatal reply and the batches in flight; no
/// write after the write side is shut; a connection that ends cleanly answered every request
/// exactly once.
enum ConnectionEngineTarget: FuzzTarget {
    static let readSizes = [
        1, 2, 3, 4, 5, 7, 8, 11, 12, 13, 15, 16, 17, 19, 23, 31, 32, 33, 47, 64, 100, 127, 128, 255, 256, 511, 1000, 1024, 4095, 4096,
        16384, 65536,
    ]
    static let tickSteps: [UInt64] = [
        0, 1, 2, 5, 10, 50, 99, 100, 101, 500, 999, 1000, 1001, 1999, 2000, 2001, 4999, 5000, 5001, 9999, 10_000, 10_001, 60_000, 3_600_000,
    ]
    static let kernelSpaces = [0, 1, 7, 12, 16, 100, 1000, 4096, 65536, Int.max]

    enum Event: UInt8 {
        case read = 0, readMore, tick, kernel, writeCompletes, runJob, continueTurn, other
    }

    static func run(_ input: UnsafeRawBufferPointer) {
        guard input.count >= 2 else { return }
        let setup = EngineSetup.all[Int(input[0]) % EngineSetup.all.count]
        let programLength = min(Int(input[1]), input.count - 2)
        let program = UnsafeRawBufferPointer(rebasing: input[2..<(2 + programLength)])
        var stream = ArraySlice(Array(input[(2 + programLength)...]))
        let session = EngineSession(setup: setup)
        for byte in program {
            let argument = Int(byte >> 3)
            switch Event(rawValue: byte & 7)! {
            case .read, .readMore:
                guard session.reading, !stream.isEmpty else { continue }
                let count = min(readSizes[argument], stream.count)
                session.read(stream.prefix(count))
                stream = stream.dropFirst(count)
            case .tick:
                if argument < tickSteps.count {
                    session.tick(tickSteps[argument])
                } else {
                    // Draining: a quiet connection closes; past the deadline every one does.
                    session.tick(UInt64(argument - tickSteps.count) * 50, draining: true, pastDrainDeadline: argument == 31)
                }
            case .kernel:
                session.kernelSpace = kernelSpaces[argument % kernelSpaces.count]
            case .writeCompletes:
                session.writeCompletes()
            case .runJob:
                session.runJob(argument)
            case .continueTurn:
                session.continueTurn()
            case .other:
                switch argument {
                case 0: session.endOfInput()
                case 1: session.ioError()
                case 2: session.shedForMemory()
                default:
                    // A read of the next `argument` bytes exactly (small odd sizes).
                    guard session.reading, !stream.isEmpty else { continue }
                    let count = min(argument, stream.count)
                    session.read(stream.prefix(count))
                    stream = stream.dropFirst(count)
                }
            }
        }
        session.finish(rest: stream, chunk: 4096)
    }

    static var seeds: [[UInt8]] { EngineSeeds.all }
}
