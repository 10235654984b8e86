package sigil

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// 64 goroutines × 1,000 requests over a few pipelined connections, while other goroutines send
// large batches that sigild runs on its thread pool, so that replies overtake each other. Every
// header is compared with the one the test signs itself with crypto/ed25519.
func TestManyGoroutinesPipelined(t *testing.T) {
	keys := []testKey{specKey(t), randomKey(t, "other.example", "a1")}
	d := startDaemon(t, daemonConfig{keys: keys})
	c := New(d.socket(), Options{MaxConns: 4})
	defer c.Close()
	ctx := testContext(t, 5*time.Minute)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	connectionsBefore := totalConnections(t, c)

	const goroutines, perGoroutine = 64, 1000
	var checked, batched atomic.Int64
	stop := make(chan struct{})
	var batchers sync.WaitGroup
	for b := 0; b < 2; b++ {
		batchers.Add(1)
		go func(b int) {
			defer batchers.Done()
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				// Over offload_batch_items (16): it runs on the thread pool.
				reqs := make([]RequestToSign, 17)
				for i := range reqs {
					reqs[i] = RequestToSign{Origin: keys[i%2].server, Destination: "batch.example", Method: "GET",
						URI: fmt.Sprintf("/_matrix/federation/v1/media/download/b%d_%d_%d", b, round, i)}
				}
				results, err := c.SignRequests(ctx, reqs)
				if err != nil {
					t.Errorf("batch: %v", err)
					return
				}
				for i, r := range results {
					want, _ := expectedHeader(t, keys[i%2], reqs[i].Origin, reqs[i].Destination, "GET", reqs[i].URI, nil)
					if r.Err != nil || r.Header != want {
						t.Errorf("batch item %d: %+v, want %s", i, r, want)
						return
					}
				}
				batched.Add(int64(len(results)))
				time.Sleep(20 * time.Millisecond) // enough to overtake, without crowding out the rest
			}
		}(b)
	}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < perGoroutine; i++ {
				key := keys[(g+i)%2]
				destination := fmt.Sprintf("dest%d.example:8448", g%7)
				uri := fmt.Sprintf("/_matrix/federation/v1/media/download/m%d_%d?n=%d", g, i, i*g)
				var content []byte
				method := "GET"
				if i%10 == 0 {
					method = "PUT"
					content = []byte(fmt.Sprintf(`{"z": %d, "a": {"g": "%d", "list": [1, "two", null]}}`, i, g))
				}
				s, err := c.SignRequest(ctx, key.server, destination, method, uri, content)
				if err != nil {
					t.Errorf("goroutine %d request %d: %v", g, i, err)
					return
				}
				want, _ := expectedHeader(t, key, key.server, destination, method, uri, content)
				if s.Header != want {
					t.Errorf("goroutine %d request %d:\n got %s\nwant %s", g, i, s.Header, want)
					return
				}
				checked.Add(1)
			}
		}(g)
	}
	wg.Wait()
	close(stop)
	batchers.Wait()
	if n := checked.Load(); n != goroutines*perGoroutine {
		t.Fatalf("%d of %d headers checked", n, goroutines*perGoroutine)
	}
	if batched.Load() == 0 {
		t.Fatal("no batch completed alongside")
	}
	if n := len(*c.live.Load()); n > 4 {
		t.Fatalf("%d connections open, MaxConns is 4", n)
	}
	if opened := totalConnections(t, c) - connectionsBefore; opened > 3 {
		t.Fatalf("%d connections opened during the run: at most 3 more were needed", opened)
	}
	t.Logf("%d single requests and %d batch items checked", checked.Load(), batched.Load())
}

// totalConnections is the daemon's count of connections ever accepted.
func totalConnections(t *testing.T, c *Client) int {
	t.Helper()
	raw, err := c.Stats(testContext(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Connections struct{ Total int } `json:"connections"`
	}
	if err := json.Unmarshal(raw, &stats); err != nil {
		t.Fatal(err)
	}
	return stats.Connections.Total
}

// Request IDs wrap around past 2^32 - 1, skipping 0 and every ID still in flight.
func TestRequestIDWraparound(t *testing.T) {
	cn := &conn{pending: map[uint32]*call{0xFFFFFFFF: {}, 1: {}, 2: {}}, lastID: 0xFFFFFFFD}
	for _, want := range []uint32{0xFFFFFFFE, 3, 4} {
		if got := cn.nextIDLocked(); got != want {
			t.Fatalf("next ID %#x, want %#x", got, want)
		}
		cn.pending[want] = &call{}
	}

	// And on a live connection, with many calls in flight across the wrap.
	d := startDaemon(t, daemonConfig{})
	c := New(d.socket(), Options{MaxConns: 1})
	defer c.Close()
	ctx := testContext(t, time.Minute)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	live := (*c.live.Load())[0]
	live.mu.Lock()
	live.lastID = 0xFFFFFFFF - 100
	live.mu.Unlock()
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				uri := fmt.Sprintf("/wrap/%d/%d", g, i)
				s, err := c.SignRequest(ctx, "domain", "a.example", "GET", uri, nil)
				want, _ := expectedHeader(t, specKey(t), "domain", "a.example", "GET", uri, nil)
				if err != nil || s.Header != want {
					t.Errorf("%s: %v %s", uri, err, s.Header)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	live.mu.Lock()
	last := live.lastID
	live.mu.Unlock()
	if last > 1000 {
		t.Fatalf("the IDs did not wrap: last %#x", last)
	}
	if (*c.live.Load())[0] != live {
		t.Fatal("the connection was replaced")
	}
}

// A small request sent after a large batch on the same connection is answered first (the batch
// runs on sigild's thread pool); each reply still reaches its own caller.
func TestRepliesOvertakeOnOneConnection(t *testing.T) {
	d := startDaemon(t, daemonConfig{})
	c := New(d.socket(), Options{MaxConns: 1})
	defer c.Close()
	ctx := testContext(t, time.Minute)
	reqs := make([]RequestToSign, 256)
	for i := range reqs {
		reqs[i] = RequestToSign{Origin: "domain", Destination: "a.example", Method: "PUT", URI: fmt.Sprintf("/send/%d", i),
			Content: []byte(`{"pdus":[{"content":{"body":"` + fmt.Sprint(i) + `"},"type":"m.room.message"}]}`)}
	}
	for attempt := 0; attempt < 20; attempt++ {
		order := make(chan string, 2)
		go func() {
			results, err := c.SignRequests(ctx, reqs)
			if err != nil || results[255].Err != nil {
				t.Errorf("batch: %v", err)
			}
			order <- "batch"
		}()
		time.Sleep(time.Millisecond)
		if err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		order <- "ping"
		first := <-order
		<-order
		if first == "ping" {
			if n := len(*c.live.Load()); n != 1 {
				t.Fatalf("%d connections", n)
			}
			return
		}
	}
	t.Fatal("the ping never overtook the batch")
}
