/// Why JSON could not be signed or checked.
public enum JSONSigningError: Error, Equatable, Sendable, CustomStringConvertible {
    case json(JSONError)
    case malformedSignatures(String)
    case noKeys

    public var description: String {
        switch self {
        case .json(let error): return "invalid JSON: \(error)"
        case .malformedSignatures(let why): return "malformed \"signatures\": \(why)"
        case .noKeys: return "no signing key"
        }
    }
}

/// Signing and checking JSON objects as the Matrix spec's appendix describes: `signatures` and
/// `unsigned` are set aside, the rest is canonicalised and signed, and the new signature is
/// merged into any existing ones before both are put back.
public enum JSONSigning {
    /// Signs a JSON object (raw bytes) with each of `keys` under `serverName`. Returns the signed
    /// object in canonical form.
    public static func sign(
        _ json: UnsafeRawBufferPointer, serverName: String, keys: [SigningKey], limits: JSONLimits = .default
    ) throws(JSONSigningError) -> [UInt8] {
        guard !keys.isEmpty else { throw .noKeys }
        let object: CanonicalObject
        do {
            object = try CanonicalJSON.canonicalObject(json, limits: limits)
        } catch {
            throw .json(error)
        }
        var signatures = try existingSignatures(object, limits: limits)
        let signable = object.bytes(excluding: ["signatures", "unsigned"])
        // existingSignatures has checked that every entry is an object.
        var mine = signatures[serverName]?.objectValue ?? JSONObject()
        signable.withUnsafeBytes { message in
            for key in keys { mine[key.id.description] = .string(key.sign(message).base64) }
        }
        signatures[serverName] = .object(mine)
        var out: [UInt8] = []
        out.reserveCapacity(object.bytes.count + 128 * keys.count)
        object.appendMembers(excluding: ["signatures"], extra: [("signatures", JSONValue.object(signatures).canonicalBytes)], to: &out)
        return out
    }

    public static func sign<C: Collection<UInt8>>(_ json: C, serverName: String, keys: [SigningKey], limits: JSONLimits = .default)
        throws(JSONSigningError) -> [UInt8]
    {
        try withBytes(json) { (raw) throws(JSONSigningError) in try sign(raw, serverName: serverName, keys: keys, limits: limits) }
    }

    /// Signs an object held as a tree.
    public static func sign(_ object: JSONObject, serverName: String, keys: [SigningKey]) -> JSONObject {
        var object = object
        let signatures = object.removeValue(forKey: "signatures")
        let unsigned = object.removeValue(forKey: "unsigned")
        let message = object.canonicalBytes
        var all = signatures?.objectValue ?? JSONObject()
        var mine = all[serverName]?.objectValue ?? JSONObject()
        message.withUnsafeBytes { bytes in
            for key in keys { mine[key.id.description] = .string(key.sign(bytes).base64) }
        }
        all[serverName] = .object(mine)
        object["signatures"] = .object(all)
        if let unsigned { object["unsigned"] = unsigned }
        return object
    }

    /// The outcome of checking one entity's signatures on a JSON object.
    public struct Verification: Sendable, Equatable {
        /// Key IDs whose signature checked out.
        public var valid: [KeyID] = []
        /// Key IDs whose signature was present but wrong (or not base64, or not 64 bytes).
        public var invalid: [KeyID] = []
        /// Key IDs we were given that did not sign.
        public var missing: [KeyID] = []

        /// At least one good signature from the given keys, and no bad one.
        public var isValid: Bool { !valid.isEmpty && invalid.isEmpty }
    }

