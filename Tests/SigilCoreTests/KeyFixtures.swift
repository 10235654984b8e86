@testable import SigilCore

/// A key from MMR's tests, with its public key (research doc §1.9; second keys' public keys
/// computed independently with OpenSSL through Python `cryptography`).
struct KnownKey: Sendable, CustomStringConvertible {
    let version: String
    /// As it appears in the file (padded for PEM formats, unpadded for Synapse).
    let seedBase64: String
    let seedHex: String
    let publicKey: String

    var id: String { "ed25519:\(version)" }
    var description: String { id }
}

/// Key-file fixtures from matrix-media-repo's tests (research doc §1.2–§1.4, §1.9).
enum KeyFixtures {
    static let mmr1 = KnownKey(
        version: "e5d0oC", seedBase64: "PJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcgc=",
        seedHex: "3c9b7439a208983264f0ffcf0dbe133501e023fd400350be01a41a001c407207",
        publicKey: "TohekYXzLx7VzV8FtLQlI3XsSdPv1CjhVYY5rZmFCvU")
    static let mmr2 = KnownKey(
        version: "CjtBYA", seedBase64: "Xj/gSXAtSOTPG54sAWjm9BMVNX/Pa8ujIzwYbvLk7mM=",
        seedHex: "5e3fe049702d48e4cf1b9e2c0168e6f41315357fcf6bcba3233c186ef2e4ee63",
        publicKey: "YfuzHpJmxuojU1rl2GoXkuKjk+1vbqtiY1lG+CSW96k")
    static let dendrite1 = KnownKey(
        version: "1Pu3u3", seedBase64: "1Pu3u3solToI2pTdsHA4wj05bANnzPwJoxPepw2he2s=",
        seedHex: "d4fbb7bb7b28953a08da94ddb07038c23d396c0367ccfc09a313dea70da17b6b",
        publicKey: "uBatSEbBO6u7SNwvNwVFCD4XGaS0ikPI1PMgP5nlh3c")
    static let dendrite2 = KnownKey(
        version: "wBZqM2", seedBase64: "YOA4wuCQ+Wh7Vr+zmYSZpScnrgsrSAVtP89hn0zPO+s=",
        seedHex: "60e038c2e090f9687b56bfb3998499a52727ae0b2b48056d3fcf619f4ccf3beb",
        publicKey: "B0KYdGR+1f3uEVgcptgBqx+VK9m+7LdsX710v91mDhw")
    static let synapse1 = KnownKey(
        version: "a_RVfN", seedBase64: "wdSWsTNSOmMuNA1Ej6JUyeNbiBEt5jexHmVs7mHKZVc",
        seedHex: "c1d496b133523a632e340d448fa254c9e35b88112de637b11e656cee61ca6557",
        publicKey: "N1wtx39rXnuCsbjt3Yhrb0jkPI/zI5kphIV9ai1enW0")
    static let synapse2 = KnownKey(
        version: "IZJY6A", seedBase64: "dvA8xfimUqog15zY6n5uRfVHb/pQ0sw9jRORJslYsoI",
        seedHex: "76f03cc5f8a652aa20d79cd8ea7e6e45f5476ffa50d2cc3d8d139126c958b282",
        publicKey: "8VDzzZcjuBSBWahBGmhd5zz48WJInxeGeOpz5zVg5Vk")

    static func mmrBlock(_ key: KnownKey) -> String {
        "-----BEGIN MMR PRIVATE KEY-----\nKey-ID: \(key.id)\nVersion: 1\n\n\(key.seedBase64)\n-----END MMR PRIVATE KEY-----\n"
    }

    static func dendriteBlock(_ key: KnownKey) -> String {
        "-----BEGIN MATRIX PRIVATE KEY-----\nKey-ID: \(key.id)\n\n\(key.seedBase64)\n-----END MATRIX PRIVATE KEY-----\n"
    }

    static func synapseLine(_ key: KnownKey) -> String {
        "ed25519 \(key.version) \(key.seedBase64)"
    }

    /// MMR's single-key file: exactly 142 bytes.
    static let mmr = mmrBlock(mmr1)
    static let mmrMulti = mmrBlock(mmr1) + mmrBlock(mmr2)
    static let dendrite = dendriteBlock(dendrite1)
    static let dendriteMulti = dendriteBlock(dendrite1) + dendriteBlock(dendrite2)
    /// As MMR's encoder writes it: joined by LF, no trailing newline.
    static let synapse = synapseLine(synapse1) + "\n" + synapseLine(synapse2)

    /// The key-server bodies MMR's tests sign, and their signatures (§1.9).
    static let keyDocuments: [(key: KnownKey, validUntilTS: Int64, signature: String)] = [
        (mmr1, 1_700_979_986_627, "FRIe4KJ5kdnBXJgQCgC057YcHafHZmidNqYtSSWLU7QMgDu8uMHWcuPPack8zys1GeLdgS9d5YolmyOVQT9WDA"),
        (dendrite1, 1_701_584_534_175, "ya8NhdqVGZp8vhEgmtfIdm7gIEiLpcbp/0H2m+36nto/mXLDaGulkaQB/p7iftksiboTg/yK4BAzjWO0zFz7DQ"),
        (synapse1, 1_701_065_483_311, "hCcSfyiyMPZU93ysk+r62aC0nkbUKRgzwzRpPO85VUshILT64fg5mPykMUb/XU0G3Tr7/Qn8uTpdPkoZ3B+QDw"),
    ]

    /// The canonical key-server JSON MMR's tests sign for `key`.
    static func keyDocumentJSON(_ key: KnownKey, validUntilTS: Int64) -> String {
        #"{"old_verify_keys":{},"server_name":"localhost","valid_until_ts":\#(validUntilTS),"verify_keys":{"\#(key.id)":{"key":"\#(key.publicKey)"}}}"#
    }
}
