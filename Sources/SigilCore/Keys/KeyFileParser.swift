/// Reads the three key-file formats from raw (guarded) bytes. Lenient where MMR, Synapse or
/// Dendrite accept something (CRLF, blank lines, padded or unpadded base64, a missing blank line
/// after PEM headers, trailing blank lines); strict where they would silently lose or mangle a
/// key (seeds that are not 32 bytes, unknown or mixed block types, stray text).
struct KeyFileParser {
    let bytes: UnsafeRawBufferPointer
    let path: String

    private struct Line {
        /// Without the line ending and without surrounding spaces and tabs.
        let range: Range<Int>
        let number: Int
    }

    func parse() throws(KeyFileError) -> (format: KeyFileFormat, entries: [KeyFile.Entry]) {
        guard bytes.count <= KeyFile.maxSize else { throw error(nil, .tooLarge(limit: KeyFile.maxSize)) }
        let lines = splitLines()
        guard lines.contains(where: { !$0.range.isEmpty }) else { throw error(nil, .empty) }
        let result: (KeyFileFormat, [KeyFile.Entry])
        if lines.contains(where: { hasPrefix($0, "-----BEGIN ") }) {
            result = try parsePEM(lines)
        } else {
            result = (.synapse, try parseSynapse(lines))
        }
        var seen: [KeyID: Int] = [:]
        for entry in result.1 {
            if let first = seen[entry.id] { throw error(entry.line, .duplicateKeyID(entry.id, firstLine: first)) }
            seen[entry.id] = entry.line
        }
        return result
    }

    private func error(_ line: Int?, _ problem: KeyFileError.Problem) -> KeyFileError {
        KeyFileError(path: path, line: line, problem)
    }

    private func splitLines() -> [Line] {
        var lines: [Line] = []
        var start = 0
        var number = 1
        func trimmed(_ lower: Int, _ upper: Int) -> Range<Int> {
            var lower = lower
            var upper = upper
            while lower < upper, Base64.isWhitespace(bytes[lower]) { lower += 1 }
            while upper > lower, Base64.isWhitespace(bytes[upper - 1]) { upper -= 1 }
            return lower..<upper
        }
        for index in 0..<bytes.count where bytes[index] == 0x0A {
            lines.append(Line(range: trimmed(start, index), number: number))
            start = index + 1
            number += 1
        }
        if start < bytes.count { lines.append(Line(range: trimmed(start, bytes.count), number: number)) }
        return lines
    }

    private func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    private func hasPrefix(_ line: Line, _ prefix: StaticString) -> Bool {
        let count = prefix.utf8CodeUnitCount
        guard line.range.count >= count else { return false }
        for i in 0..<count where bytes[line.range.lowerBound + i] != prefix.utf8Start[i] { return false }
        return true
    }

    private func equals(_ range: Range<Int>, _ text: String) -> Bool {
        slice(range).elementsEqual(text.utf8)
    }

    /// Told of every String the parser makes from a version, for tests: nothing else, and in
    /// particular no seed in the wrong field, may ever become one.
    @TaskLocal static var versionTextObserver: (@Sendable (String) -> Void)?

    /// The key ID for a version already checked on its bytes with `KeyID.isValidVersion(utf8:)`,
    /// and only once the entry's seed has been checked: the only place a version from a file
    /// becomes a String.
    private func checkedKeyID(version range: Range<Int>) -> KeyID? {
        let version = String(decoding: slice(range), as: UTF8.self)
        Self.versionTextObserver?(version)
        return KeyID(version: version)
    }

    private func checkSeed(_ range: Range<Int>, line: Int) throws(KeyFileError) {
        let count: Int
        do {
            count = try Base64.decodedCount(slice(range), skippingWhitespace: true)
        } catch {
            throw self.error(line, .invalidSeedEncoding(error.description))
        }
        guard count == Ed25519.seedBytes else { throw error(line, .seedLength(count)) }
    }

    // MARK: Synapse