    /// Checks `serverName`'s signatures on a JSON object with the given public keys. Signatures
    /// by keys not given (or of other algorithms) are ignored, as the spec says.
    public static func verify(
        _ json: UnsafeRawBufferPointer, serverName: String, publicKeys: [KeyID: PublicKey], limits: JSONLimits = .default
    ) throws(JSONSigningError) -> Verification {
        let object: CanonicalObject
        do {
            object = try CanonicalJSON.canonicalObject(json, limits: limits)
        } catch {
            throw .json(error)
        }
        let signatures = try existingSignatures(object, limits: limits)
        let mine = signatures[serverName]?.objectValue ?? JSONObject()
        let signable = object.bytes(excluding: ["signatures", "unsigned"])
        var result = Verification()
        signable.withUnsafeBytes { message in
            for (id, publicKey) in publicKeys.sorted(by: { $0.key < $1.key }) {
                guard let value = mine[id.description] else {
                    result.missing.append(id)
                    continue
                }
                guard let text = value.stringValue, let signature = Base64.decode(text), signature.count == Ed25519.signatureBytes else {
                    result.invalid.append(id)
                    continue
                }
                let ok = signature.withUnsafeBytes { publicKey.verify(signature: $0, message: message) }
                if ok { result.valid.append(id) } else { result.invalid.append(id) }
            }
        }
        return result
    }

    /// The same, also with retired keys: a retired key's signature counts only on an object
    /// whose `origin_server_ts` is an integer below the key's `expired_ts` (it was made while
    /// the key was current); any other signature by it is reported invalid.
    public static func verify(
        _ json: UnsafeRawBufferPointer, serverName: String, publicKeys: [KeyID: PublicKey],
        retiredKeys: [KeyID: (publicKey: PublicKey, expiredTS: Int64)], limits: JSONLimits = .default
    ) throws(JSONSigningError) -> Verification {
        var current = try verify(json, serverName: serverName, publicKeys: publicKeys, limits: limits)
        guard !retiredKeys.isEmpty else { return current }
        let object: CanonicalObject
        do {
            object = try CanonicalJSON.canonicalObject(json, limits: limits)
        } catch {
            throw .json(error)
        }
        let timestamp: Int64? = object.member("origin_server_ts").flatMap { member in
            Int64(String(decoding: object.bytes[member.valueRange], as: UTF8.self))
        }
        var inTime: [KeyID: PublicKey] = [:]
        var late: [KeyID: PublicKey] = [:]
        for (id, key) in retiredKeys {
            if let timestamp, timestamp < key.expiredTS { inTime[id] = key.publicKey } else { late[id] = key.publicKey }
        }
        let retired = try verify(json, serverName: serverName, publicKeys: inTime, limits: limits)
        let expired = try verify(json, serverName: serverName, publicKeys: late, limits: limits)
        current.valid += retired.valid
        current.invalid += retired.invalid + expired.valid + expired.invalid
        current.missing += retired.missing + expired.missing
        current.valid.sort()
        current.invalid.sort()
        current.missing.sort()
        return current
    }

    public static func verify<C: Collection<UInt8>>(
        _ json: C, serverName: String, publicKeys: [KeyID: PublicKey], limits: JSONLimits = .default
    ) throws(JSONSigningError) -> Verification {
        try withBytes(json) { (raw) throws(JSONSigningError) in
            try verify(raw, serverName: serverName, publicKeys: publicKeys, limits: limits)
        }
    }

    public static func verify<C: Collection<UInt8>>(
        _ json: C, serverName: String, publicKeys: [KeyID: PublicKey], retiredKeys: [KeyID: (publicKey: PublicKey, expiredTS: Int64)],
        limits: JSONLimits = .default
    ) throws(JSONSigningError) -> Verification {
        try withBytes(json) { (raw) throws(JSONSigningError) in
            try verify(raw, serverName: serverName, publicKeys: publicKeys, retiredKeys: retiredKeys, limits: limits)
        }
    }

    private static func existingSignatures(_ object: CanonicalObject, limits: JSONLimits) throws(JSONSigningError) -> JSONObject {
        guard let member = object.member("signatures") else { return JSONObject() }
        let value: JSONValue
        do {
            value = try withBytes(object.bytes[member.valueRange]) { (raw) throws(JSONError) in
                try JSONValue(parsing: raw, limits: limits)
            }
        } catch {
            throw .json(error)
        }
        guard let signatures = value.objectValue else { throw .malformedSignatures("not an object") }
        for (name, entry) in signatures where entry.objectValue == nil {
            throw .malformedSignatures("signatures.\(name) is not an object")
        }
        return signatures
    }
}
