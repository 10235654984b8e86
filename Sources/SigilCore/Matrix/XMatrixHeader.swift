/// One parsed `Authorization: X-Matrix …` header.
public struct XMatrixAuthorization: Sendable, Equatable {
    public let origin: String
    /// Absent in requests from servers older than spec v1.3.
    public let destination: String?
    public let keyID: KeyID
    public let signature: Signature
}

/// Why an X-Matrix header was refused; `offset` is the byte offset in the header value.
public struct XMatrixHeaderError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case notXMatrix
        case missingSpace
        case expectedName
        case expectedEquals
        case expectedComma
        case unterminatedQuote
        case invalidValue
        case duplicateParameter(String)
        case missingParameter(String)
        case invalidOrigin
        case invalidDestination
        case unsupportedKeyAlgorithm
        case invalidSignature
    }

    public let kind: Kind
    public let offset: Int

    public var description: String {
        let what: String
        switch kind {
        case .notXMatrix: what = "not an X-Matrix authorization"
        case .missingSpace: what = "expected a space after X-Matrix"
        case .expectedName: what = "expected a parameter name"
        case .expectedEquals: what = "expected '=' after the parameter name"
        case .expectedComma: what = "expected ',' between parameters"
        case .unterminatedQuote: what = "unterminated quoted value"
        case .invalidValue: what = "invalid parameter value"
        case .duplicateParameter(let name): what = "parameter '\(name)' appears twice"
        case .missingParameter(let name): what = "missing parameter '\(name)'"
        case .invalidOrigin: what = "origin is not a valid server name"
        case .invalidDestination: what = "destination is not a valid server name"
        case .unsupportedKeyAlgorithm: what = "key is not an ed25519 key ID"
        case .invalidSignature: what = "sig is not a base64 Ed25519 signature"
        }
        return "\(what) at byte \(offset)"
    }
}

extension XMatrixAuthorization {
    /// Parses a header value per the spec: the scheme (case-insensitive), one or more spaces, then
    /// `name=value` pairs separated by commas with optional spaces and tabs around them. Names
    /// are case-insensitive; values are quoted (with backslash escapes) or bare (colons allowed);
    /// unknown parameters are ignored; duplicates are refused. `signature` is accepted for `sig`.
    public init(parsing header: String) throws(XMatrixHeaderError) {
        let bytes = Array(header.utf8)
        var parser = HeaderParser(bytes: bytes)
        let params = try parser.parse()
        func required(_ name: String) throws(XMatrixHeaderError) -> (String, Int) {
            guard let value = params[name] else { throw XMatrixHeaderError(kind: .missingParameter(name), offset: bytes.count) }
            return value
        }
        let (origin, originAt) = try required("origin")
        guard ServerName.isValid(origin) else { throw XMatrixHeaderError(kind: .invalidOrigin, offset: originAt) }
        if let (destination, at) = params["destination"] {
            guard ServerName.isValid(destination) else { throw XMatrixHeaderError(kind: .invalidDestination, offset: at) }
            self.destination = destination
        } else {
            self.destination = nil
        }
        let (key, keyAt) = try required("key")
        guard let keyID = KeyID(key) else { throw XMatrixHeaderError(kind: .unsupportedKeyAlgorithm, offset: keyAt) }
        let (sig, sigAt) = try required("sig")
        guard let signature = Signature(base64: sig) else { throw XMatrixHeaderError(kind: .invalidSignature, offset: sigAt) }
        self.origin = origin
        self.keyID = keyID
        self.signature = signature
    }

    /// Whether a header value uses the X-Matrix scheme at all: its first token, compared without
    /// case. Other schemes (`Bearer`, `X-Matrix-Foo`) are not ours to judge.
    public static func usesXMatrixScheme(_ header: String) -> Bool {
        let token = header.utf8.drop { $0 == 0x20 || $0 == 0x09 }.prefix { $0 != 0x20 && $0 != 0x09 }
        return token.count == 8 && token.map { $0 | 0x20 }.elementsEqual("x-matrix".utf8)
    }
}

private struct HeaderParser {
    let bytes: [UInt8]
    var position = 0

    mutating func parse() throws(XMatrixHeaderError) -> [String: (String, Int)] {
        skip(while: { $0 == 0x20 || $0 == 0x09 })
        let scheme = Array("x-matrix".utf8)
        guard bytes.count >= position + scheme.count,
            bytes[position..<(position + scheme.count)].map({ $0 | 0x20 }).elementsEqual(scheme.map { $0 | 0x20 })
        else { throw XMatrixHeaderError(kind: .notXMatrix, offset: position) }
        position += scheme.count
        guard position < bytes.count, bytes[position] == 0x20 else {
            throw XMatrixHeaderError(kind: position < bytes.count ? .missingSpace : .missingParameter("origin"), offset: position)
        }
        skip(while: { $0 == 0x20 })
        var params: [String: (String, Int)] = [:]
        while true {
            let nameStart = position
            skip(while: XMatrixFields.isTokenChar)
            guard position > nameStart else { throw XMatrixHeaderError(kind: .expectedName, offset: position) }
            var name = String(decoding: bytes[nameStart..<position], as: UTF8.self).lowercased()
            if name == "signature" { name = "sig" }
            guard position < bytes.count, bytes[position] == UInt8(ascii: "=") else {
                throw XMatrixHeaderError(kind: .expectedEquals, offset: position)
            }
            position += 1
            let valueStart = position
            let value = try parseValue()
            if params[name] != nil { throw XMatrixHeaderError(kind: .duplicateParameter(name), offset: nameStart) }
            params[name] = (value, valueStart)
            skip(while: { $0 == 0x20 || $0 == 0x09 })
            if position == bytes.count { return params }
            guard bytes[position] == UInt8(ascii: ",") else { throw XMatrixHeaderError(kind: .expectedComma, offset: position) }
            position += 1
            skip(while: { $0 == 0x20 || $0 == 0x09 })
        }
    }

    mutating func parseValue() throws(XMatrixHeaderError) -> String {
        if position < bytes.count, bytes[position] == 0x22 {
            let start = position
            position += 1
            var value: [UInt8] = []
            while position < bytes.count {
                let byte = bytes[position]
                if byte == 0x22 {
                    position += 1
                    guard let text = String(validating: value, as: UTF8.self) else {
                        throw XMatrixHeaderError(kind: .invalidValue, offset: start)
                    }
                    return text
                }
                if byte == 0x5C {
                    position += 1
                    guard position < bytes.count else { break }
                }
                guard bytes[position] >= 0x20 || bytes[position] == 0x09, bytes[position] != 0x7F else {
                    throw XMatrixHeaderError(kind: .invalidValue, offset: position)
                }
                value.append(bytes[position])
                position += 1
            }
            throw XMatrixHeaderError(kind: .unterminatedQuote, offset: start)
        }
        // A bare value: a token, plus the colons the spec tells recipients to allow, and the
        // base64 characters senders use in sig without quoting it.
        let start = position
        skip(while: {
            XMatrixFields.isTokenChar($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "=")
                || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]")
        })
        guard position > start else { throw XMatrixHeaderError(kind: .invalidValue, offset: start) }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    mutating func skip(while predicate: (UInt8) -> Bool) {
        while position < bytes.count, predicate(bytes[position]) { position += 1 }
    }
}
