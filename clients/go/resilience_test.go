package sigil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// load keeps goroutines signing until stopped, and sorts every outcome.
type load struct {
	t     *testing.T
	c     *Client
	stop  chan struct{}
	wg    sync.WaitGroup
	ok    atomic.Int64
	down  atomic.Int64 // errors that are ErrUnavailable
	mu    sync.Mutex
	other []error
}

func startLoad(t *testing.T, c *Client, goroutines int) *load {
	l := &load{t: t, c: c, stop: make(chan struct{})}
	key := specKey(t)
	for g := 0; g < goroutines; g++ {
		l.wg.Add(1)
		go func(g int) {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				uri := fmt.Sprintf("/_matrix/federation/v1/media/download/%d_%d", g, i)
				s, err := c.SignRequest(ctx, "domain", "remote.example", "GET", uri, nil)
				cancel()
				switch {
				case err == nil:
					if want, _ := expectedHeader(t, key, "domain", "remote.example", "GET", uri, nil); s.Header != want {
						l.record(fmt.Errorf("wrong header %s, want %s", s.Header, want))
					}
					l.ok.Add(1)
				case errors.Is(err, ErrUnavailable):
					l.down.Add(1)
					time.Sleep(time.Millisecond)
				default:
					l.record(err)
				}
			}
		}(g)
	}
	return l
}

func (l *load) record(err error) {
	l.mu.Lock()
	l.other = append(l.other, err)
	l.mu.Unlock()
}

// waitFor waits until at least n more calls have succeeded.
func (l *load) waitFor(n int64) {
	l.t.Helper()
	target := l.ok.Load() + n
	deadline := time.Now().Add(60 * time.Second)
	for l.ok.Load() < target {
		if time.Now().After(deadline) {
			l.t.Fatalf("only %d of %d calls succeeded in 60 s (%d unavailable)", l.ok.Load(), target, l.down.Load())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
	for _, err := range l.other {
		l.t.Errorf("neither success nor ErrUnavailable: %v", err)
	}
}

// callsFailFast: with sigild gone, calls fail with ErrUnavailable long before their deadline.
func callsFailFast(t *testing.T, c *Client) {
	t.Helper()
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		_, err := c.SignRequest(ctx, "domain", "remote.example", "GET", "/x", nil)
		cancel()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d with sigild down: %v, want ErrUnavailable", i, err)
		}
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Fatalf("call %d took %v to fail: it waited instead of failing fast", i, elapsed)
		}
	}
}

// sigild killed mid-run: calls in flight and new calls fail with ErrUnavailable, at once; after
// a restart on the same path, the same Client signs again.
func TestDaemonKilledAndRestarted(t *testing.T) {
	d := startDaemon(t, daemonConfig{})
	c := New(d.socket(), Options{MaxConns: 3})
	defer c.Close()
	l := startLoad(t, c, 16)
	l.waitFor(2000)
	d.kill()
	callsFailFast(t, c)
	downBefore := l.down.Load()
	time.Sleep(100 * time.Millisecond)
	if l.down.Load() == downBefore {
		t.Fatal("the load saw no ErrUnavailable while sigild was down")
	}
	d.start()
	l.waitFor(2000)
	l.finish()
	t.Logf("%d signed, %d unavailable", l.ok.Load(), l.down.Load())
}

// Under socket activation the socket outlives sigild: connections made while it is down wait in
// the backlog, and the next sigild answers them. Requests on a connection that sigild closes
// while stopping fail with ErrUnavailable, and nothing else goes wrong.
func TestRestartUnderSocketActivation(t *testing.T) {
	// A short drain: under constant load the connections never fall quiet, so each stop waits
	// for the drain deadline and then closes them with requests in flight.
	d := startDaemon(t, daemonConfig{activated: true, limits: "  drain_timeout: 500ms\n"})
	c := New(d.socket(), Options{MaxConns: 2})
	defer c.Close()
	l := startLoad(t, c, 8)
	for round := 0; round < 3; round++ {
		l.waitFor(1000)
		d.stop()
		d.start()
	}
	l.waitFor(1000)
	l.finish()

	// A call made while sigild is down is answered by the next one.
	d.stop()
	answered := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.SignRequest(ctx, "domain", "remote.example", "GET", "/while-down", nil)
		answered <- err
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-answered:
		t.Fatalf("answered with no sigild running: %v", err)
	default:
	}
	d.start()
	if err := <-answered; err != nil {
		t.Fatalf("the call made while sigild was down: %v", err)
	}
}

