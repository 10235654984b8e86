/// STATS answers as the daemon sends them, for the formatter's tests.
enum StatsSamples {
    static let bounds = "[5,10,25,50,100,250,500,1000,2500,5000,10000,25000,50000,100000,250000,500000,1000000]"

    /// Zeros for every operation, as sigild lists them.
    static func operations(_ overrides: [String: (Int, Int)] = [:]) -> String {
        let names = [
            "hello", "ping", "list_keys", "sign_request", "sign_json", "sign_raw", "verify", "verify_json",
            "verify_request", "key_document", "stats",
        ]
        return "{"
            + names.map { name in
                let (count, errors) = overrides[name] ?? (0, 0)
                return "\"\(name)\":{\"count\":\(count),\"errors\":\(errors)}"
            }.joined(separator: ",") + "}"
    }

    /// Every section of the schema in docs/PROTOCOL.md (protocol-changes item 3), two listeners.
    static let full = """
        {
          "uptime_ms": 93784005,
          "connections": {"open": 3, "total": 120, "refused": 4},
          "in_flight": 2,
          "requests": \(operations(["sign_request": (1000, 7), "stats": (12, 0), "ping": (5, 0)])),
          "requests_total": 1017,
          "denied": 6, "busy": 2, "rate_limited": 1,
          "bytes_in": 123456, "bytes_out": 654321,
          "keys": {"example.org": {"active": ["ed25519:a_new1", "ed25519:mmr2"], "retired": ["ed25519:a_old1"]}},
          "key_count": 2, "retired_key_count": 1, "server_count": 1,
          "memory_locked": true, "locked_bytes": 16384,
          "config_generation": 3,
          "reloads": {"ok": 2, "failed": 1, "last_error": "/etc/sigil/sigild.yaml:4:3: unexpected key", "last_unix_ms": 1767225600123, "last_ok": false},
          "event_loops": 2, "rss_bytes": 7864320,
          "listeners": {
            "mmr": {
              "connections": {"open": 2, "total": 100, "refused": 3},
              "requests": \(operations(["sign_request": (1000, 7)])),
              "denied": 5, "busy": 2, "rate_limited": 1,
              "refusals_by_uid": {"0": 3, "998": 4, "other": 1}
            },
            "admin": {
              "connections": {"open": 1, "total": 20, "refused": 1},
              "requests": \(operations(["stats": (12, 0), "ping": (5, 0)])),
              "denied": 1, "busy": 0, "rate_limited": 0,
              "refusals_by_uid": {"1000": 2}
            }
          },
          "latency_us": {
            "bounds": \(bounds),
            "ops": {
              "sign_request": {"counts": [0,0,10,500,400,60,20,5,3,1,1,0,0,0,0,0,0,0], "sum": 61234, "count": 1000},
              "stats": {"counts": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,12], "sum": 14000000, "count": 12}
            }
          },
          "audit": {"enabled": true, "records": 1017, "dropped": 0, "denied_unrecorded": 42}
        }
        """

    /// What sigild on main sends before the additions: no listeners, latency, audit or locked bytes.
    static let current = """
        {"bytes_in":420,"bytes_out":1337,"busy":0,"config_generation":1,"connections":{"open":1,"refused":0,"total":4},\
        "denied":1,"event_loops":2,"in_flight":0,"key_count":1,\
        "keys":{"domain":{"active":["ed25519:1"],"retired":[]}},"memory_locked":false,\
        "reloads":{"failed":0,"ok":0},"requests":\(operations(["ping": (3, 0), "stats": (1, 0), "sign_json": (1, 1)])),\
        "requests_total":5,"rss_bytes":8000000,"uptime_ms":1500}
        """

    /// A daemon with more than 100 servers: no `keys`, and optional sections left out to fit.
    static let truncated = """
        {"uptime_ms": 10, "connections": {"open": 0, "total": 0, "refused": 0}, "in_flight": 0,
         "requests": \(operations()), "requests_total": 0, "denied": 0, "busy": 0, "rate_limited": 0,
         "bytes_in": 0, "bytes_out": 0, "key_count": 250, "retired_key_count": 0, "server_count": 250,
         "memory_locked": true, "locked_bytes": 65536, "config_generation": 1,
         "reloads": {"ok": 0, "failed": 0, "last_unix_ms": 0, "last_ok": true},
         "event_loops": 1, "rss_bytes": 1, "truncated": true}
        """
}
