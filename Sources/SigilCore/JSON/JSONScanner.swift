/// The lexical layer shared by the tree parser and the canonicaliser: whitespace, literals,
/// strings (decoded to raw UTF-8) and integers, over a raw buffer with a byte offset.
struct JSONScanner {
    let input: UnsafeRawBufferPointer
    var position = 0

    init(_ input: UnsafeRawBufferPointer) {
        self.input = input
    }

    var atEnd: Bool { position >= input.count }

    @inline(__always)
    mutating func skipWhitespace() {
        while position < input.count {
            switch input[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    /// The next non-whitespace byte, not consumed.
    @inline(__always)
    mutating func peek() throws(JSONError) -> UInt8 {
        skipWhitespace()
        guard position < input.count else { throw JSONError(.unexpectedEnd, at: position) }
        return input[position]
    }

    @inline(__always)
    mutating func expect(_ byte: UInt8) throws(JSONError) {
        let next = try peek()
        guard next == byte else { throw JSONError(.unexpectedByte(next), at: position) }
        position += 1
    }

    /// Consumes `true`, `false` or `null` (the first byte already peeked).
    mutating func literal(_ word: StaticString) throws(JSONError) {
        let count = word.utf8CodeUnitCount
        let start = position
        for i in 0..<count {
            guard position < input.count else { throw JSONError(.unexpectedEnd, at: position) }
            guard input[position] == word.utf8Start[i] else {
                throw JSONError(.unexpectedByte(input[position]), at: position)
            }
            position += 1
        }
        _ = start
    }

    /// Consumes a string (at its opening quote) and appends its decoded UTF-8 to `out`.
    /// Raw bytes are validated as UTF-8; `\u` escapes must pair surrogates.
    mutating func string(into out: inout [UInt8]) throws(JSONError) {
        position += 1  // the opening quote
        while true {
            // Copy runs of plain ASCII in one go: the common case.
            let runStart = position
            while position < input.count {
                let byte = input[position]
                if byte == 0x22 || byte == 0x5C || byte < 0x20 || byte >= 0x80 { break }
                position += 1
            }
            if position > runStart {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[runStart..<position]))
            }
            guard position < input.count else { throw JSONError(.unexpectedEnd, at: position) }
            let byte = input[position]
            switch byte {
            case 0x22:
                position += 1
                return
            case 0x5C:
                try escape(into: &out)
            case ..<0x20:
                throw JSONError(.controlCharacterInString, at: position)
            default:
                try utf8Sequence(into: &out)
            }
        }
    }

    private mutating func escape(into out: inout [UInt8]) throws(JSONError) {
        let start = position
        position += 1
        guard position < input.count else { throw JSONError(.unexpectedEnd, at: position) }
        let code = input[position]
        position += 1
        switch code {
        case UInt8(ascii: "\""): out.append(0x22)
        case UInt8(ascii: "\\"): out.append(0x5C)
        case UInt8(ascii: "/"): out.append(0x2F)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4(escapeStart: start)
            if (0xD800...0xDBFF).contains(scalar) {
                // A high surrogate must be followed by \u and a low surrogate.
                guard position + 1 < input.count, input[position] == 0x5C, input[position + 1] == UInt8(ascii: "u") else {
                    throw JSONError(.loneSurrogate, at: start)
                }
                position += 2
                let low = try hex4(escapeStart: start)
                guard (0xDC00...0xDFFF).contains(low) else { throw JSONError(.loneSurrogate, at: start) }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw JSONError(.loneSurrogate, at: start)
            }
            appendUTF8(scalar, to: &out)
        default:
            throw JSONError(.invalidEscape, at: start)
        }
    }

    private mutating func hex4(escapeStart: Int) throws(JSONError) -> UInt32 {
        guard position + 4 <= input.count else { throw JSONError(.unexpectedEnd, at: input.count) }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = input[position]
            let digit: UInt32
            switch byte {
            case 0x30...0x39: digit = UInt32(byte - 0x30)
            case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
            default: throw JSONError(.invalidEscape, at: escapeStart)
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    /// Validates one multi-byte UTF-8 sequence (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF).
    private mutating func utf8Sequence(into out: inout [UInt8]) throws(JSONError) {
        guard let length = UTF8Validation.sequenceLength(input, at: position) else { throw JSONError(.invalidUTF8, at: position) }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[position..<(position + length)]))
        position += length
    }

    /// Consumes a number: an integer within ±(2^53−1), written with or without an exponent.
    /// Any JSON number syntax is read (malformed syntax is `.invalidNumber`), then:
    ///
    /// - a number with a fraction part (a `.`) is a float and is refused as `.notAnInteger`,
    ///   whatever its value: `1.0`, `-0.0`, `1.50e1` and `1.5` all are;
    /// - otherwise its value must be a whole number (`1e10` is 10000000000, `150e-1` is 15,
    ///   `0e99` and `-0` are 0; `1e-1` is `.notAnInteger`) within ±(2^53−1)
    ///   (`.integerOutOfRange` if not).
    ///
    /// The value is D × 10^E, where D is the significant digits without trailing zeros; it is an
    /// integer exactly when E ≥ 0, so no floating point is ever involved.
    mutating func integer() throws(JSONError) -> Int64 {
        let start = position
        var negative = false
        if input[position] == UInt8(ascii: "-") {
            negative = true
            position += 1
        }
        var mantissa: Int64 = 0  // D
        var length = 0  // digits in D
        var tooLong = false
        var pendingZeros = 0  // zeros seen since the last non-zero digit
        var hasFraction = false

        @inline(__always) func push(_ digit: UInt8) {
            if digit == 0 {
                if length > 0 { pendingZeros += 1 }
                return
            }
            if length + pendingZeros + 1 > 17 {
                tooLong = true
            } else {
                for _ in 0..<pendingZeros { mantissa *= 10 }
                mantissa = mantissa * 10 + Int64(digit)
            }
            length += pendingZeros + 1
            pendingZeros = 0
        }
        @inline(__always) func isDigit(_ at: Int) -> Bool {
            at < input.count && input[at] >= 0x30 && input[at] <= 0x39
        }

        guard position < input.count else { throw JSONError(.invalidNumber, at: start) }
        if input[position] == UInt8(ascii: "0") {
            position += 1
            if isDigit(position) { throw JSONError(.invalidNumber, at: start) }  // leading zero
        } else if isDigit(position) {
            while isDigit(position) {
                push(input[position] - 0x30)
                position += 1
            }
        } else {
            throw JSONError(.invalidNumber, at: start)
        }
        if position < input.count, input[position] == UInt8(ascii: ".") {
            // A float, refused below once its syntax has been checked; its digits do not matter.
            hasFraction = true
            position += 1
            guard isDigit(position) else { throw JSONError(.invalidNumber, at: start) }
            while isDigit(position) { position += 1 }
        }
        var exponent = 0
        if position < input.count, input[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            var exponentNegative = false
            if position < input.count, input[position] == UInt8(ascii: "+") || input[position] == UInt8(ascii: "-") {
                exponentNegative = input[position] == UInt8(ascii: "-")
                position += 1
            }
            guard isDigit(position) else { throw JSONError(.invalidNumber, at: start) }
            while isDigit(position) {
                if exponent < 1_000_000 { exponent = exponent * 10 + Int(input[position] - 0x30) }
                position += 1
            }
            if exponentNegative { exponent = -exponent }
        }
        if hasFraction { throw JSONError(.notAnInteger, at: start) }
        if length == 0 { return 0 }  // every zero form without a fraction: 0, -0, 0e99, -0E-5
        let scale = exponent + pendingZeros
        if scale < 0 { throw JSONError(.notAnInteger, at: start) }
        if tooLong { throw JSONError(.integerOutOfRange, at: start) }
        for _ in 0..<min(scale, 17) {
            guard mantissa <= canonicalJSONMaxInteger / 10 else { throw JSONError(.integerOutOfRange, at: start) }
            mantissa *= 10
        }
        guard scale <= 17, mantissa <= canonicalJSONMaxInteger else { throw JSONError(.integerOutOfRange, at: start) }
        return negative ? -mantissa : mantissa
    }
}

/// Appends the UTF-8 encoding of a Unicode scalar value.
@inline(__always)
func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
    switch scalar {
    case ..<0x80:
        out.append(UInt8(scalar))
    case ..<0x800:
        out.append(UInt8(0xC0 | scalar >> 6))
        out.append(UInt8(0x80 | scalar & 0x3F))
    case ..<0x10000:
        out.append(UInt8(0xE0 | scalar >> 12))
        out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        out.append(UInt8(0x80 | scalar & 0x3F))
    default:
        out.append(UInt8(0xF0 | scalar >> 18))
        out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
        out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        out.append(UInt8(0x80 | scalar & 0x3F))
    }
}
