public import SigilCore

/// sigild's STATS (and, where allowed, its key listing) as Prometheus metrics.
///
/// Written by hand rather than through swift-prometheus: STATS is a snapshot of counters and of
/// histograms the daemon has already bucketed, and a client registry can only be fed increments
/// and single observations (its histograms cannot be given bucket counts), knows only the classic
/// text format, and would add swift-metrics and swift-atomics to the CLI for a page of text.
public enum SigilMetrics {
    /// What one scrape gathered from the daemon.
    public struct Scrape: Sendable {
        /// The STATS answer, as the daemon sent it.
        public var stats: [UInt8]
        /// The LIST_KEYS answer, if the caller may list keys; the key series then come from it
        /// (with the signing key marked, and retired keys' expiry); otherwise from STATS' `keys`.
        public var keys: KeyListing?
        /// HELLO's daemon version, if known.
        public var daemonVersion: String?

        public init(stats: [UInt8], keys: KeyListing? = nil, daemonVersion: String? = nil) {
            self.stats = stats
            self.keys = keys
            self.daemonVersion = daemonVersion
        }
    }

    public struct Rendered: Sendable {
        public var text: String
        /// Fields that were present but could not be used; the series they would have fed are
        /// left out. Empty when STATS had the expected shape.
        public var problems: [String]
    }

    /// Why a scrape yielded no figures at all.
    public struct Unreadable: Error, CustomStringConvertible {
        public let description: String
    }

    /// The output when the daemon could not be reached or read: `sigil_up 0` and nothing else,
    /// so that alerts on `sigil_up == 0` fire and no stale figure is mistaken for a live one.
    public static func renderDown(format: ExpositionFormat) -> String {
        var up = upFamily
        up.add([], 0)
        return ExpositionWriter.render([up], format: format)
    }

    public static func render(_ scrape: Scrape, format: ExpositionFormat) throws(Unreadable) -> Rendered {
        let value: JSONValue
        do {
            value = try JSONValue(parsing: scrape.stats, limits: JSONLimits(maxDepth: 16, maxBytes: 16 << 20))
        } catch {
            throw Unreadable(description: "the STATS answer is not valid JSON: \(error)")
        }
        guard case .object(let root) = value else { throw Unreadable(description: "the STATS answer is not a JSON object") }
        var builder = MetricsBuilder()
        builder.build(root: root, keys: scrape.keys, version: scrape.daemonVersion)
        return Rendered(text: ExpositionWriter.render(builder.families, format: format), problems: builder.reader.problems)
    }

    static var upFamily: MetricFamily {
        MetricFamily("sigil_up", .gauge, help: "1 if sigild answered STATS on its socket, 0 if it could not be reached or read.")
    }
}
