internal import CFuzzDriver

#if canImport(Glibc)
    import Glibc
#endif

/// What a fuzz target does with one input, and the inputs its corpus was first seeded from.
public protocol FuzzTarget {
    /// Checks one input; a finding stops the process (`fuzzCheck`, a Swift trap, or ASan).
    static func run(_ input: UnsafeRawBufferPointer)
    /// Seeds built from the test fixtures and spec vectors with Sigil's own writers, so they
    /// stay valid as formats evolve. Written out by `SIGIL_FUZZ_WRITE_SEEDS=dir`.
    static var seeds: [[UInt8]] { get }
}

// The C callback cannot capture, so the target's entry is kept here. Set once, before
// libFuzzer starts, and only read after: libFuzzer calls back on the thread that started it.
nonisolated(unsafe) private var runOne: ((UnsafeRawBufferPointer) -> Void)?

/// The body of every target's `<Target>_main`: writes the seeds when asked to, otherwise hands
/// the command line to libFuzzer.
public func fuzzMain<T: FuzzTarget>(_ target: T.Type, argc: Int32, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    if let directory = getenv("SIGIL_FUZZ_WRITE_SEEDS") {
        return writeSeeds(T.seeds, to: String(cString: directory))
    }
    runOne = T.run
    var count = argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in
        runOne!(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}

private func writeSeeds(_ seeds: [[UInt8]], to directory: String) -> Int32 {
    mkdir(directory, 0o755)
    for (index, seed) in seeds.enumerated() {
        let path = "\(directory)/seed-\(index)"
        guard let file = fopen(path, "wb") else {
            printError("cannot write \(path)")
            return 1
        }
        let written = seed.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
        guard written == seed.count else {
            printError("short write to \(path)")
            return 1
        }
    }
    print("wrote \(seeds.count) seeds to \(directory)")
    return 0
}

/// Stops the run when an invariant does not hold. libFuzzer reports the abort as a crash and
/// saves the input; the message says which invariant.
public func fuzzCheck(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line
) {
    guard !condition() else { return }
    printError("FUZZ CHECK FAILED at \(file):\(line): \(message())")
    abort()
}

/// Writes a line to standard error (straight to fd 2: `stderr` is shared mutable state to Swift 6).
public func printError(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Bytes as `"…"` with anything unprintable escaped, for check messages.
public func printable<C: Collection<UInt8>>(_ bytes: C, limit: Int = 400) -> String {
    var out = "\""
    for byte in bytes.prefix(limit) {
        switch byte {
        case 0x22: out += "\\\""
        case 0x5C: out += "\\\\"
        case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(byte))
        default: out += "\\x" + String(byte, radix: 16).leftPadded(2)
        }
    }
    if bytes.count > limit { out += "…(\(bytes.count) bytes)" }
    return out + "\""
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
