import Logging
import SigilCore
import SigilPosix

@testable import SigilServer

/// The configurations the engine target runs under, built once: the limits are small so that
/// backlogs, offloaded batches, BUSY, backpressure and timeouts are all a few bytes away. Each
/// input picks one with its first byte. The keyring holds the spec's test key for `domain`,
/// loaded from a fixture (no file is read); in the first and the last setup also for
/// `m1.example` … `m7.example`, so that names are looked up in the name table and the engine
/// looks ahead at pipelined SIGN_REQUESTs (over four servers), while the other two keep the
/// small keyring's path.
struct EngineSetup {
    let state: ServingState
    let limits: ConnectionLimits
    let credentials: PeerCredentials

    static let uid: UInt32 = 4242

    static let all: [EngineSetup] = [
        // Everything allowed; a few frames per turn, small batches offloaded, two in flight.
        make(
            limits:
                "max_frame: 4096, max_batch: 16, max_in_flight: 2, frames_per_turn: 4, offload_batch_items: 3, max_pending_output: 64KiB, frame_timeout: 2s, idle_timeout: 10s, write_timeout: 5s",
            access: everything, moreServers: true),
        // The tightest: one frame per turn, one batch in flight, a signing rate limit.
        make(
            limits:
                "max_frame: 1024, max_batch: 4, max_in_flight: 1, frames_per_turn: 1, offload_batch_items: 2, max_pending_output: 64KiB, frame_timeout: 1s, idle_timeout: 0, write_timeout: 1s",
            access: everything, rateLimit: "{ per_second: 2, burst: 3 }"),
        // Narrow rules: SIGN_REQUEST only for GET under one prefix, PING and HELLO; the rest DENIED.
        make(
            limits:
                "max_frame: 2048, max_batch: 8, max_in_flight: 4, frames_per_turn: 2, offload_batch_items: 4, max_pending_output: 64KiB",
            access: """
                  - uid: \(uid)
                    operations: [hello, ping, sign_request]
                    servers: [domain]
                    methods: [GET]
                    uri_prefixes: [/_matrix/federation/v1/media/]
                """),
        // The defaults (64 KiB frames, 64 per turn, 16 in flight, 1 MiB of pending output).
        make(limits: "", access: everything, moreServers: true),
    ]

    /// The servers besides `domain` in the setups that have more.
    static let moreServerNames = (1...7).map { "m\($0).example" }

    static let everything = """
          - uid: \(uid)
            operations: [hello, ping, list_keys, sign_request, sign_json, sign_raw, verify, verify_json, verify_request, key_document, stats]
        """

    static func make(limits: String, access: String, rateLimit: String? = nil, moreServers: Bool = false) -> EngineSetup {
        let text = """
            listen:
              - name: main
                path: /nonexistent/fuzz.sock
            \(rateLimit.map { "    rate_limit: \($0)" } ?? "")
            servers:
              domain:
                keys: [fixture.key]
            memory_lock: warn
            access:
            \(access)
            \(limits.isEmpty ? "" : "limits: {\(limits)}")
            """
        do {
            let configuration = try ConfigLoader.parse(text, path: "fuzz.yaml")
            let file = try KeyFile(fixture: "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
            let names = ["domain"] + (moreServers ? moreServerNames : [])
            var builder = try Keyring.Builder(expectedKeys: names.count, lockPolicy: .warn)
            for name in names.sorted() { try builder.add(Keyring.Source(serverName: name, files: [file])) }
            let state = ServingState(
                generation: 1, keyring: builder.finish(), configuration: configuration, warnings: [], directoryServers: [])
            return EngineSetup(
                state: state, limits: ConnectionLimits(configuration.limits), credentials: PeerCredentials(pid: 4242, uid: uid, gid: uid))
        } catch {
            fatalError("engine fuzz setup: \(error)\n\(text)")
        }
    }

    /// The largest reply `length` the protocol allows (docs/PROTOCOL.md, "Reply sizes").
    var maxReplyLength: Int { 4 * Int(limits.maxFrameLength) + 1024 * limits.maxBatchItems }
}

/// Discards the engine's log lines (a fatal framing error logs one per input).
struct QuietLog {
    static let logger = Logger(label: "fuzz.engine", factory: { _ in SwiftLogNoOpLogHandler() })
}
