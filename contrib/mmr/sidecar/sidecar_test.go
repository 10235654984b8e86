package sidecar

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigil.invalid/sigil"
)

// The tests start a real sigild ($SIGILD) and check Sign's headers against MMR's layout,
// computed here with crypto/ed25519.

type key struct {
	server, version string
	private         ed25519.PrivateKey
}

func newKey(t *testing.T, server, version string) key {
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key{server, version, private}
}

// mmrHeader is the header MMR v1.3.8's CreateXMatrixHeader writes for a GET without a body:
// the canonical JSON of {destination, method, origin, uri} (keys in order, no HTML escaping),
// signed, in MMR's layout.
func mmrHeader(t *testing.T, k key, destination, uri string) string {
	var object bytes.Buffer
	object.WriteString("{")
	for i, field := range [][2]string{{"destination", destination}, {"method", "GET"}, {"origin", k.server}, {"uri", uri}} {
		if i > 0 {
			object.WriteString(",")
		}
		fmt.Fprintf(&object, "%q:", field[0])
		enc := json.NewEncoder(&object)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(field[1]); err != nil {
			t.Fatal(err)
		}
		object.Truncate(object.Len() - 1) // Encode's newline
	}
	object.WriteString("}")
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(k.private, object.Bytes()))
	return fmt.Sprintf(`X-Matrix origin="%s",destination="%s",key="ed25519:%s",sig="%s"`, k.server, destination, k.version, sig)
}

type daemon struct {
	t    *testing.T
	dir  string
	cmd  *exec.Cmd
	done chan error
}

func sigildPath(t *testing.T) string {
	path := os.Getenv("SIGILD")
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("SIGILD is not set: it must name the sigild binary to test against")
		}
		t.Skip("SIGILD is not set; run with SIGILD=$(swift build --show-bin-path)/sigild")
	}
	return path
}

// startDaemon runs sigild with keys for "domain" and "other.example", a main socket that lets
// this uid do anything, and an "mmr" socket with the rule docs/operations.md gives MMR, for
// "domain" only.
func startDaemon(t *testing.T, dir string, keys ...key) *daemon {
	return startDaemonWith(t, dir, "", keys...)
}

