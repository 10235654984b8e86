package sigil

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The Matrix specification's test key, which docs/PROTOCOL.md's vectors use, as "domain".
const (
	specSeed      = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
	specPublicKey = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
)

// testKey is a key the tests give sigild, and know the private half of, to check its work.
type testKey struct {
	server  string
	version string
	private ed25519.PrivateKey
}

func (k testKey) id() string { return "ed25519:" + k.version }

func (k testKey) public() ed25519.PublicKey { return k.private.Public().(ed25519.PublicKey) }

// synapseFile is the key in Synapse's format: "ed25519 VERSION SEED" with unpadded base64.
func (k testKey) synapseFile() string {
	return fmt.Sprintf("ed25519 %s %s\n", k.version, base64.RawStdEncoding.EncodeToString(k.private.Seed()))
}

func specKey(t testing.TB) testKey {
	seed, err := base64.RawStdEncoding.DecodeString(specSeed)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{server: "domain", version: "1", private: ed25519.NewKeyFromSeed(seed)}
}

func randomKey(t testing.TB, server, version string) testKey {
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{server: server, version: version, private: private}
}

// sigildPath is the daemon under test: $SIGILD. Without it the tests skip, except in CI,
// where a missing daemon must fail the build rather than pass it silently.
func sigildPath(t testing.TB) string {
	t.Helper()
	path := os.Getenv("SIGILD")
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("SIGILD is not set: it must name the sigild binary to test against (scripts/test sets it to $(swift build --show-bin-path)/sigild)")
		}
		t.Skip("SIGILD is not set; run with SIGILD=$(swift build --show-bin-path)/sigild")
	}
	if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		t.Fatalf("SIGILD=%s is not an executable file (%v)", path, err)
	}
	return path
}

// daemon is a real sigild, started by the test on sockets in a scratch directory.
type daemon struct {
	t       testing.TB
	binary  string
	dir     string
	config  string
	keys    []testKey
	inherit *os.File // a listening socket passed as fd 3, as systemd's socket activation does

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	log    *os.File
}

// daemonConfig describes what a test needs from sigild. The "main" listener always exists
// and lets the test's uid do everything.
type daemonConfig struct {
	keys []testKey
	// serverYAML: more YAML lines under a server, after its keys (such as retired keys).
	serverYAML map[string]string
	limits     string // YAML lines under limits:
	extra      string // more listeners
	// activated: "main" is a socket the test holds open and passes to each sigild it
	// starts, so it outlives restarts (systemd's socket activation).
	activated bool
}

func shortTempDir(t testing.TB) string {
	// Unix socket paths are limited to 107 bytes: stay short.
	dir, err := os.MkdirTemp("/tmp", "sigil-go-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startDaemon(t testing.TB, cfg daemonConfig) *daemon {
	t.Helper()
	d := &daemon{t: t, binary: sigildPath(t), dir: shortTempDir(t)}
	if len(cfg.keys) == 0 {
		cfg.keys = []testKey{specKey(t)}
	}
	d.keys = cfg.keys
	var servers strings.Builder
	files := map[string][]string{}
	var order []string
	for i, k := range cfg.keys {
		name := fmt.Sprintf("key%d.signing.key", i)
		if err := os.WriteFile(filepath.Join(d.dir, name), []byte(k.synapseFile()), 0o600); err != nil {
			t.Fatal(err)
		}
		if files[k.server] == nil {
			order = append(order, k.server)
		}
		files[k.server] = append(files[k.server], filepath.Join(d.dir, name))
	}
	for _, s := range order {
		fmt.Fprintf(&servers, "  %s:\n    keys: [%s]\n%s", s, strings.Join(files[s], ", "), cfg.serverYAML[s])
	}
	main := "    path: " + d.socket()
	if cfg.activated {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: d.socket(), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		f, err := l.File()
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		l.Close() // f keeps the socket listening, at its path
		d.inherit = f
		t.Cleanup(func() { f.Close() })
		main = "    fd: 3"
	}
	uid := os.Getuid()
	d.config = filepath.Join(d.dir, "sigild.yaml")
	config := fmt.Sprintf(`servers:
%s
listen:
  - name: main
%s
    mode: "0600"
    access:
      - uid: %d
        operations: [hello, ping, list_keys, sign_request, sign_json, sign_raw, verify, verify_json, verify_request, key_document, stats]
%s
memory_lock: warn
log_level: debug
limits:
  frame_timeout: 2s
%s
`, servers.String(), main, uid, strings.ReplaceAll(cfg.extra, "{dir}", d.dir), cfg.limits)
	if err := os.WriteFile(d.config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop) // before start: a daemon that fails to serve is stopped too
	d.start()
	return d
}

func (d *daemon) socket() string { return filepath.Join(d.dir, "s.sock") }

func (d *daemon) path(name string) string { return filepath.Join(d.dir, name) }

// start runs sigild and waits until it answers on the main socket.
func (d *daemon) start() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	log, err := os.OpenFile(filepath.Join(d.dir, "sigild.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	cmd := exec.Command(d.binary, "--config", d.config)
	cmd.Stdout, cmd.Stderr = log, log
	if d.inherit != nil {
		cmd.ExtraFiles = []*os.File{d.inherit}
	}
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	d.cmd, d.log, d.exited = cmd, log, exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			d.cmd = nil
			log.Close()
			d.t.Fatalf("sigild exited before serving (%v):\n%s", waitErr, d.logText())
		default:
		}
		if d.answers() {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("sigild did not serve within 30 s:\n%s", d.logText())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// answers: a PING on a fresh connection gets its echo. (With an inherited socket, connecting
// succeeds before any daemon listens, so only an answer counts.)
func (d *daemon) answers() bool {
	c, err := net.DialTimeout("unix", d.socket(), 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	ping := []byte{0, 0, 0, 12, 1, OpPing, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0}
	if _, err := c.Write(ping); err != nil {
		return false
	}
	var answer [16]byte
	n, _ := ioReadFull(c, answer[:])
	return n == 16 && answer[5] == OpPing && answer[7] == StatusOK
}

func (d *daemon) pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd.Process.Pid
}

func (d *daemon) signal(sig syscall.Signal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		d.cmd.Process.Signal(sig)
	}
}

// pause stops sigild (SIGSTOP) and waits until the kernel reports it stopped: until then it
// may still answer what it had read.
func (d *daemon) pause() {
	d.t.Helper()
	d.signal(syscall.SIGSTOP)
	stat := fmt.Sprintf("/proc/%d/stat", d.pid())
	deadline := time.Now().Add(10 * time.Second)
	for {
		text, err := os.ReadFile(stat)
		// The state follows the command name in parentheses: "pid (comm) T ...".
		if i := bytes.LastIndexByte(text, ')'); err == nil && i > 0 && i+2 < len(text) && text[i+2] == 'T' {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("sigild not stopped 10 s after SIGSTOP: %s", text)
		}
		time.Sleep(time.Millisecond)
	}
}

// kill stops sigild at once (SIGKILL): connections break mid-request.
func (d *daemon) kill() { d.halt(syscall.SIGKILL) }

// stop stops sigild the way systemd does (SIGTERM: it drains, then exits).
func (d *daemon) stop() { d.halt(syscall.SIGTERM) }

func (d *daemon) halt(sig syscall.Signal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot act on SIGTERM
	d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("sigild did not exit within 20 s of signal %v", sig)
	}
	d.log.Close()
	d.cmd = nil
}

func (d *daemon) logText() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "sigild.log"))
	return string(b)
}

func ioReadFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// testContext is a context that ends with the test, bounded so that a hang fails the test.
func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustEqualBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
}
