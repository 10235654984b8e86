package sigil

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

// TestSignRequestCostReport measures what an MMR worker pays per signed request, through the
// client against signing in-process with crypto/ed25519, and prints the ratios
// docs/BENCHMARKS.md reports. It is a measurement, not a check: it runs only when asked.
//
//	SIGILD=… SIGIL_BENCH_REPORT=1 go test -run SignRequestCostReport -v
//
// The two ways alternate, round after round, on the same machine in the same minutes, and each
// ratio is the median over the rounds of the ratio within a round: on a shared machine whose
// speed changes from minute to minute, that compares like with like.
func TestSignRequestCostReport(t *testing.T) {
	if os.Getenv("SIGIL_BENCH_REPORT") == "" {
		t.Skip("a measurement, run on demand: SIGIL_BENCH_REPORT=1")
	}
	const rounds = 7
	d := startDaemon(t, daemonConfig{})
	metric := func(r testing.BenchmarkResult, name string) float64 { return r.Extra[name] }
	median := func(xs []float64) float64 {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	var rtt []float64
	for i := 0; i < rounds; i++ {
		r := testing.Benchmark(func(b *testing.B) { benchPing(b, d) })
		rtt = append(rtt, metric(r, "latency-ns"))
	}
	var out strings.Builder
	fmt.Fprintf(&out, "sigild: %s\n", d.binary)
	fmt.Fprintf(&out, "round trip (PING, one caller): %.1f µs\n", median(rtt)/1000)
	fmt.Fprintf(&out, "%-8s | %-12s | %-12s | %-12s | %-14s | %-22s | %-14s | %-14s\n",
		"callers", "in-process", "worker", "daemon", "worker/in-proc", "(worker+daemon)/in-proc", "lat. in-proc", "lat. sigild")
	for _, callers := range benchCallers {
		callers := callers
		var inCPU, wCPU, dCPU, rWorker, rTotal, inLat, sLat []float64
		for i := 0; i < rounds; i++ {
			in := testing.Benchmark(func(b *testing.B) { benchInProcess(b, callers) })
			s := testing.Benchmark(func(b *testing.B) { benchSigild(b, d, callers) })
			ic, wc, dc := metric(in, "worker-cpu-ns/op"), metric(s, "worker-cpu-ns/op"), metric(s, "daemon-cpu-ns/op")
			inCPU, wCPU, dCPU = append(inCPU, ic), append(wCPU, wc), append(dCPU, dc)
			rWorker, rTotal = append(rWorker, wc/ic), append(rTotal, (wc+dc)/ic)
			inLat, sLat = append(inLat, metric(in, "latency-ns")), append(sLat, metric(s, "latency-ns"))
		}
		fmt.Fprintf(&out, "%-8d | %9.1f µs | %9.1f µs | %9.1f µs | %14.2f | %23.2f | %11.1f µs | %11.1f µs\n",
			callers, median(inCPU)/1000, median(wCPU)/1000, median(dCPU)/1000, median(rWorker), median(rTotal),
			median(inLat)/1000, median(sLat)/1000)
	}
	t.Log("\n" + out.String())
}
