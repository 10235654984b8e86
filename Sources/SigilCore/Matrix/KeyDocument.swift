/// The body of `GET /_matrix/key/v2/server`: every active key in `verify_keys`, retired keys in
/// `old_verify_keys` with `expired_ts`, `valid_until_ts`, signed by every active key (MMR
/// refuses a response that any published key did not sign).
public enum KeyDocument {
    /// Servers must cap `valid_until_ts` at 7 days; MMR refuses lifetimes under 2 minutes; the
    /// spec asks origins not to serve responses expiring within the hour.
    public static let maxValidity: Int64 = 7 * 24 * 3600 * 1000
    public static let minValidity: Int64 = 3600 * 1000

    public static func object(for server: ServerKeys, validUntilTS: Int64) -> JSONObject {
        var verify = JSONObject()
        for key in server.activeKeys {
            verify[key.id.description] = ["key": .string(key.publicKey.base64)]
        }
        var old = JSONObject()
        for key in server.retiredKeys {
            old[key.id.description] = ["expired_ts": .integer(key.expiredTS), "key": .string(key.publicKey.base64)]
        }
        var document = JSONObject()
        document["old_verify_keys"] = .object(old)
        document["server_name"] = .string(server.serverName)
        document["valid_until_ts"] = .integer(validUntilTS)
        document["verify_keys"] = .object(verify)
        return JSONSigning.sign(document, serverName: server.serverName, keys: server.activeKeys)
    }

    /// The canonical bytes of the signed document.
    public static func build(for server: ServerKeys, validUntilTS: Int64) -> [UInt8] {
        object(for: server, validUntilTS: validUntilTS).canonicalBytes
    }
}
