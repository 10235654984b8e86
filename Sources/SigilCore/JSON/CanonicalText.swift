/// Canonical JSON written piece by piece, for writers that know their keys and put them in
/// canonical order themselves (the audit trail writes a record per signature, and building a
/// `JSONObject` for each, then sorting and encoding it, cost more than the record was worth).
public enum CanonicalText {
    /// Appends `"…"`, escaped as canonical JSON escapes. Bytes that are not valid UTF-8 are
    /// written as `String(decoding:)` reads them (U+FFFD for each bad sequence).
    public static func appendString(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        if UTF8Validation.isValid(bytes) {
            CanonicalEncoding.appendString(bytes, to: &out)
        } else {
            CanonicalEncoding.appendString(String(decoding: bytes, as: UTF8.self), to: &out)
        }
    }

    public static func appendString(_ bytes: [UInt8], to out: inout [UInt8]) {
        bytes.withUnsafeBytes { appendString($0, to: &out) }
    }

    public static func appendString(_ string: String, to out: inout [UInt8]) {
        CanonicalEncoding.appendString(string, to: &out)
    }

    public static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
        CanonicalEncoding.appendInteger(value, to: &out)
    }
}
