package sigil

import (
	"context"
	"sync"
)

// budget bounds the bytes of requests in flight (sent or queued, and not yet answered),
// including requests whose callers gave up: their IDs stay reserved until the reply comes or
// the connection breaks. Callers beyond it wait, in arrival order, as long as their context
// allows. This is what keeps a stopped daemon from growing the client's memory.
type budget struct {
	mu      sync.Mutex
	avail   int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

const (
	// The bytes of requests a Client keeps in flight at most.
	inFlightBudget = 8 << 20
	// What even the smallest request weighs: the ID, the pending entry and the reply it holds.
	requestWeight = 256
)

func newBudget(n int64) *budget { return &budget{avail: n} }

// weight is what a frame of n bytes costs; no request may weigh more than the whole budget,
// so that one large request can always go, alone.
func weight(n int) int64 {
	w := int64(n)
	if w < requestWeight {
		w = requestWeight
	}
	if w > inFlightBudget {
		w = inFlightBudget
	}
	return w
}

// tryAcquire takes n if it is free and no one waits before.
func (b *budget) tryAcquire(n int64) bool {
	b.mu.Lock()
	ok := len(b.waiters) == 0 && b.avail >= n
	if ok {
		b.avail -= n
	}
	b.mu.Unlock()
	return ok
}

func (b *budget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.avail >= n {
		b.avail -= n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		select {
		case <-w.ready:
			// Granted while giving up: hand it back.
			b.avail += n
		default:
			for i, x := range b.waiters {
				if x == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
		}
		b.grantLocked()
		b.mu.Unlock()
		return ctx.Err()
	}
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.avail += n
	b.grantLocked()
	b.mu.Unlock()
}

func (b *budget) grantLocked() {
	for len(b.waiters) > 0 && b.avail >= b.waiters[0].n {
		w := b.waiters[0]
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
		b.avail -= w.n
		close(w.ready)
	}
	if len(b.waiters) == 0 {
		b.waiters = nil
	}
}