    private func parseSynapse(_ lines: [Line]) throws(KeyFileError) -> [KeyFile.Entry] {
        var entries: [KeyFile.Entry] = []
        for line in lines where !line.range.isEmpty {
            var fields: [Range<Int>] = []
            var index = line.range.lowerBound
            while index < line.range.upperBound {
                while index < line.range.upperBound, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 }
                let start = index
                while index < line.range.upperBound, bytes[index] != 0x20 && bytes[index] != 0x09 { index += 1 }
                if index > start { fields.append(start..<index) }
            }
            if fields.count == 1 && line.range.count >= 43 { throw error(line.number, .legacyUnversionedKey) }
            guard fields.count == 3 else {
                if fields.count >= 1, !equals(fields[0], KeyID.algorithm) {
                    // A first field that is not "ed25519" says more than a field count does.
                    throw error(line.number, .unsupportedAlgorithm(echoable(slice(fields[0]))))
                }
                throw error(line.number, .fieldCount(fields.count))
            }
            guard equals(fields[0], KeyID.algorithm) else {
                throw error(line.number, .unsupportedAlgorithm(echoable(slice(fields[0]))))
            }
            // Nothing that could be a seed becomes a String. The version is checked on its bytes,
            // and the seed field before the version is turned into text: with the fields swapped
            // (`ed25519 SEED VERSION`) the seed passes as a version, but field 3 then fails as a
            // seed, and the line is refused with the seed still only bytes in the guarded file.
            let versionBytes = slice(fields[1])
            guard KeyID.isValidVersion(utf8: versionBytes, maxLength: KeyFile.maxVersionLength) else {
                throw error(line.number, .invalidKeyVersion(echoable(versionBytes)))
            }
            try checkSeed(fields[2], line: line.number)
            guard let id = checkedKeyID(version: fields[1]) else {
                throw error(line.number, .invalidKeyVersion(echoable(versionBytes)))  // not reached: checked above
            }
            entries.append(KeyFile.Entry(id: id, line: line.number, seedText: fields[2]))
        }
        return entries
    }

    // MARK: PEM (MMR and Dendrite)

    private func parsePEM(_ lines: [Line]) throws(KeyFileError) -> (KeyFileFormat, [KeyFile.Entry]) {
        var entries: [KeyFile.Entry] = []
        var format: KeyFileFormat?
        var index = 0
        while index < lines.count {
            let line = lines[index]
            if line.range.isEmpty {
                index += 1
                continue
            }
            guard hasPrefix(line, "-----BEGIN ") else { throw error(line.number, .textOutsideBlock) }
            // Check the length before forming the type's range: a line such as "-----BEGIN X"
            // (11 to 15 bytes) would otherwise make a range with lowerBound > upperBound and trap.
            guard line.range.count > 16, equals((line.range.upperBound - 5)..<line.range.upperBound, "-----") else {
                throw error(line.number, .textOutsideBlock)
            }
            let typeRange = (line.range.lowerBound + 11)..<(line.range.upperBound - 5)
            let blockFormat: KeyFileFormat
            if equals(typeRange, "MMR PRIVATE KEY") {
                blockFormat = .mmr
            } else if equals(typeRange, "MATRIX PRIVATE KEY") {
                blockFormat = .dendrite
            } else {
                throw error(line.number, .unexpectedBlockType(echoableType(typeRange)))
            }
            if let format, format != blockFormat { throw error(line.number, .mixedBlockTypes) }
            format = blockFormat
            let (entry, next) = try parseBlock(lines, begin: index, format: blockFormat)
            entries.append(entry)
            index = next
        }
        guard let format else { throw error(nil, .unrecognizedFormat) }
        return (format, entries)
    }

    private func echoableType(_ range: Range<Int>) -> String? {
        echoableLine(slice(range))
    }

    /// Parses one block starting at its BEGIN line; returns the entry and the index after END.
    private func parseBlock(_ lines: [Line], begin: Int, format: KeyFileFormat) throws(KeyFileError) -> (KeyFile.Entry, Int) {
        let beginLine = lines[begin]
        let type = format.pemType!
        var index = begin + 1
        var keyID: (value: Range<Int>, line: Int)?
        var version: Range<Int>?
        // Header names are compared as bytes, never made into Strings: a name can be anything,
        // a seed included.
        var seenHeaders: Set<HeaderName> = []

        // Headers: "Name: value" lines, up to a blank line or the first line without a colon.
        while index < lines.count {
            let line = lines[index]
            if line.range.isEmpty {
                index += 1
                break
            }
            if hasPrefix(line, "-----") { break }
            guard let colon = slice(line.range).firstIndex(of: UInt8(ascii: ":")) else { break }
            let nameRange = line.range.lowerBound..<(line.range.lowerBound + colon)
            var valueStart = nameRange.upperBound + 1
            while valueStart < line.range.upperBound, bytes[valueStart] == 0x20 || bytes[valueStart] == 0x09 { valueStart += 1 }
            let valueRange = valueStart..<line.range.upperBound
            guard !nameRange.isEmpty, UTF8Validation.isValid(slice(nameRange)) else {
                throw error(line.number, .malformedHeader)
            }
            // Without trailing spaces and tabs. The line is trimmed, so the name starts with
            // neither and stays non-empty.
            var nameEnd = nameRange.upperBound
            while nameEnd > nameRange.lowerBound, bytes[nameEnd - 1] == 0x20 || bytes[nameEnd - 1] == 0x09 { nameEnd -= 1 }
            let trimmedName = nameRange.lowerBound..<nameEnd
            if !seenHeaders.insert(HeaderName(bytes: slice(trimmedName))).inserted {
                // Echo the name only when it cannot be a seed, like every other field in an error.
                throw error(line.number, .duplicateHeader(echoable(slice(trimmedName)) ?? "(a long name)"))
            }
            if equals(trimmedName, "Key-ID") {
                keyID = (valueRange, line.number)
            } else if equals(trimmedName, "Version") {
                version = valueRange
            }  // Go's PEM reader keeps unknown headers; so do we, ignoring them.
            index += 1
        }

        // Body: base64 lines up to the END line.
        let bodyStart = index
        var endIndex: Int?
        while index < lines.count {
            if hasPrefix(lines[index], "-----") {
                endIndex = index
                break
            }
            index += 1
        }
        guard let endIndex else { throw error(beginLine.number, .unterminatedBlock(type: type)) }
        let endLine = lines[endIndex]
        guard equals(endLine.range, "-----END \(type)-----") else {
            throw error(endLine.number, .mismatchedEnd(begin: type, end: echoableType(endLine.range)))
        }

        if format == .mmr {
            guard let version else { throw error(beginLine.number, .missingVersionHeader) }
            guard equals(version, "1") else { throw error(beginLine.number, .unsupportedVersionHeader(echoable(slice(version)))) }
        }
        guard let keyID else { throw error(beginLine.number, .missingKeyID) }
        // Checked on its bytes, like a Synapse version; it becomes a String only once the body
        // has passed as the seed (below), so a seed in the Key-ID of a bad block never does.
        let idBytes = slice(keyID.value)
        let prefixLength = KeyID.algorithm.utf8.count + 1
        guard idBytes.count > prefixLength, equals(keyID.value.lowerBound..<(keyID.value.lowerBound + prefixLength), KeyID.algorithm + ":"),
            KeyID.isValidVersion(utf8: idBytes.dropFirst(prefixLength), maxLength: KeyFile.maxVersionLength)
        else {
            throw error(keyID.line, .keyIDNotEd25519(idBytes.count <= 64 ? echoableType(keyID.value) : nil))
        }
        let versionRange = (keyID.value.lowerBound + prefixLength)..<keyID.value.upperBound

        let seedRange: Range<Int>
        if bodyStart < endIndex {
            seedRange = lines[bodyStart].range.lowerBound..<lines[endIndex - 1].range.upperBound
        } else {
            seedRange = endLine.range.lowerBound..<endLine.range.lowerBound
        }
        try checkSeed(seedRange, line: bodyStart < endIndex ? lines[bodyStart].number : endLine.number)
        guard let id = checkedKeyID(version: versionRange) else {
            throw error(keyID.line, .keyIDNotEd25519(nil))  // not reached: checked on the bytes above
        }
        return (KeyFile.Entry(id: id, line: beginLine.number, seedText: seedRange), endIndex + 1)
    }
}

/// A PEM header name within the file's bytes, compared and hashed by those bytes.
private struct HeaderName: Hashable {
    let bytes: UnsafeRawBufferPointer

    static func == (a: HeaderName, b: HeaderName) -> Bool { a.bytes.elementsEqual(b.bytes) }
    func hash(into hasher: inout Hasher) { hasher.combine(bytes: bytes) }
}
