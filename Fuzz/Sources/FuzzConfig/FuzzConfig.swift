import FuzzConfigChecks
import FuzzSupport

@_cdecl("FuzzConfig_main")
public func fuzzConfigMain(argc: Int32, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    fuzzMain(ConfigTextTarget.self, argc: argc, argv: argv)
}

/// `ConfigLoader.parse` on arbitrary text, as `ConfigLoader.load` would pass it (valid UTF-8
/// only: load refuses anything else first). See FuzzConfigStructured for documents that get
/// past YAML into the loader's own checks.
enum ConfigTextTarget: FuzzTarget {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard let text = String(validating: input, as: UTF8.self) else { return }
        ConfigChecks.check(text)
    }

    static var seeds: [[UInt8]] {
        let full = """
            servers:
              example.org:
                keys:
                  - credential:mmr.signing.key
                retired:
                  - { id: "ed25519:a_OLD1", key: "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI", expired_ts: 1700000000000 }
                key_document_validity: 1d
            listen:
              - name: mmr
                access:
                  - group: root
                    operations: [sign_request]
                    servers: [example.org]
                    methods: [GET]
                    uri_prefixes: [/_matrix/federation/v1/media/]
              - name: admin
                path: /run/sigil/admin.sock
                mode: "0600"
                access:
                  - user: root
                    operations: [ping, stats, list_keys, key_document, verify, verify_json, verify_request]
              - name: fd
                fd: 3
            access:
              - uid: 0
                gid: 0
            limits:
              max_frame: 64KiB
              max_batch: 256
              max_in_flight: 16
              max_connections: 4096
              frames_per_turn: 64
              offload_batch_items: 16
              idle_timeout: 1h
              frame_timeout: 10s
              drain_timeout: 10s
              max_pending_output: 1MiB
              write_timeout: 1m
            memory_lock: require
            log_level: info
            workers: 0

            """
        let texts = [
            full,
            "servers:\n  example.org:\n    keys: /etc/sigil/a.key\n",
            "servers: {example.org: {keys: [a.key, b.key]}}\nlimits: {max_frame: 1M, max_pending_output: 65536}\n",
            "servers:\n  example.org:\n    keys: [a]\nlimits:\n  max_frame: 16M\n",
            "oops: [", "", "---\n...\n", "servers:\n  \"bad name\":\n    keys: [a]\n", "servers: &a\n  x: *a\n",
        ]
        return texts.map { Array($0.utf8) }
    }
}
