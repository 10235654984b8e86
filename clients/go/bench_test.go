package sigil

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// What an MMR worker pays per signed request, three ways of calling: one caller, 10 callers
// (MMR's default downloads.numWorkers), and 64 callers pipelined over the client's connections.
// "inprocess" is what MMR does today: build the object as a map, json.Marshal it (undoing the
// HTML escapes), ed25519.Sign with the key in the worker's memory, format the header. "sigild"
// is the same header through the client. Besides wall time, each run reports the worker's CPU
// per header (getrusage) and the daemon's (its threads' schedstat), measured over the same loop.
//
//	SIGILD=… go test -run '^$' -bench SignRequest -benchtime 20000x
//
// TestSignRequestCostReport (SIGIL_BENCH_REPORT=1) runs all of them in one process and prints
// the ratios docs/BENCHMARKS.md reports.
func BenchmarkSignRequest(b *testing.B) {
	for _, callers := range benchCallers {
		callers := callers
		b.Run(fmt.Sprintf("inprocess/callers=%d", callers), func(b *testing.B) { benchInProcess(b, callers) })
	}
	d := startDaemon(b, daemonConfig{})
	for _, callers := range benchCallers {
		callers := callers
		b.Run(fmt.Sprintf("sigild/callers=%d", callers), func(b *testing.B) { benchSigild(b, d, callers) })
	}
}

// BenchmarkRoundTrip is one PING at a time: the round trip a signed request adds to signing.
func BenchmarkRoundTrip(b *testing.B) {
	d := startDaemon(b, daemonConfig{})
	benchPing(b, d)
}

var benchCallers = []int{1, 10, 64}

// benchMaxConns is Options.MaxConns for the runs: the default, unless SIGIL_BENCH_MAXCONNS says.
func benchMaxConns() int {
	n, _ := strconv.Atoi(os.Getenv("SIGIL_BENCH_MAXCONNS"))
	return n
}

const benchDestination = "matrix.org"

func benchURIs(n int) []string {
	uris := make([]string, n)
	for i := range uris {
		uris[i] = "/_matrix/federation/v1/media/download/" + strconv.Itoa(1000000+i) + "AbCdEfGhIjKlMnOp"
	}
	return uris
}

// inProcessHeader is the in-process way, as MMR v1.3.8 signs: a map, encoding/json, and
// crypto/ed25519 with the key in memory.
func inProcessHeader(key ed25519.PrivateKey, keyVersion, origin, destination, method, uri string) (string, error) {
	obj := map[string]interface{}{"method": method, "uri": uri, "origin": origin, "destination": destination}
	canonical, err := json.Marshal(obj)
	if err != nil {
		return "", err
	}
	canonical = bytes.ReplaceAll(canonical, []byte(`\u003c`), []byte("<"))
	canonical = bytes.ReplaceAll(canonical, []byte(`\u003e`), []byte(">"))
	canonical = bytes.ReplaceAll(canonical, []byte(`\u0026`), []byte("&"))
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, canonical))
	return fmt.Sprintf(`X-Matrix origin="%s",destination="%s",key="ed25519:%s",sig="%s"`, origin, destination, keyVersion, sig), nil
}

func benchInProcess(b *testing.B, callers int) {
	key := specKey(b)
	uris := benchURIs(b.N)
	// The in-process way gives the very header sigild gives.
	if h, _ := inProcessHeader(key.private, "1", "domain", benchDestination, "GET", uris[0]); h != mustExpect(b, key, uris[0]) {
		b.Fatalf("in-process header %s", h)
	}
	runMeasured(b, callers, 0, func(i int) error {
		_, err := inProcessHeader(key.private, "1", "domain", benchDestination, "GET", uris[i])
		return err
	})
}

func benchSigild(b *testing.B, d *daemon, callers int) {
	c := New(d.socket(), Options{MaxConns: benchMaxConns()})
	defer c.Close()
	uris := benchURIs(b.N)
	warm(b, c, callers)
	// Contexts without deadlines, as MMR's request contexts are: CallTimeout applies.
	ctx := context.Background()
	runMeasured(b, callers, d.pid(), func(i int) error {
		_, err := c.SignRequest(ctx, "domain", benchDestination, "GET", uris[i], nil)
		return err
	})
	if s, err := c.SignRequest(ctx, "domain", benchDestination, "GET", uris[0], nil); err != nil || s.Header != mustExpect(b, specKey(b), uris[0]) {
		b.Fatalf("header %s (%v)", s.Header, err)
	}
}

func benchPing(b *testing.B, d *daemon) {
	c := New(d.socket(), Options{})
	defer c.Close()
	warm(b, c, 1)
	ctx := context.Background()
	payload := []byte{}
	runMeasured(b, 1, d.pid(), func(int) error {
		_, err := c.PingPayload(ctx, payload)
		return err
	})
}

// warm opens the connections the run will use.
func warm(b *testing.B, c *Client, callers int) {
	var wg sync.WaitGroup
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := c.Ping(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func mustExpect(b *testing.B, key testKey, uri string) string {
	h, _ := expectedHeader(b, key, "domain", benchDestination, "GET", uri, nil)
	return h
}

// runMeasured runs op b.N times split over callers goroutines and reports, per operation, the
// worker's CPU, the daemon's CPU (when daemonPID is set) and each caller's latency.
func runMeasured(b *testing.B, callers int, daemonPID int, op func(i int) error) {
	b.ReportAllocs()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, callers)
	per := (b.N + callers - 1) / callers
	for g := 0; g < callers; g++ {
		lo, hi := g*per, (g+1)*per
		if hi > b.N {
			hi = b.N
		}
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			<-start
			for i := lo; i < hi; i++ {
				if err := op(i); err != nil {
					errs <- err
					return
				}
			}
		}(lo, hi)
	}
	time.Sleep(10 * time.Millisecond) // let the goroutines park at the start line
	daemonBefore := threadCPU(b, daemonPID)
	sysBefore := processSys(b)
	workerBefore := processCPU(b)
	b.ResetTimer()
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	b.StopTimer()
	worker := processCPU(b) - workerBefore
	sys := processSys(b) - sysBefore
	daemon := threadCPU(b, daemonPID) - daemonBefore
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	n := float64(b.N)
	b.ReportMetric(float64(worker.Nanoseconds())/n, "worker-cpu-ns/op")
	b.ReportMetric(float64(sys.Nanoseconds())/n, "worker-sys-ns/op")
	if daemonPID != 0 {
		b.ReportMetric(float64(daemon.Nanoseconds())/n, "daemon-cpu-ns/op")
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())*float64(callers)/n, "latency-ns")
}

// processCPU is this process's user and system time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processSys is this process's system time so far.
func processSys(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Stime.Nano())
}

// threadCPU is the time every thread of pid has run, in nanoseconds, from
// /proc/PID/task/*/schedstat (finer than /proc/PID/stat's clock ticks). Threads that ended
// before the second reading take their time with them: sigild's threads live as long as it.
func threadCPU(b *testing.B, pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("no /proc/%d/task/*/schedstat: %v", pid, err)
	}
	var total time.Duration
	for _, path := range tasks {
		text, err := os.ReadFile(path)
		if err != nil {
			continue // the thread ended
		}
		fields := strings.Fields(string(text))
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			b.Fatalf("%s: %q", path, text)
		}
		total += time.Duration(ns)
	}
	return total
}
