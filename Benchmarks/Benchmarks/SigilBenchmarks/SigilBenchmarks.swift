import Benchmark
import CSodiumBench
import SigilCore
import SigilPosix
import SigilServer

// Names use no spaces or slashes: ordo-one/benchmark 1.38.1 writes threshold files with those
// replaced but looks them up without, so such names could never be checked.
//
// Each pair is measured side by side in one run: a raw libsodium call, and the Sigil path that
// wraps the same call on the same bytes. Ratios between them are what docs/BENCHMARKS.md
// records; allocation counts are checked against Thresholds/ so a regression shows without
// relying on noisy wall-clock time.

/// The spec's test key, as the Sigil paths use it.
let specKeyFile = try! KeyFile(fixture: "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n")
let specKey = try! specKeyFile.loadKeys(lockPolicy: .warn)[0]

/// What an MMR worker has signed for every remote download.
let xMatrixObject = Array(
    #"{"destination":"example.org","method":"GET","origin":"domain","uri":"/_matrix/federation/v1/media/download/abcdefghijklmnopqrstuvwx"}"#
        .utf8)
/// The same object with its keys out of order and some whitespace: the canonicaliser's real work.
let xMatrixUnordered = Array(
    #"{"uri": "/_matrix/federation/v1/media/download/abcdefghijklmnopqrstuvwx", "origin": "domain", "method": "GET", "destination": "example.org"}"#
        .utf8)
let eventJSON = Array(
    #"{"auth_events":["$a:domain","$b:domain"],"content":{"body":"Here is the message content, long enough to be typical","msgtype":"m.text"},"depth":12,"hashes":{"sha256":"onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},"origin":"domain","origin_server_ts":1000000,"prev_events":["$c:domain"],"room_id":"!r:domain","sender":"@u:domain","type":"m.room.message","unsigned":{"age_ts":1000000}}"#
        .utf8)