// startDaemonWith adds mmrYAML (lines such as a rate_limit) to the "mmr" listener.
func startDaemonWith(t *testing.T, dir, mmrYAML string, keys ...key) *daemon {
	binary := sigildPath(t)
	var servers strings.Builder
	for i, k := range keys {
		file := filepath.Join(dir, fmt.Sprintf("k%d.key", i))
		line := fmt.Sprintf("ed25519 %s %s\n", k.version, base64.RawStdEncoding.EncodeToString(k.private.Seed()))
		if err := os.WriteFile(file, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&servers, "  %s:\n    keys: [%s]\n", k.server, file)
	}
	config := fmt.Sprintf(`servers:
%slisten:
  - name: main
    path: %s/s.sock
    access:
      - uid: %d
  - name: mmr
    path: %s/mmr.sock
%s    access:
      - uid: %d
        operations: [sign_request]
        servers: [domain]
        methods: [GET]
        uri_prefixes: [/_matrix/federation/v1/media/download/]
memory_lock: warn
`, servers.String(), dir, os.Getuid(), dir, mmrYAML, os.Getuid())
	path := filepath.Join(dir, "sigild.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "sigild.log"))
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, cmd: exec.Command(binary, "--config", path), done: make(chan error, 1)}
	d.cmd.Stdout, d.cmd.Stderr = log, log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait(); log.Close() }()
	t.Cleanup(d.stop)
	c := sigil.New(filepath.Join(dir, "s.sock"), sigil.Options{})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for c.Ping(context.Background()) != nil {
		if time.Now().After(deadline) {
			text, _ := os.ReadFile(filepath.Join(dir, "sigild.log"))
			t.Fatalf("sigild did not start:\n%s", text)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return d
}

func (d *daemon) stop() {
	if d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

func scratch(t *testing.T) string {
	dir, err := os.MkdirTemp("/tmp", "sigil-mmr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// recorder is a Logger that keeps what it was given.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) add(level, format string, args []interface{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, level+": "+fmt.Sprintf(format, args...))
}
func (r *recorder) Infof(f string, a ...interface{})  { r.add("info", f, a) }
func (r *recorder) Warnf(f string, a ...interface{})  { r.add("warn", f, a) }
func (r *recorder) Errorf(f string, a ...interface{}) { r.add("error", f, a) }

func (r *recorder) count(substring string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lines {
		if strings.Contains(l, substring) {
			n++
		}
	}
	return n
}

func TestSignGivesMMRsHeader(t *testing.T) {
	t.Cleanup(Reset)
	dir := scratch(t)
	domain := newKey(t, "domain", "a_bcDE")
	startDaemon(t, dir, domain)
	socket := filepath.Join(dir, "mmr.sock")
	log := &recorder{}
	ctx := context.Background()
	for _, mediaID := range []string{"abc123", "x/y?z", "ü & <b>", `"quoted"\`, strings.Repeat("m", 200)} {
		// As MMR builds it: /_matrix/federation/v1/media/download/ + url.PathEscape(mediaId),
		// then url.Parse(...).RequestURI().
		u, err := url.Parse("https://remote.example:8448/_matrix/federation/v1/media/download/" + url.PathEscape(mediaID))
		if err != nil {
			t.Fatal(err)
		}
		header, err := Sign(ctx, socket, "domain", "remote.example:8448", "GET", u.RequestURI(), log)
		if err != nil {
			t.Fatalf("%q: %v", mediaID, err)
		}
		if want := mmrHeader(t, domain, "remote.example:8448", u.RequestURI()); header != want {
			t.Errorf("%q:\n got %s\nwant %s", mediaID, header, want)
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				uri := fmt.Sprintf("/_matrix/federation/v1/media/download/%d_%d", g, i)
				header, err := Sign(ctx, socket, "domain", "matrix.org", "GET", uri, log)
				if err != nil || header != mmrHeader(t, domain, "matrix.org", uri) {
					t.Errorf("%s: %v %s", uri, err, header)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if len(log.lines) != 0 {
		t.Errorf("logged %q", log.lines)
	}
}

// DENIED and UNKNOWN_SERVER are configuration errors: returned as such (MMR caches them like
// any failure) and logged once per server name, not once per download.
func TestRefusalsLoggedOncePerServerName(t *testing.T) {
	t.Cleanup(Reset)
	dir := scratch(t)
	startDaemon(t, dir, newKey(t, "domain", "1"), newKey(t, "other.example", "1"))
	log := &recorder{}
	ctx := context.Background()
	media := "/_matrix/federation/v1/media/download/abc"
	for i := 0; i < 5; i++ {
		_, err := Sign(ctx, filepath.Join(dir, "mmr.sock"), "other.example", "matrix.org", "GET", media, log)
		var refusal *sigil.StatusError
		if !errors.As(err, &refusal) || refusal.Status != sigil.StatusDenied {
			t.Fatalf("a server name the rule does not list: %v", err)
		}
		var down *UnavailableError
		if errors.As(err, &down) {
			t.Fatal("a refusal is not unavailability")
		}
		_, err = Sign(ctx, filepath.Join(dir, "s.sock"), "nosuch.example", "matrix.org", "GET", media, log)
		if !errors.As(err, &refusal) || refusal.Status != sigil.StatusUnknownServer {
			t.Fatalf("a server name sigild has no key for: %v", err)
		}
	}
	if n := log.count("refuses to sign for other.example"); n != 1 {
		t.Errorf("DENIED logged %d times: %q", n, log.lines)
	}
	if n := log.count("has no key for nosuch.example"); n != 1 {
		t.Errorf("UNKNOWN_SERVER logged %d times: %q", n, log.lines)
	}
	// The same socket still signs for the names it may sign for.
	if _, err := Sign(ctx, filepath.Join(dir, "mmr.sock"), "domain", "matrix.org", "GET", media, log); err != nil {
		t.Fatal(err)
	}
	Reset()
	Sign(ctx, filepath.Join(dir, "mmr.sock"), "other.example", "matrix.org", "GET", media, log)
	if n := log.count("refuses to sign for other.example"); n != 2 {
		t.Errorf("after Reset (a configuration reload) a refusal is logged again: %d", n)
	}
}

// With sigild down, Sign fails at once with *UnavailableError (which MMR does not cache),
// says so once, and signs again as soon as sigild is back.
func TestUnavailableThenBack(t *testing.T) {
	t.Cleanup(Reset)
	dir := scratch(t)
	socket := filepath.Join(dir, "mmr.sock")
	log := &recorder{}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		start := time.Now()
		_, err := Sign(ctx, socket, "domain", "matrix.org", "GET", "/_matrix/federation/v1/media/download/a", log)
		var down *UnavailableError
		if !errors.As(err, &down) || down.Socket != socket || !errors.Is(err, sigil.ErrUnavailable) {
			t.Fatalf("no sigild: %v", err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("failing took %v", time.Since(start))
		}
	}
	if n := log.count("is unavailable"); n != 1 {
		t.Fatalf("unavailability logged %d times: %q", n, log.lines)
	}
	domain := newKey(t, "domain", "1")
	startDaemon(t, dir, domain)
	deadline := time.Now().Add(10 * time.Second)
	for {
		header, err := Sign(ctx, socket, "domain", "matrix.org", "GET", "/_matrix/federation/v1/media/download/a", log)
		if err == nil {
			if header != mmrHeader(t, domain, "matrix.org", "/_matrix/federation/v1/media/download/a") {
				t.Fatalf("header %s", header)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sigild is back, Sign still fails: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := log.count("answers again"); n != 1 {
		t.Fatalf("recovery logged %d times: %q", n, log.lines)
	}
}

// BUSY (here sigild's rate limit for this caller) is tried once more, then returned as a
// refusal: not unavailability, and not logged as a configuration error.
func TestBusyTriedOnceMore(t *testing.T) {
	t.Cleanup(Reset)
	dir := scratch(t)
	startDaemonWith(t, dir, "    rate_limit: { per_second: 0.001, burst: 1 }\n", newKey(t, "domain", "1"))
	log := &recorder{}
	ctx := context.Background()
	socket := filepath.Join(dir, "mmr.sock")
	media := "/_matrix/federation/v1/media/download/abc"
	if _, err := Sign(ctx, socket, "domain", "matrix.org", "GET", media, log); err != nil {
		t.Fatal(err)
	}
	_, err := Sign(ctx, socket, "domain", "matrix.org", "GET", media, log)
	var refusal *sigil.StatusError
	var down *UnavailableError
	if !errors.As(err, &refusal) || refusal.Status != sigil.StatusBusy || errors.As(err, &down) {
		t.Fatalf("past the rate limit: %v", err)
	}
	// Two attempts, as sigild counts them.
	admin := sigil.New(filepath.Join(dir, "s.sock"), sigil.Options{})
	defer admin.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		raw, err := admin.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var stats struct {
			RateLimited int `json:"rate_limited"`
		}
		if err := json.Unmarshal(raw, &stats); err != nil {
			t.Fatal(err)
		}
		if stats.RateLimited == 2 {
			break
		}
		if stats.RateLimited > 2 || time.Now().After(deadline) {
			t.Fatalf("sigild counted %d rate-limited requests, want 2 (one try and one retry)", stats.RateLimited)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(log.lines) != 0 {
		t.Errorf("logged %q", log.lines)
	}
}
