import SigilCore

/// Maps a STATS object onto metric families. Every section is optional: a daemon that predates
/// a section (or left it out to fit its frame, `truncated`) gets no series for it. Figures that
/// STATS breaks down by listener are exposed per listener when it does, and without the
/// `listener` label when only process-wide totals exist: summing over the label gives the same
/// answer either way, and no figure is counted twice.
struct MetricsBuilder {
    var reader = StatsReader()
    private(set) var families: [MetricFamily] = []

    mutating func build(root: JSONObject, keys listing: KeyListing?, version: String?) {
        var up = SigilMetrics.upFamily
        up.add([], 1)
        families.append(up)
        if let version {
            var build = MetricFamily("sigil_build", .info, help: "The running sigild's version.")
            build.add([("version", version)], "1")
            families.append(build)
        }
        gauge(
            "sigil_uptime_seconds", unit: "seconds", help: "Time since sigild started.",
            reader.integer(root, "uptime_ms", at: "").map { ExpositionWriter.decimal($0, scale: 3) })
        gauge(
            "sigil_requests_in_flight", help: "Requests being handled (including queued batch work).",
            reader.integer(root, "in_flight", at: "").map(String.init))
        gauge(
            "sigil_event_loops", help: "Event loops serving connections.",
            reader.integer(root, "event_loops", at: "").map(String.init))

        let listeners = reader.objects(reader.object(root, "listeners", at: ""), at: "listeners")
        requestFamilies(root: root, listeners: listeners)
        connectionFamilies(root: root, listeners: listeners)
        refusalFamily(listeners: listeners)
        latencyFamily(root: root)

        counter("sigil_received_bytes", unit: "bytes", help: "Bytes read from clients.", reader.integer(root, "bytes_in", at: ""))
        counter("sigil_sent_bytes", unit: "bytes", help: "Bytes written to clients.", reader.integer(root, "bytes_out", at: ""))

        reloadFamilies(root: root)
        keyFamilies(root: root, listing: listing)

        gauge(
            "sigil_memory_locked", help: "1 if the key memory is locked into RAM (mlock), else 0.",
            reader.bool(root, "memory_locked", at: "").map { $0 ? "1" : "0" })
        gauge(
            "sigil_locked_memory_bytes", unit: "bytes", help: "Bytes of key memory locked into RAM.",
            reader.integer(root, "locked_bytes", at: "").map(String.init))
        gauge(
            "sigil_resident_memory_bytes", unit: "bytes", help: "sigild's resident set size.",
            reader.integer(root, "rss_bytes", at: "").map(String.init))

        let audit = reader.object(root, "audit", at: "")
        gauge(
            "sigil_audit_enabled", help: "1 if the audit trail is on, else 0.",
            reader.bool(audit, "enabled", at: "audit.").map { $0 ? "1" : "0" })
        counter("sigil_audit_records", help: "Audit records written.", reader.integer(audit, "records", at: "audit."))
        counter(
            "sigil_audit_dropped_records", help: "Audit records lost (the trail could not keep up or could not be written).",
            reader.integer(audit, "dropped", at: "audit."))
        counter(
            "sigil_audit_denied_unrecorded",
            help: "Refused signing requests past the audit trail's refusal budget: counted in summary records, not one by one.",
            reader.integer(audit, "denied_unrecorded", at: "audit."))

        let truncated = reader.bool(root, "truncated", at: "") ?? false
        gauge(
            "sigil_stats_truncated", help: "1 if sigild left optional STATS sections out to fit its reply, so some series are missing.",
            truncated ? "1" : "0")
    }

    // MARK: Requests

    private mutating func requestFamilies(root: JSONObject, listeners: [(key: String, value: JSONObject)]) {
        var requests = MetricFamily("sigil_requests", .counter, help: "Requests handled, by operation and listener.")
        var errors = MetricFamily(
            "sigil_request_errors", .counter, help: "Requests answered with an error status, by operation and listener.")
        var denied = MetricFamily("sigil_requests_denied", .counter, help: "Requests refused by the access rules (DENIED).")
        var busy = MetricFamily(
            "sigil_requests_busy", .counter,
            help: "Requests answered BUSY because too many large batches were in flight (the rate limit counts apart).")
        var limited = MetricFamily("sigil_requests_rate_limited", .counter, help: "Requests answered BUSY by the per-uid rate limit.")

        func operations(_ object: JSONObject?, at path: String, labels: [(String, String)]) {
            for (op, counts) in reader.objects(object, at: path) {
                let place = "\(path)\(StatsReader.subscriptText(op))."
                if let count = reader.integer(counts, "count", at: place) { requests.add([("operation", op)] + labels, count) }
                if let count = reader.integer(counts, "errors", at: place) { errors.add([("operation", op)] + labels, count) }
            }
        }
        func refusals(_ object: JSONObject, at path: String, labels: [(String, String)]) {
            if let count = reader.integer(object, "denied", at: path) { denied.add(labels, count) }
            if let count = reader.integer(object, "busy", at: path) { busy.add(labels, count) }
            if let count = reader.integer(object, "rate_limited", at: path) { limited.add(labels, count) }
        }

        if listeners.isEmpty {
            operations(reader.object(root, "requests", at: ""), at: "requests", labels: [])
            refusals(root, at: "", labels: [])
        } else {
            for (name, listener) in listeners {
                let path = "listeners\(StatsReader.subscriptText(name))."
                operations(reader.object(listener, "requests", at: path), at: path + "requests", labels: [("listener", name)])
                refusals(listener, at: path, labels: [("listener", name)])
            }
        }
        families += [requests, errors, denied, busy, limited]
    }