/// 1,000 objects nested, each with its keys out of order around a 1,000-byte string (about
/// 1 MB): every level is re-laid in key order, the worst case for the canonicaliser's cost.
let deepUnsorted: [UInt8] = {
    let filler = String(repeating: "x", count: 1000)
    return Array((String(repeating: #"{"b":"\#(filler)","a":"#, count: 1000) + "0" + String(repeating: "}", count: 1000)).utf8)
}()
/// A `signatures` member of about 64 KiB (the default max_frame) whose keys come in descending
/// order: the tree parser once inserted each at the front, moving all the others.
let descendingKeys: [UInt8] = {
    let members = (0..<5000).reversed().map { #""k\#(String($0 + 10000))":0"# }
    return Array(("{" + members.joined(separator: ",") + "}").utf8)
}()

/// Explicit, so that the same documents are accepted with the old default (64) too.
let deepLimits = JSONLimits(maxDepth: 1024, maxBytes: 1 << 20)

/// A raw secret key in sodium_malloc memory for the baselines. Written once, then read-only
/// pages: safe to share.
struct RawKey: @unchecked Sendable {
    let secret: UnsafeMutableRawPointer
    var publicKey = [UInt8](repeating: 0, count: 32)

    init() {
        precondition(sodium_init() >= 0)
        secret = sodium_malloc(64)!
        // The same key as specKey, so both sides sign identical bytes with identical keys.
        var seed = [UInt8](repeating: 0, count: 32)
        _ = specKey.withSeed { source in seed.withUnsafeMutableBytes { $0.copyMemory(from: source) } }
        publicKey.withUnsafeMutableBytes { pk in
            seed.withUnsafeBytes {
                _ = crypto_sign_seed_keypair(
                    pk.baseAddress!.assumingMemoryBound(to: UInt8.self), secret.assumingMemoryBound(to: UInt8.self),
                    $0.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        sodium_memzero(&seed, 32)
        sodium_mprotect_readonly(secret)
    }
}

let rawKey = RawKey()

func signRequestFrame() -> [UInt8] {
    var writer = WireWriter()
    Request.signRequest(
        SignRequestParams(
            origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/media/download/abcdefghijklmnopqrstuvwx")
    )
    .encodeFrame(requestID: 7, into: &writer)
    return writer.bytes
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .instructions, .throughput],
        timeUnits: .nanoseconds,
        warmupIterations: 50,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1_000_000,
        // Counts are per 1,000 iterations (the scaling factor): a few stray allocations per
        // thousand (buffer growth at a sample's edge) are noise; one more per iteration is +1,000.
        thresholds: [.mallocCountTotal: BenchmarkThresholds(relative: [.p90: 5.0], absolute: [.p90: 20])])

    // MARK: X-Matrix: the MMR worker's request, against raw crypto_sign_detached of the same bytes.

    Benchmark("raw_crypto_sign_detached_xmatrix_object") { benchmark in
        var signature = [UInt8](repeating: 0, count: 64)
        signature.withUnsafeMutableBytes { sig in
            xMatrixObject.withUnsafeBytes { message in
                for _ in benchmark.scaledIterations {
                    crypto_sign_detached(
                        sig.baseAddress!.assumingMemoryBound(to: UInt8.self), nil,
                        message.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(message.count),
                        rawKey.secret.assumingMemoryBound(to: UInt8.self))
                    blackHole(sig[0])
                }
            }
        }
    }

    Benchmark("xmatrix_build_sign_format") { benchmark in
        let signer = XMatrixSigner()
        var header: [UInt8] = []
        header.reserveCapacity(256)
        var signature = [UInt8](repeating: 0, count: 64)
        let origin = Array("domain".utf8), destination = Array("example.org".utf8), method = Array("GET".utf8)
        let uri = Array("/_matrix/federation/v1/media/download/abcdefghijklmnopqrstuvwx".utf8)
        origin.withUnsafeBytes { o in
            destination.withUnsafeBytes { d in
                method.withUnsafeBytes { m in
                    uri.withUnsafeBytes { u in
                        signature.withUnsafeMutableBytes { sig in
                            for _ in benchmark.scaledIterations {
                                header.removeAll(keepingCapacity: true)
                                try! signer.sign(
                                    origin: o, destination: d, method: m, uri: u, content: nil, key: specKey, signature: sig.baseAddress!,
                                    header: &header)
                                blackHole(header.count)
                            }
                        }
                    }
                }
            }
        }
    }

    Benchmark("dispatch_sign_request_frame") { benchmark in
        let state = try ServingState.load(directConfiguration(), generation: 1)
        var server = DirectServer(state: state)
        let frame = signRequestFrame()
        var out = WireWriter(capacity: 4096)
        frame.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                out.bytes.removeAll(keepingCapacity: true)
                try! server.handle(bytes, into: &out)
                blackHole(out.bytes.count)
            }
        }
    }

    // MARK: Verify.

    Benchmark("raw_crypto_sign_verify_detached") { benchmark in
        let signature = specKey.sign(xMatrixObject).bytes
        signature.withUnsafeBytes { sig in
            xMatrixObject.withUnsafeBytes { message in
                rawKey.publicKey.withUnsafeBytes { pk in
                    for _ in benchmark.scaledIterations {
                        blackHole(
                            crypto_sign_verify_detached(
                                sig.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                message.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(message.count),
                                pk.baseAddress!.assumingMemoryBound(to: UInt8.self)))
                    }
                }
            }
        }
    }

    Benchmark("dispatch_verify_frame") { benchmark in
        let state = try ServingState.load(directConfiguration(), generation: 1)
        var server = DirectServer(state: state)
        var writer = WireWriter()
        Request.verify(
            VerifyParams(key: .publicKey(specKey.publicKey), message: xMatrixObject, signature: specKey.sign(xMatrixObject).bytes)
        )
        .encodeFrame(requestID: 9, into: &writer)
        var out = WireWriter(capacity: 4096)
        writer.bytes.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                out.bytes.removeAll(keepingCapacity: true)
                try! server.handle(bytes, into: &out)
                blackHole(out.bytes.count)
            }
        }
    }

    // MARK: Canonical JSON.

    Benchmark("canonical_json_xmatrix_object_unordered") { benchmark in
        xMatrixUnordered.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(try! CanonicalJSON.canonicalize(bytes)) }
        }
    }

    Benchmark("canonical_json_event_480_bytes") { benchmark in
        eventJSON.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(try! CanonicalJSON.canonicalize(bytes)) }
        }
    }

    // One document per iteration: each takes milliseconds. Their allocation counts move by a
    // few dozen from run to run (how often the output buffers grow in place), hence the wider
    // tolerance.
    let deep = Benchmark.Configuration(
        metrics: [.wallClock, .mallocCountTotal, .instructions], warmupIterations: 2, scalingFactor: .one,
        maxDuration: .seconds(3), maxIterations: 200,
        thresholds: [.mallocCountTotal: BenchmarkThresholds(relative: [.p90: 40.0], absolute: [.p90: 64])])

    Benchmark("canonical_json_deep_unsorted_1000_levels_1MB", configuration: deep) { benchmark in
        deepUnsorted.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(try! CanonicalJSON.canonicalize(bytes, limits: deepLimits)) }
        }
    }

    Benchmark("json_tree_parse_free_deep_unsorted_1000_levels_1MB", configuration: deep) { benchmark in
        deepUnsorted.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(try! JSONValue(parsing: bytes, limits: deepLimits)) }
        }
    }

    Benchmark("json_tree_parse_descending_keys_64KiB", configuration: deep) { benchmark in
        descendingKeys.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(try! JSONValue(parsing: bytes)) }
        }
    }

    Benchmark("sign_json_event") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! JSONSigning.sign(eventJSON, serverName: "domain", keys: [specKey])) }
    }

    // MARK: Wire codec and lookups.

    Benchmark("wire_encode_sign_request") { benchmark in
        let request = Request.signRequest(
            SignRequestParams(
                origin: "domain", destination: "example.org", uri: "/_matrix/federation/v1/media/download/abcdefghijklmnopqrstuvwx"))
        var writer = WireWriter(capacity: 256)
        for _ in benchmark.scaledIterations {
            writer.bytes.removeAll(keepingCapacity: true)
            request.encodeFrame(requestID: 1, into: &writer)
            blackHole(writer.bytes.count)
        }
    }

    Benchmark("wire_decode_sign_request") { benchmark in
        let frame = signRequestFrame()
        var decoder = FrameDecoder(maxLength: 65536)
        frame.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                decoder.append(bytes)
                guard case .frame(_, let range) = try! decoder.next() else { fatalError() }
                decoder.buffer.withUnsafeBytes { raw in
                    let fields = try! SignRequestFields(reading: UnsafeRawBufferPointer(rebasing: raw[range]))
                    blackHole(fields.uri.count)
                }
            }
        }
    }

    Benchmark("keyring_server_lookup") { benchmark in
        let keyring = try Keyring(sources: [Keyring.Source(serverName: "domain", files: [specKeyFile])], lockPolicy: .warn)
        let name = "domain"
        for _ in benchmark.scaledIterations { blackHole(keyring.server(name)?.signingKey.id) }
    }

    // MARK: Key files.

    for (name, text) in [
        (
            "synapse",
            "ed25519 a_RVfN wdSWsTNSOmMuNA1Ej6JUyeNbiBEt5jexHmVs7mHKZVc\ned25519 IZJY6A dvA8xfimUqog15zY6n5uRfVHb/pQ0sw9jRORJslYsoI"
        ),
        (
            "mmr",
            "-----BEGIN MMR PRIVATE KEY-----\nKey-ID: ed25519:e5d0oC\nVersion: 1\n\nPJt0OaIImDJk8P/PDb4TNQHgI/1AA1C+AaQaABxAcgc=\n-----END MMR PRIVATE KEY-----\n"
        ),
        (
            "dendrite",
            "-----BEGIN MATRIX PRIVATE KEY-----\nKey-ID: ed25519:1Pu3u3\n\n1Pu3u3solToI2pTdsHA4wj05bANnzPwJoxPepw2he2s=\n-----END MATRIX PRIVATE KEY-----\n"
        ),
    ] {
        Benchmark("key_file_parse_\(name)") { benchmark in
            let bytes = Array(text.utf8)
            let buffer = try GuardedBuffer(count: bytes.count, lockPolicy: .warn)
            buffer.withUnsafeMutableBytes { $0.copyBytes(from: bytes) }
            for _ in benchmark.scaledIterations { blackHole(try KeyFile(contents: buffer, path: "bench").entries.count) }
        }
    }
}

func directConfiguration() -> Configuration {
    let directory = "/tmp/sigil-benchmarks-\(Posix.pid)"
    try? Posix.makeDirectory(directory, mode: 0o700)
    let path = directory + "/spec.key"
    let contents = try! KeyFileWriter.encode([specKey], format: .synapse, lockPolicy: .warn)
    try! KeyFileIO.write(contents, to: path)
    return Configuration(
        listeners: [Configuration.Listener(name: "direct", path: nil)], servers: [Configuration.Server(name: "domain", keyFiles: [path])],
        access: [AccessRule(uid: Posix.effectiveUID, operations: Set(Opcode.allCases))], memoryLock: .warn)
}