// A stopped (SIGSTOP) daemon accepts bytes and answers nothing: every call returns when its
// context says, with ErrUnavailable. Once it runs again, the late replies are dropped and the
// same connection carries on.
func TestStoppedDaemonHonoursDeadlines(t *testing.T) {
	d := startDaemon(t, daemonConfig{})
	c := New(d.socket(), Options{MaxConns: 2, CallTimeout: 300 * time.Millisecond})
	defer c.Close()
	ctx := testContext(t, time.Minute)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	d.pause()
	defer d.signal(syscall.SIGCONT)

	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			deadline := 200 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			_, err := c.SignRequest(ctx, "domain", "remote.example", "GET", fmt.Sprintf("/stopped/%d", g), nil)
			if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("goroutine %d: %v, want ErrUnavailable and DeadlineExceeded", g, err)
			}
			if late := time.Since(start) - deadline; late > time.Second {
				t.Errorf("goroutine %d returned %v after its deadline", g, late)
			}
		}(g)
	}
	wg.Wait()

	// No deadline on the context: CallTimeout applies.
	start := time.Now()
	err := c.Ping(context.Background())
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with CallTimeout: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("CallTimeout of 300 ms took %v", elapsed)
	}
	// Cancellation is not unavailability.
	cctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := c.Ping(cctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled: %v", err)
	}

	conns := append([]*conn(nil), *c.live.Load()...)
	d.signal(syscall.SIGCONT)
	for i := 0; i < 100; i++ {
		if _, err := c.SignRequest(ctx, "domain", "remote.example", "GET", "/after", nil); err != nil {
			t.Fatalf("after SIGCONT: %v", err)
		}
	}
	// The abandoned calls' replies came and were dropped; their IDs and budget are free again.
	waitUntil(t, "abandoned calls to clear", func() bool {
		for _, cn := range conns {
			cn.mu.Lock()
			n := len(cn.pending)
			cn.mu.Unlock()
			if n != 0 || cn.inflight.Load() != 0 {
				return false
			}
		}
		c.budget.mu.Lock()
		defer c.budget.mu.Unlock()
		return c.budget.avail == inFlightBudget
	})
	if now := *c.live.Load(); len(now) != len(conns) || now[0] != conns[0] {
		t.Fatal("the connections were replaced")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clientGoroutines counts the goroutines this package runs for connections: a writer each, and
// a drainer while replies are due with no caller reading. (Frames, not "created by" lines.)
func clientGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "sigil.(*conn).writeLoop(") + strings.Count(string(buf), "sigil.(*conn).startDrainerLocked.func1(")
}

// No goroutine outlives its connection, or the client.
func TestNoGoroutineLeaks(t *testing.T) {
	if n := clientGoroutines(); n != 0 {
		t.Fatalf("%d connection goroutines before the test", n)
	}
	d := startDaemon(t, daemonConfig{})
	c := New(d.socket(), Options{MaxConns: 4})
	l := startLoad(t, c, 16)
	l.waitFor(500)
	if n := clientGoroutines(); n == 0 || n > 8 {
		t.Fatalf("%d connection goroutines for at most 4 connections (a writer and at most one drainer each)", n)
	}
	d.kill()
	waitUntil(t, "the broken connections' goroutines to end", func() bool { return clientGoroutines() == 0 })
	d.start()
	l.waitFor(500)
	l.finish()
	c.Close()
	// Close waits for them; give their stacks a moment to unwind after their last line.
	waitUntil(t, "no connection goroutine after Close", func() bool { return clientGoroutines() == 0 })
	if _, err := c.SignRequest(context.Background(), "domain", "a.example", "GET", "/x", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// A frame over the daemon's max_frame is refused before it is sent; the connection, and the
// calls on it, are unaffected.
func TestFramesOverMaxFrameRefusedClientSide(t *testing.T) {
	d := startDaemon(t, daemonConfig{limits: "  max_frame: 2048\n"})
	c := New(d.socket(), Options{MaxConns: 1})
	defer c.Close()
	ctx := testContext(t, 30*time.Second)
	// The first call on a new client is the large one: it waits for the HELLO reply.
	_, err := c.PingPayload(ctx, make([]byte, 3000))
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "2048") {
		t.Fatalf("3,000-byte ping: %v", err)
	}
	echo, err := c.PingPayload(ctx, make([]byte, 1500))
	if err != nil || len(echo) != 1500 {
		t.Fatalf("1,500-byte ping (over 1,024, under 2,048): %v", err)
	}
	before := (*c.live.Load())[0]
	if _, err := c.SignJSON(ctx, "domain", []byte(`{"x":"`+strings.Repeat("y", 5000)+`"}`)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("5,000-byte JSON: %v", err)
	}
	if err := c.Ping(ctx); err != nil || (*c.live.Load())[0] != before {
		t.Fatalf("the connection must survive a refused frame: %v", err)
	}
}

// The in-flight budget makes callers wait, in order, and lets them go as their contexts end.
func TestBudget(t *testing.T) {
	b := newBudget(1000)
	ctx := context.Background()
	if err := b.acquire(ctx, 600); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.acquire(short, 600); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("over budget: %v", err)
	}
	got := make(chan int, 2)
	for _, n := range []int{500, 100} {
		go func(n int) {
			if err := b.acquire(ctx, int64(n)); err == nil {
				got <- n
			}
		}(n)
		time.Sleep(10 * time.Millisecond) // queue in this order
	}
	select {
	case n := <-got:
		t.Fatalf("%d granted while 600 of 1000 are taken and 500 waits first", n)
	case <-time.After(20 * time.Millisecond):
	}
	b.release(600)
	<-got
	<-got
	b.mu.Lock()
	if b.avail != 400 || len(b.waiters) != 0 {
		t.Fatalf("after both grants: %d available, %d waiting", b.avail, len(b.waiters))
	}
	b.mu.Unlock()
	if w := weight(10); w != requestWeight {
		t.Fatalf("weight(10) = %d", w)
	}
	if w := weight(100 << 20); w != inFlightBudget {
		t.Fatalf("a request larger than the budget weighs %d", w)
	}
}

