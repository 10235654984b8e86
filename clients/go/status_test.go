package sigil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Listeners with narrower rules: "mmr" is the rule docs/operations.md gives MMR, "stranger"
// lets only another uid in.
func deniedFixture(t *testing.T) *daemon {
	return startDaemon(t, daemonConfig{
		keys: []testKey{specKey(t), randomKey(t, "other.example", "a1")},
		extra: fmt.Sprintf(`  - name: mmr
    path: {dir}/mmr.sock
    mode: "0600"
    access:
      - uid: %d
        operations: [sign_request]
        servers: [domain]
        methods: [GET]
        uri_prefixes: [/_matrix/federation/v1/media/download/]
  - name: stranger
    path: {dir}/stranger.sock
    mode: "0666"
    access:
      - uid: %d
`, os.Getuid(), os.Getuid()+1),
	})
}

func wantStatus(t *testing.T, what string, err error, status, op uint8) {
	t.Helper()
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("%s: %v, want a *StatusError %s", what, err, StatusName(status))
	}
	if se.Status != status || se.Op != op {
		t.Fatalf("%s: %s on %s, want %s on %s", what, StatusName(se.Status), OpName(se.Op), StatusName(status), OpName(op))
	}
	if errors.Is(err, ErrUnavailable) {
		t.Fatalf("%s: a refusal must not read as unavailable: %v", what, err)
	}
	if se.Temporary() != (status == StatusBusy) {
		t.Fatalf("%s: Temporary() = %v", what, se.Temporary())
	}
	if !strings.Contains(err.Error(), StatusName(status)) {
		t.Fatalf("%s: message %q does not name the status", what, err)
	}
}

func TestDenied(t *testing.T) {
	d := deniedFixture(t)
	ctx := testContext(t, 20*time.Second)
	mmr := New(d.path("mmr.sock"), Options{})
	defer mmr.Close()
	media := "/_matrix/federation/v1/media/download/abc"
	if _, err := mmr.SignRequest(ctx, "domain", "matrix.org", "GET", media, nil); err != nil {
		t.Fatalf("the MMR rule must allow a media download: %v", err)
	}
	for name, call := range map[string]func() error{
		"POST": func() error { _, err := mmr.SignRequest(ctx, "domain", "matrix.org", "POST", media, nil); return err },
		"another path": func() error {
			_, err := mmr.SignRequest(ctx, "domain", "matrix.org", "GET", "/_matrix/federation/v1/query/profile", nil)
			return err
		},
		"a dot segment": func() error {
			_, err := mmr.SignRequest(ctx, "domain", "matrix.org", "GET", media+"../../send/1", nil)
			return err
		},
		"another origin": func() error {
			_, err := mmr.SignRequest(ctx, "other.example", "matrix.org", "GET", media, nil)
			return err
		},
	} {
		wantStatus(t, "mmr listener, "+name, call(), StatusDenied, OpSignRequest)
	}
	_, err := mmr.SignJSON(ctx, "domain", []byte(`{}`))
	wantStatus(t, "mmr listener, sign_json", err, StatusDenied, OpSignJSON)
	_, err = mmr.Stats(ctx)
	wantStatus(t, "mmr listener, stats", err, StatusDenied, OpStats)
	// Refusals leave the connection as it was: the same one still signs.
	before := *mmr.live.Load()
	if _, err := mmr.SignRequest(ctx, "domain", "matrix.org", "GET", media, nil); err != nil {
		t.Fatal(err)
	}
	if after := *mmr.live.Load(); len(after) != len(before) || after[0] != before[0] {
		t.Fatal("a refusal replaced the connection")
	}

	// A caller that no rule of the listener matches is refused at accept, with one DENIED frame
	// (request ID 0): the daemon is unavailable to it, and the StatusError says why.
	stranger := New(d.path("stranger.sock"), Options{})
	defer stranger.Close()
	_, err = stranger.SignRequest(ctx, "domain", "matrix.org", "GET", media, nil)
	var se *StatusError
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &se) || se.Status != StatusDenied ||
		!strings.Contains(err.Error(), "sigild refused the connection") || !strings.Contains(se.Message, "no access rule of listener stranger") {
		t.Fatalf("a caller no rule matches: %v", err)
	}
}

func TestOtherRefusals(t *testing.T) {
	d := deniedFixture(t)
	c := New(d.socket(), Options{})
	defer c.Close()
	ctx := testContext(t, 20*time.Second)
	_, err := c.SignRequest(ctx, "nosuch.example", "matrix.org", "GET", "/x", nil)
	wantStatus(t, "unknown origin", err, StatusUnknownServer, OpSignRequest)
	_, err = c.SignRequest(ctx, "domain", "matrix.org", "GET", "x", nil)
	wantStatus(t, "uri without '/'", err, StatusBadRequest, OpSignRequest)
	_, err = c.SignRequest(ctx, "domain", "matrix.org", "GET", "/x", []byte(`{"a": 1.5}`))
	wantStatus(t, "a float in the content", err, StatusInvalidJSON, OpSignRequest)
	_, err = c.SignJSON(ctx, "domain", []byte(`{"a": 1, "a": 2}`))
	wantStatus(t, "duplicate keys", err, StatusInvalidJSON, OpSignJSON)
	_, err = c.SignRaw(ctx, "domain", "ed25519:nope", []byte("m"))
	wantStatus(t, "unknown key", err, StatusUnknownKey, OpSignRaw)
	reqs := make([]RequestToSign, 257)
	for i := range reqs {
		reqs[i] = RequestToSign{Origin: "domain", Destination: "a.example", Method: "GET", URI: "/x"}
	}
	_, err = c.SignRequests(ctx, reqs)
	wantStatus(t, "257 items", err, StatusBatchTooLarge, OpSignRequest)
	// Caught before sending: nothing the daemon would have to refuse.
	if _, err := c.SignRequest(ctx, "domain", "a.example", "GET", "/\xff", nil); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "uri") {
		t.Errorf("invalid UTF-8: %v", err)
	}
	if _, err := c.SignRequest(ctx, "domain", strings.Repeat("a", 70000), "GET", "/x", nil); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "destination") {
		t.Errorf("a 70,000-byte string: %v", err)
	}
	if _, err := c.SignRequests(ctx, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("an empty batch: %v", err)
	}
}

