import Foundation
import SigilClient
import SigilCore
import SigilPosix
import SigilTestSupport
import Synchronization
import Testing

/// The parent of every end-to-end daemon suite. Serialized: several of them measure latency or
/// send signals, and the machine has few cores, so they must not compete with one another.
/// Run them alone with `swift test --filter DaemonEndToEnd`.
@Suite("sigild end to end", .serialized)
struct DaemonEndToEnd {}

/// Helpers for the suites nested in `DaemonEndToEnd`, kept inside it so their names cannot clash
/// with other test files of this module.
extension DaemonEndToEnd {
    /// The spec vectors the suites check against (docs/PROTOCOL.md and the Matrix specification).
    enum SpecVectors {
        static let publicKey = PublicKey(base64: TestKeys.specPublicKey)!
        static let mediaURI = "/_matrix/federation/v1/media/download/abc123"
        static let mediaSignature = "UxgQZoKQVT7ekj4hjL7QlLRJwA7YaGP7mDBBXDITiGiVDxcGOep/LlSrlzfWGQ6GvgeMdydmBp2v9r+rHdKhDA"
        static let mediaHeader =
            #"X-Matrix origin="domain",destination="example.org",key="ed25519:1",sig="\#(mediaSignature)""#
        static let jsonObject = #"{"one": 1, "two": "Two"}"#
        static let jsonSignature = "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        static let keyDocumentSignature = "ewq/uPhfAzmWSa/3PRlr5Q0W59jG75Wtb6mzxIELuVRAxYMHOeMFue6fNXijZkIwLLembQ0+gl7DIkiUGcoUBg"

        /// The canonical JSON a SIGN_REQUEST without content signs (valid for uris needing no escapes).
        static func requestJSON(origin: String = "domain", destination: String = "example.org", method: String = "GET", uri: String) -> [UInt8] {
            Array(#"{"destination":"\#(destination)","method":"\#(method)","origin":"\#(origin)","uri":"\#(uri)"}"#.utf8)
        }

        /// Whether a SIGN_REQUEST answer is the spec key's signature over that request.
        static func isSpecSignature(_ signed: SignedRequest, uri: String, destination: String = "example.org", method: String = "GET") -> Bool {
            signed.keyID.description == "ed25519:1"
                && publicKey.verify(signature: signed.signature.bytes, message: requestJSON(destination: destination, method: method, uri: uri))
        }
    }

    /// A Synapse-format key file with a fresh random seed.
    static func randomKeyFile(version: String) -> String {
        var seed = [UInt8](repeating: 0, count: 32)
        for i in seed.indices { seed[i] = UInt8.random(in: 0...255) }
        return "ed25519 \(version) \(Base64.encode(seed))\n"
    }

    /// Replaces a file atomically (write a sibling, then rename), as an operator's tooling would.
    static func replaceFile(_ path: String, with contents: String, mode: Int = 0o600) {
        let temporary = path + ".new"
        _ = FileManager.default.createFile(atPath: temporary, contents: Data(contents.utf8), attributes: [.posixPermissions: mode])
        chmod(temporary, mode_t(mode))
        rename(temporary, path)
    }

    /// STATS, parsed.
    static func statsObject(_ client: SigilClient) throws -> StatsSnapshot {
        let bytes = try client.stats()
        return StatsSnapshot(object: try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]))
    }

    /// A STATS answer, parsed.
    struct StatsSnapshot {
        let object: [String: Any]

        subscript(key: String) -> Any? { object[key] }

        /// A nested integer, e.g. `int("reloads", "ok")`.
        func int(_ path: String...) -> Int? {
            var node: Any? = object
            for key in path { node = (node as? [String: Any])?[key] }
            return (node as? NSNumber)?.intValue
        }
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes.
    static func eventually(timeout: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    /// Runs `body(index)` on `count` real threads at once and waits for all of them (at most `timeout`).
    @discardableResult
    static func onThreads(_ count: Int, timeout: Double = 30, _ body: @escaping @Sendable (Int) -> Void) -> Bool {
        let group = DispatchGroup()
        for index in 0..<count {
            group.enter()
            Thread.detachNewThread {
                body(index)
                group.leave()
            }
        }
        return group.wait(timeout: .now() + timeout) == .success
    }

    /// Writes `bytes` to a socket from another thread, so a full socket buffer cannot deadlock a
    /// test that reads the answers on this one.
    static func sendInBackground(fd: Int32, _ bytes: [UInt8]) {
        Thread.detachNewThread {
            bytes.withUnsafeBytes { _ = try? Posix.sendAll(fd, $0) }
        }
    }

    /// What tests that change users need, and the commands that do it.
    enum Privileges {
        static let nobody: UInt32 = 65534
        static var isRoot: Bool { geteuid() == 0 }
        static var hasSetpriv: Bool { FileManager.default.isExecutableFile(atPath: setpriv) }
        static var hasPrlimit: Bool { FileManager.default.isExecutableFile(atPath: prlimit) }
        static let setpriv = "/usr/bin/setpriv"
        static let prlimit = "/usr/bin/prlimit"

        /// Runs what follows as uid/gid 65534 with no supplementary groups.
        static let asNobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        /// The same, with every capability gone (so CAP_IPC_LOCK cannot hide an mlock failure).
        static let asNobodyWithoutCapabilities = asNobody + ["--inh-caps=-all", "--bounding-set=-all"]

        /// Lets `uid` traverse and use a scratch directory (mkdtemp makes it 0700).
        static func openDirectory(_ directory: TemporaryDirectory, mode: Int = 0o755) {
            chmod(directory.path, mode_t(mode))
        }
    }

    /// A mutable box shared with background threads.
    final class Shared<Value: Sendable>: Sendable {
        private let value: Locked<Value>
        init(_ value: Value) { self.value = Locked(value) }
        func update<R>(_ body: (inout Value) -> R) -> R { value.withLock { body(&$0) } }
        var current: Value { value.withLock { $0 } }
    }

    /// A background thread that repeats `body` until stopped; bounded by `limit` seconds.
    final class BackgroundLoop: Sendable {
        private let stopFlag = Atomic<Bool>(false)
        private let done = DispatchSemaphore(value: 0)

        init(limit: Double = 30, _ body: @escaping @Sendable () -> Void) {
            Thread.detachNewThread { [self] in
                let deadline = Date().addingTimeInterval(limit)
                while !stopFlag.load(ordering: .relaxed) && Date() < deadline { body() }
                done.signal()
            }
        }

        /// Stops and waits for the current iteration to finish.
        func stop() {
            stopFlag.store(true, ordering: .relaxed)
            // Signal again after waiting, so stopping twice does not wait twice.
            if done.wait(timeout: .now() + 30) == .success { done.signal() }
        }
    }

    /// Runs a command to completion like `run`, and also gives its process ID (to find it in logs).
    static func runReportingPID(_ executable: String, _ arguments: [String], input: String? = nil, timeout: Double = 20) throws -> (result: ProcessResult, pid: Int32) {
        let result = try run(executable, arguments, input: input, timeout: timeout)
        return (result, result.pid)
    }
}