// A connection sigild closed while it sat idle is noticed when the next frame cannot be sent,
// and the frame goes on a new connection: the caller sees nothing of it.
func TestIdleConnectionClosedByTheDaemon(t *testing.T) {
	d := startDaemon(t, daemonConfig{limits: "  idle_timeout: 200ms\n"})
	c := New(d.socket(), Options{MaxConns: 1})
	defer c.Close()
	// A second client, kept busy, watches the daemon's count of open connections.
	watcher := New(d.socket(), Options{})
	defer watcher.Close()
	ctx := testContext(t, 60*time.Second)
	for round := 0; round < 3; round++ {
		if _, err := c.SignRequest(ctx, "domain", "a.example", "GET", "/idle", nil); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		first := (*c.live.Load())[0]
		// sigild looks for idle connections about once a second.
		waitUntil(t, "sigild to close the idle connection", func() bool {
			time.Sleep(50 * time.Millisecond)
			return openConnections(t, watcher) == 1
		})
		if _, err := c.SignRequest(ctx, "domain", "a.example", "GET", "/after-idle", nil); err != nil {
			t.Fatalf("round %d, after the daemon closed the idle connection: %v", round, err)
		}
		if (*c.live.Load())[0] == first {
			t.Fatalf("round %d: still the connection sigild closed", round)
		}
	}
}

// openConnections is sigild's count of open connections, the watcher's own included.
func openConnections(t *testing.T, watcher *Client) int {
	t.Helper()
	raw, err := watcher.Stats(testContext(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Connections struct{ Open int } `json:"connections"`
	}
	if err := json.Unmarshal(raw, &stats); err != nil {
		t.Fatal(err)
	}
	return stats.Connections.Open
}

// A connection the daemon refuses at accept (here: past max_connections_per_uid) gets one
// frame saying why; the call fails with that status, not as an unavailable daemon.
func TestRefusedConnectionGivesTheDaemonsReason(t *testing.T) {
	d := startDaemon(t, daemonConfig{limits: "  max_connections_per_uid: 1\n"})
	ctx := testContext(t, 30*time.Second)
	// The fixture's own readiness probe may still hold the uid's one connection for a moment.
	var first *Client
	for deadline := time.Now().Add(10 * time.Second); ; {
		first = New(d.socket(), Options{MaxConns: 1})
		err := first.Ping(ctx)
		if err == nil {
			break
		}
		first.Close()
		if time.Now().After(deadline) {
			t.Fatalf("first client: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer first.Close()
	second := New(d.socket(), Options{MaxConns: 1})
	defer second.Close()
	err := second.Ping(ctx)
	var status *StatusError
	if !errors.As(err, &status) || status.Status != StatusBusy || !strings.Contains(status.Message, "max_connections_per_uid") {
		t.Fatalf("second client, past the per-uid cap: %v", err)
	}
	if err := first.Ping(ctx); err != nil {
		t.Fatalf("the first client must be unaffected: %v", err)
	}
}
