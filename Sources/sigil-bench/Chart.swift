#if canImport(Glibc)
    import Glibc
#endif

/// A latency-versus-throughput chart as a self-contained SVG: one point per sweep step, p50
/// and p99 lines, and the raw in-process ceiling as a vertical line.
enum Chart {
    static func svg(title: String, points: [RunReport], rawCeiling: Double?) -> String {
        let width = 760.0
        let height = 460.0
        let left = 80.0, right = 30.0, top = 50.0, bottom = 60.0
        let plotW = width - left - right
        let plotH = height - top - bottom
        // Round the axis up to a whole number of 1, 2 or 5 × 10^n steps, so ticks read cleanly.
        let rawMax = max((points.map(\.throughput).max() ?? 1), rawCeiling ?? 0) * 1.05
        let magnitude = pow(10, floor(log10(rawMax / 5)))
        let step = [1.0, 2.0, 5.0, 10.0].map { $0 * magnitude }.first { rawMax / $0 <= 6 } ?? 10 * magnitude
        let ticks = Int((rawMax / step).rounded(.up))
        let maxX = step * Double(ticks)
        let latencies = points.flatMap { [$0.p50, $0.p99] }.filter { $0 > 0 }
        let minY = max(1, (latencies.min() ?? 1) / 2)
        let maxY = (latencies.max() ?? 10) * 2
        func x(_ v: Double) -> Double { left + v / maxX * plotW }
        func y(_ v: Double) -> Double {
            let clamped = max(v, minY)
            return top + plotH - (log10(clamped) - log10(minY)) / (log10(maxY) - log10(minY)) * plotH
        }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(Int(width / 2))" y="24" text-anchor="middle" font-size="15">\(escape(title))</text>
            <line x1="\(left)" y1="\(top + plotH)" x2="\(left + plotW)" y2="\(top + plotH)" stroke="black"/>
            <line x1="\(left)" y1="\(top)" x2="\(left)" y2="\(top + plotH)" stroke="black"/>
            <text x="\(Int(left + plotW / 2))" y="\(Int(height - 18))" text-anchor="middle">throughput (requests/s)</text>
            <text x="18" y="\(Int(top + plotH / 2))" text-anchor="middle" transform="rotate(-90 18 \(Int(top + plotH / 2)))">latency (µs, log scale)</text>

            """
        for i in 0...ticks {
            let value = step * Double(i)
            svg +=
                "<text x=\"\(Int(x(value)))\" y=\"\(Int(top + plotH + 18))\" text-anchor=\"middle\">\(RunReport.format(value, decimals: 0))</text>\n"
        }
        var tick = pow(10, floor(log10(minY)))
        while tick <= maxY {
            if tick >= minY {
                svg += "<line x1=\"\(left)\" y1=\"\(y(tick))\" x2=\"\(left + plotW)\" y2=\"\(y(tick))\" stroke=\"#ddd\"/>"
                svg += "<text x=\"\(left - 6)\" y=\"\(y(tick) + 4)\" text-anchor=\"end\">\(RunReport.format(tick, decimals: 0))</text>\n"
            }
            tick *= 10
        }
        if let rawCeiling {
            svg +=
                "<line x1=\"\(x(rawCeiling))\" y1=\"\(top)\" x2=\"\(x(rawCeiling))\" y2=\"\(top + plotH)\" stroke=\"#999\" stroke-dasharray=\"6 4\"/>"
            svg += "<text x=\"\(x(rawCeiling) - 4)\" y=\"\(top + 14)\" text-anchor=\"end\" fill=\"#666\">raw libsodium, same cores</text>\n"
        }
        for (series, color, value) in [("p50", "#1f77b4", \RunReport.p50), ("p99", "#d62728", \RunReport.p99)]
            as [(String, String, KeyPath<RunReport, Double>)]
        {
            let path = points.map { "\(x($0.throughput)),\(y($0[keyPath: value]))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
            for point in points {
                svg +=
                    "<circle cx=\"\(x(point.throughput))\" cy=\"\(y(point[keyPath: value]))\" r=\"3\" fill=\"\(color)\"><title>\(series) \(RunReport.format(point[keyPath: value], decimals: 1)) µs at \(RunReport.format(point.throughput, decimals: 0)) req/s (depth \(point.depth), rate \(point.rate.map { RunReport.format($0, decimals: 0) } ?? "closed"))</title></circle>\n"
            }
        }
        svg +=
            "<text x=\"\(left + 10)\" y=\"\(top + 14)\" fill=\"#1f77b4\">p50</text><text x=\"\(left + 40)\" y=\"\(top + 14)\" fill=\"#d62728\">p99</text>\n"
        svg += "</svg>\n"
        return svg
    }

    private static func escape(_ text: String) -> String {
        text.replacingAll("&", "&amp;").replacingAll("<", "&lt;").replacingAll(">", "&gt;")
    }
}

extension String {
    func replacingAll(_ target: String, _ replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
