/// The text formats Prometheus scrapes: the classic text format (version 0.0.4, the only one
/// node_exporter's textfile collector reads) and OpenMetrics 1.0.
public enum ExpositionFormat: String, Sendable, CaseIterable {
    case prometheus
    case openMetrics = "openmetrics"
}

/// One metric family: its samples are written together, under one TYPE and HELP.
struct MetricFamily {
    enum Kind {
        case counter, gauge, histogram
        /// OpenMetrics' info type; a gauge whose name ends in `_info` in the classic format.
        case info
    }

    struct Sample {
        /// Appended to the family name: `_total`, `_bucket`, `_sum`, `_count`, `_info`, or "".
        var suffix: String
        var labels: [(name: String, value: String)]
        var value: String
    }

    /// The name without a type suffix (`sigil_requests` for `sigil_requests_total`).
    let name: String
    let kind: Kind
    let help: String
    /// OpenMetrics' UNIT; the name must end in `_` + unit.
    let unit: String?
    private(set) var samples: [Sample] = []

    init(_ name: String, _ kind: Kind, unit: String? = nil, help: String) {
        precondition(unit.map { name.hasSuffix("_" + $0) } ?? true, "\(name) must end in its unit")
        self.name = name
        self.kind = kind
        self.unit = unit
        self.help = help
    }

    var isEmpty: Bool { samples.isEmpty }

    /// A counter's, gauge's or info's one sample per label set.
    mutating func add(_ labels: [(String, String)] = [], _ value: String) {
        let suffix: String
        switch kind {
        case .counter: suffix = "_total"
        case .info: suffix = "_info"
        case .gauge: suffix = ""
        case .histogram: preconditionFailure("histograms are added bucket by bucket")
        }
        samples.append(Sample(suffix: suffix, labels: labels.map { (name: $0.0, value: $0.1) }, value: value))
    }

    mutating func add(_ labels: [(String, String)] = [], _ value: Int64) {
        add(labels, String(value))
    }

    /// A histogram's series for one label set, from cumulative counts per upper bound (given
    /// as exact decimal strings, `+Inf` last).
    mutating func addHistogram(_ labels: [(String, String)], buckets: [(le: String, cumulative: Int64)], sum: String) {
        precondition(kind == .histogram && buckets.last?.le == "+Inf")
        let base = labels.map { (name: $0.0, value: $0.1) }
        for bucket in buckets {
            samples.append(Sample(suffix: "_bucket", labels: base + [(name: "le", value: bucket.le)], value: String(bucket.cumulative)))
        }
        samples.append(Sample(suffix: "_sum", labels: base, value: sum))
        samples.append(Sample(suffix: "_count", labels: base, value: String(buckets.last!.cumulative)))
    }
}

/// Writes families in one of the two formats. The formats differ in how a family is named in
/// its TYPE line (the classic format names the sample: `sigil_requests_total`; OpenMetrics
/// names the family: `sigil_requests`), in info and UNIT support, in HELP escaping and in the
/// closing `# EOF`.
enum ExpositionWriter {
    static func render(_ families: [MetricFamily], format: ExpositionFormat) -> String {
        var out = ""
        for family in families where !family.isEmpty {
            switch format {
            case .prometheus:
                let typeName: String
                let kind: String
                switch family.kind {
                case .counter: (typeName, kind) = (family.name + "_total", "counter")
                case .gauge: (typeName, kind) = (family.name, "gauge")
                case .histogram: (typeName, kind) = (family.name, "histogram")
                case .info: (typeName, kind) = (family.name + "_info", "gauge")
                }
                out += "# HELP \(typeName) \(escapeHelp(family.help, format: format))\n"
                out += "# TYPE \(typeName) \(kind)\n"
            case .openMetrics:
                let kind: String
                switch family.kind {
                case .counter: kind = "counter"
                case .gauge: kind = "gauge"
                case .histogram: kind = "histogram"
                case .info: kind = "info"
                }
                out += "# TYPE \(family.name) \(kind)\n"
                if let unit = family.unit { out += "# UNIT \(family.name) \(unit)\n" }
                out += "# HELP \(family.name) \(escapeHelp(family.help, format: format))\n"
            }
            for sample in family.samples {
                out += family.name + sample.suffix
                if !sample.labels.isEmpty {
                    out += "{"
                    out += sample.labels.map { "\($0.name)=\"\(escapeLabelValue($0.value))\"" }.joined(separator: ",")
                    out += "}"
                }
                out += " \(sample.value)\n"
            }
        }
        if format == .openMetrics { out += "# EOF\n" }
        return out
    }

    /// Label values may hold anything (listener names come from the operator's YAML); both
    /// formats escape exactly backslash, double quote and line feed.
    static func escapeLabelValue(_ value: String) -> String {
        var out = ""
        out.unicodeScalars.reserveCapacity(value.unicodeScalars.count)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// The classic format escapes backslash and line feed in HELP; OpenMetrics also the quote.
    static func escapeHelp(_ text: String, format: ExpositionFormat) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\"" where format == .openMetrics: out += "\\\""
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// `value / 10^scale` as an exact decimal (no binary floating point on the way): STATS
    /// counts milliseconds and microseconds, Prometheus wants seconds.
    static func decimal(_ value: Int64, scale: Int) -> String {
        precondition(scale >= 0 && scale <= 18)
        var divisor: Int64 = 1
        for _ in 0..<scale { divisor *= 10 }
        let sign = value < 0 ? "-" : ""
        let magnitude = value.magnitude
        let whole = magnitude / UInt64(divisor)
        var fraction = magnitude % UInt64(divisor)
        guard fraction != 0 else { return sign + String(whole) }
        var digits = scale
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        let text = String(fraction)
        return sign + String(whole) + "." + String(repeating: "0", count: digits - text.count) + text
    }
}