// BUSY: with max_in_flight 1 and every batch "large", a connection may run one batch at a
// time; the daemon answers BUSY to the next while one runs.
func TestBusy(t *testing.T) {
	d := startDaemon(t, daemonConfig{limits: "  max_in_flight: 1\n  offload_batch_items: 1\n"})
	c := New(d.socket(), Options{MaxConns: 1})
	defer c.Close()
	ctx := testContext(t, 60*time.Second)
	reqs := make([]RequestToSign, 256)
	for i := range reqs {
		reqs[i] = RequestToSign{Origin: "domain", Destination: "a.example", Method: "PUT", URI: fmt.Sprintf("/_matrix/federation/v1/send/%d", i),
			Content: []byte(`{"pdus":[{"type":"m.room.message","content":{"body":"` + strings.Repeat("x", 100) + `"}}]}`)}
	}
	var (
		mu     sync.Mutex
		busy   error
		signed int
	)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 50; round++ {
				mu.Lock()
				done := busy != nil
				mu.Unlock()
				if done {
					return
				}
				results, err := c.SignRequests(ctx, reqs)
				mu.Lock()
				var se *StatusError
				if errors.As(err, &se) && se.Status == StatusBusy {
					busy = err
				} else if err != nil {
					t.Errorf("batch: %v", err)
				} else {
					signed += len(results)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if busy == nil {
		t.Fatalf("no BUSY after %d signed items", signed)
	}
	wantStatus(t, "second large batch in flight", busy, StatusBusy, OpSignRequest)
	if _, err := c.SignRequest(ctx, "domain", "a.example", "GET", "/x", nil); err != nil {
		t.Fatalf("after BUSY the connection still serves: %v", err)
	}
}

func TestStatusNames(t *testing.T) {
	if StatusName(StatusDenied) != "DENIED" || StatusName(StatusInternalError) != "INTERNAL_ERROR" || StatusName(99) != "status 99" {
		t.Fatal("status names")
	}
	if OpName(OpVerifyRequest) != "verify_request" || OpName(0x7f) != "opcode 0x7f" {
		t.Fatal("op names")
	}
	err := error(&StatusError{Status: StatusBusy, Op: OpSignRequest, Message: "4 large batches in flight"})
	if err.Error() != "sigil: sign_request: BUSY: 4 large batches in flight" {
		t.Fatalf("%q", err.Error())
	}
	var temporary interface{ Temporary() bool }
	if !errors.As(err, &temporary) || !temporary.Temporary() {
		t.Fatal("BUSY is temporary")
	}
	u := unavailable("sign_request: waiting for the reply", context.DeadlineExceeded)
	if !errors.Is(u, ErrUnavailable) || !errors.Is(u, context.DeadlineExceeded) {
		t.Fatal("unavailable wraps both")
	}
}

// A listener that admits nobody this process could be: every connection is closed at once.
// The client backs off as from a daemon that is not there, rather than reconnecting for every
// call.
func TestBackoffFromConnectionsClosedAtOnce(t *testing.T) {
	d := deniedFixture(t)
	ctx := testContext(t, 30*time.Second)
	admin := New(d.socket(), Options{})
	defer admin.Close()
	refused := func() int {
		raw, err := admin.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var stats struct {
			Connections struct{ Refused int } `json:"connections"`
		}
		if err := json.Unmarshal(raw, &stats); err != nil {
			t.Fatal(err)
		}
		return stats.Connections.Refused
	}
	before := refused()
	stranger := New(d.path("stranger.sock"), Options{})
	defer stranger.Close()
	// Calls for 1.5 s: with a back-off of 20 ms doubling to 1 s, about 7 attempts to connect;
	// with 20 ms each time, 75.
	calls := 0
	for start := time.Now(); time.Since(start) < 1500*time.Millisecond; calls++ {
		if _, err := stranger.SignRequest(ctx, "domain", "matrix.org", "GET", "/x", nil); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d: %v", calls, err)
		}
		time.Sleep(time.Millisecond)
	}
	if attempts := refused() - before; attempts < 2 || attempts > 15 {
		t.Fatalf("%d connections for %d calls in 1.5 s", attempts, calls)
	}
}

// BUSY from the caller's rate limit on a listener (a token bucket for signing operations):
// single requests get it too, and it is temporary.
func TestBusyFromTheRateLimit(t *testing.T) {
	d := startDaemon(t, daemonConfig{extra: fmt.Sprintf(`  - name: limited
    path: {dir}/limited.sock
    mode: "0600"
    rate_limit: { per_second: 0.001, burst: 2 }
    access:
      - uid: %d
`, os.Getuid())})
	c := New(d.path("limited.sock"), Options{})
	defer c.Close()
	ctx := testContext(t, 20*time.Second)
	for i := 0; i < 2; i++ {
		if _, err := c.SignRequest(ctx, "domain", "a.example", "GET", "/x", nil); err != nil {
			t.Fatalf("within the burst: %v", err)
		}
	}
	_, err := c.SignRequest(ctx, "domain", "a.example", "GET", "/x", nil)
	wantStatus(t, "past the burst", err, StatusBusy, OpSignRequest)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("PING signs nothing and is not limited: %v", err)
	}
}