    private mutating func refusalFamily(listeners: [(key: String, value: JSONObject)]) {
        var refusals = MetricFamily(
            "sigil_refusals", .counter,
            help: "Denied requests and refused connections, by listener and caller uid (\"other\": uids past the 64 sigild tracks).")
        for (name, listener) in listeners {
            let path = "listeners\(StatsReader.subscriptText(name)).refusals_by_uid"
            guard let byUID = reader.object(listener, "refusals_by_uid", at: "listeners\(StatsReader.subscriptText(name)).") else {
                continue
            }
            for member in byUID {
                guard member.key == "other" || (!member.key.isEmpty && member.key.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }) else {
                    reader.note("STATS field \(path)\(StatsReader.subscriptText(member.key)): expected a uid or \"other\"")
                    continue
                }
                if let count = reader.integer(byUID, member.key, at: path + ".") {
                    refusals.add([("listener", name), ("uid", member.key)], count)
                }
            }
        }
        families.append(refusals)
    }

    // MARK: Connections

    private mutating func connectionFamilies(root: JSONObject, listeners: [(key: String, value: JSONObject)]) {
        var open = MetricFamily("sigil_connections_open", .gauge, help: "Client connections open now.")
        var accepted = MetricFamily("sigil_connections_accepted", .counter, help: "Client connections accepted.")
        var refused = MetricFamily(
            "sigil_connections_refused", .counter, help: "Client connections refused (connection limit, or no rule lets the caller in).")
        func add(_ connections: JSONObject?, at path: String, labels: [(String, String)]) {
            if let value = reader.integer(connections, "open", at: path) { open.add(labels, value) }
            if let value = reader.integer(connections, "total", at: path) { accepted.add(labels, value) }
            if let value = reader.integer(connections, "refused", at: path) { refused.add(labels, value) }
        }
        if listeners.isEmpty {
            add(reader.object(root, "connections", at: ""), at: "connections.", labels: [])
        } else {
            for (name, listener) in listeners {
                let path = "listeners\(StatsReader.subscriptText(name))."
                add(reader.object(listener, "connections", at: path), at: path + "connections.", labels: [("listener", name)])
            }
        }
        families += [open, accepted, refused]
    }

    // MARK: Latency

    /// STATS' latency histograms count microseconds in fixed buckets; Prometheus counts seconds,
    /// cumulatively. Each `le` bound is the microsecond bound moved six decimal places, exactly.
    private mutating func latencyFamily(root: JSONObject) {
        var family = MetricFamily(
            "sigil_request_duration_seconds", .histogram, unit: "seconds",
            help: "Time from sigild taking up a frame to its reply being ready (a batch frame counts once), by operation.")
        defer { families.append(family) }
        guard let latency = reader.object(root, "latency_us", at: "") else { return }
        guard let boundValues = reader.array(latency, "bounds", at: "latency_us.") else {
            reader.note("STATS field latency_us.bounds is missing; no latency histograms")
            return
        }
        var bounds: [Int64] = []
        for value in boundValues {
            guard case .integer(let bound) = value, bound > 0, bound > (bounds.last ?? 0) else {
                reader.note("STATS field latency_us.bounds: expected increasing positive integers; no latency histograms")
                return
            }
            bounds.append(bound)
        }
        let labels = bounds.map { ExpositionWriter.decimal($0, scale: 6) } + ["+Inf"]
        for (op, histogram) in reader.objects(reader.object(latency, "ops", at: "latency_us."), at: "latency_us.ops") {
            let path = "latency_us.ops\(StatsReader.subscriptText(op))."
            guard let countValues = reader.array(histogram, "counts", at: path), let sum = reader.integer(histogram, "sum", at: path) else {
                reader.note("STATS field \(path)counts or sum is missing; no histogram for \(op)")
                continue
            }
            var counts: [Int64] = []
            for value in countValues {
                guard case .integer(let count) = value, count >= 0 else { break }
                counts.append(count)
            }
            guard counts.count == countValues.count, counts.count == bounds.count + 1 else {
                reader.note(
                    "STATS field \(path)counts: expected \(bounds.count + 1) counts (one per bound and +Inf); no histogram for \(op)")
                continue
            }
            var running: Int64 = 0
            var buckets: [(le: String, cumulative: Int64)] = []
            for (le, count) in zip(labels, counts) {
                running += count
                buckets.append((le, running))
            }
            // The total of the buckets is the count that matches them; a daemon that read its
            // counters while a request finished could report a count one off.
            if let count = reader.integer(histogram, "count", at: path), count != running {
                reader.note("STATS field \(path)count is \(count) but its buckets hold \(running); using \(running)")
            }
            family.addHistogram([("operation", op)], buckets: buckets, sum: ExpositionWriter.decimal(sum, scale: 6))
        }
    }

    // MARK: Reloads

    private mutating func reloadFamilies(root: JSONObject) {
        let reloads = reader.object(root, "reloads", at: "")
        var results = MetricFamily("sigil_reloads", .counter, help: "Configuration reloads (SIGHUP), by result.")
        if let ok = reader.integer(reloads, "ok", at: "reloads.") { results.add([("result", "ok")], ok) }
        if let failed = reader.integer(reloads, "failed", at: "reloads.") { results.add([("result", "failed")], failed) }
        families.append(results)
        gauge(
            "sigil_last_reload_timestamp_seconds", unit: "seconds", help: "When the last reload finished, in Unix time (0: never).",
            reader.integer(reloads, "last_unix_ms", at: "reloads.").map { ExpositionWriter.decimal($0, scale: 3) })
        gauge(
            "sigil_last_reload_success",
            help: "1 if the last reload succeeded (or none has run), 0 if it failed and the previous configuration is still serving.",
            reader.bool(reloads, "last_ok", at: "reloads.").map { $0 ? "1" : "0" })
        gauge(
            "sigil_config_generation", help: "Configurations loaded since start (1 before any reload).",
            reader.integer(root, "config_generation", at: "").map(String.init))
    }

    // MARK: Keys

    /// Key IDs and states as labels (never key material): from LIST_KEYS when the caller may
    /// list keys, which also tells the signing key apart and gives retired keys' expiry; else
    /// from STATS' `keys`, which sigild includes only up to 100 servers.
    private mutating func keyFamilies(root: JSONObject, listing: KeyListing?) {
        gauge("sigil_servers", help: "Servers sigild holds keys for.", reader.integer(root, "server_count", at: "").map(String.init))
        gauge(
            "sigil_active_keys", help: "Active keys (published in verify_keys), over all servers.",
            reader.integer(root, "key_count", at: "").map(String.init))
        gauge(
            "sigil_retired_keys", help: "Retired keys (published in old_verify_keys), over all servers.",
            reader.integer(root, "retired_key_count", at: "").map(String.init))

        var info = MetricFamily("sigil_key", .info, help: "One series per key: its server, ID and state (signing, active or retired).")
        var expiry = MetricFamily(
            "sigil_key_expired_timestamp_seconds", .gauge, unit: "seconds",
            help: "When a retired key stopped being used (its expired_ts), in Unix time.")
        if let listing {
            for server in listing.servers {
                for key in server.keys {
                    let state: String
                    switch key.state {
                    case .signing: state = "signing"
                    case .active: state = "active"
                    case .retired: state = "retired"
                    }
                    info.add([("server", server.name), ("key_id", key.id), ("state", state)], "1")
                    if key.state == .retired {
                        expiry.add(
                            [("server", server.name), ("key_id", key.id)],
                            ExpositionWriter.decimal(Int64(clamping: key.expiredTS), scale: 3))
                    }
                }
            }
        } else {
            for (server, keys) in reader.objects(reader.object(root, "keys", at: ""), at: "keys") {
                let path = "keys\(StatsReader.subscriptText(server))."
                for state in ["active", "retired"] {
                    for id in reader.array(keys, state, at: path) ?? [] {
                        guard case .string(let id) = id else {
                            reader.note("STATS field \(path)\(state): expected key ID strings")
                            break
                        }
                        info.add([("server", server), ("key_id", id), ("state", state)], "1")
                    }
                }
            }
        }
        families += [info, expiry]
    }

    // MARK: Helpers

    private mutating func gauge(_ name: String, unit: String? = nil, help: String, _ value: String?) {
        var family = MetricFamily(name, .gauge, unit: unit, help: help)
        if let value { family.add([], value) }
        families.append(family)
    }

    private mutating func counter(_ name: String, unit: String? = nil, help: String, _ value: Int64?) {
        var family = MetricFamily(name, .counter, unit: unit, help: help)
        if let value { family.add([], value) }
        families.append(family)
    }
}
