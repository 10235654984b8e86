package sigil

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Client calls one sigild socket. It is safe for concurrent use by any number of goroutines:
// their calls are pipelined over at most Options.MaxConns connections. It connects on first
// use, and again after a connection breaks (for instance when sigild restarts), so one Client
// lives as long as the program.
type Client struct {
	path   string
	opt    Options
	budget *budget
	calls  sync.Pool
	wg     sync.WaitGroup // the connections' writer and drainer goroutines

	live atomic.Pointer[[]*conn] // read without the lock on every call

	mu       sync.Mutex
	closed   bool
	dialing  int
	dialDone chan struct{} // closed when a dial ends; nil when no one waits
	failures int           // dials that failed in a row
	retryAt  time.Time     // no dial before this, after failures
	dialErr  error
}

// Back-off after failed dials, and connections closed before any answer: 20 ms, doubling to
// 1 s, until a connection answers. Calls in between fail at once.
const (
	firstBackoff = 20 * time.Millisecond
	maxBackoff   = time.Second
)

// New returns a client for the sigild socket at socketPath. It does no I/O: the first call
// connects.
func New(socketPath string, opts Options) *Client {
	c := &Client{path: socketPath, opt: opts.resolved(), budget: newBudget(inFlightBudget)}
	c.calls.New = func() interface{} { return &call{ch: make(chan reply, 1)} }
	return c
}

// Close closes every connection; calls in flight return ErrClosed, and so do later calls. It
// returns once the client's goroutines have ended.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var conns []*conn
	if p := c.live.Swap(nil); p != nil {
		conns = *p
	}
	c.wakeDialWaitersLocked()
	c.mu.Unlock()
	for _, cn := range conns {
		cn.fail(ErrClosed)
	}
	c.wg.Wait()
	return nil
}

// roundTrip sends one frame and waits for its reply. A non-zero status comes back as a
// *StatusError, except for batch frames, whose callers read the per-item statuses.
//
// A context without a deadline gets CallTimeout, enforced without a timer of its own on the
// common path: the goroutine reading replies expires calls (see conn.sweepLocked).
func (c *Client) roundTrip(ctx context.Context, op uint8, frame []byte) (reply, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.opt.CallTimeout)
	}
	if ctx.Err() != nil {
		return reply{}, contextError(ctx, op, "starting")
	}
	w := weight(len(frame))
	if !c.budget.tryAcquire(w) {
		bctx, cancel := bounded(ctx, deadline)
		err := c.budget.acquire(bctx, w)
		cancel()
		if err != nil {
			return reply{}, contextError(bctx, op, "waiting for earlier requests to be answered")
		}
	}
	cl := c.calls.Get().(*call)
	cl.op, cl.weight, cl.abandoned, cl.leader, cl.expires = op, w, false, false, deadline
	var cn *conn
	var lead bool
	err := errNotSent
	// A connection found gone before the frame left (sigild restarted, or closed it for
	// idling) is dropped, and the frame goes on another. Each attempt drops one connection.
	for attempt := 0; err == errNotSent && attempt <= c.opt.MaxConns; attempt++ {
		if cn, err = c.conn(ctx, deadline, op); err == nil {
			if err = cn.checkSize(ctx, deadline, op, len(frame)); err == nil {
				lead, err = cn.send(cl, frame)
			}
		}
	}
	if err == errNotSent {
		err = unavailable(OpName(op)+": connection closed by the daemon", nil)
	}
	if err != nil {
		c.budget.release(w)
		c.calls.Put(cl)
		return reply{}, err
	}
	r, err := cn.await(ctx, cl, lead)
	if err != nil {
		return reply{}, err // cl may still be handed a reply: not reused
	}
	c.calls.Put(cl)
	return c.settle(op, r)
}

// bounded is ctx, ending at deadline at the latest, for the rare waits that need a context.
func bounded(ctx context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, deadline)
}

// deadlineError is the error of a call whose deadline passed with no reply.
func deadlineError(op uint8) error {
	return unavailable(OpName(op)+": waiting for the reply", context.DeadlineExceeded)
}

func (c *Client) settle(op uint8, r reply) (reply, error) {
	if r.err != nil {
		return reply{}, r.err
	}
	if r.status != StatusOK {
		return reply{}, &StatusError{Status: r.status, Op: op, Message: decodeMessage(r.body)}
	}
	return r, nil
}

// conn returns the connection to send on: the least busy one, or a new one while fewer than
// MaxConns are open and all are busy.
func (c *Client) conn(ctx context.Context, deadline time.Time, op uint8) (*conn, error) {
	if p := c.live.Load(); p != nil {
		if best, full := leastBusy(*p, c.opt.MaxConns); best != nil && (full || best.inflight.Load() == 0) {
			return best, nil
		}
	}
	ctx, cancel := bounded(ctx, deadline)
	defer cancel()
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		var conns []*conn
		if p := c.live.Load(); p != nil {
			conns = *p
		}
		best, _ := leastBusy(conns, c.opt.MaxConns)
		if best != nil && (best.inflight.Load() == 0 || len(conns)+c.dialing >= c.opt.MaxConns) {
			c.mu.Unlock()
			return best, nil
		}
		if len(conns)+c.dialing < c.opt.MaxConns {
			if wait := time.Until(c.retryAt); wait > 0 {
				err, failures := c.dialErr, c.failures
				c.mu.Unlock()
				if best != nil {
					return best, nil
				}
				return nil, unavailable(fmt.Sprintf("%s: not reconnecting for another %v after %d failed attempts", OpName(op), wait.Round(time.Millisecond), failures), err)
			}
			c.dialing++
			c.mu.Unlock()
			return c.dial(ctx, op)
		}
		// Every slot is being dialled: wait for one of those dials.
		if c.dialDone == nil {
			c.dialDone = make(chan struct{})
		}
		done := c.dialDone
		c.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, contextError(ctx, op, "waiting for a connection")
		}
	}
}

// leastBusy is the open connection with the fewest calls in flight; full reports whether no
// more may be opened.
func leastBusy(conns []*conn, max int) (best *conn, full bool) {
	var least int32
	for _, cn := range conns {
		if n := cn.inflight.Load(); best == nil || n < least {
			best, least = cn, n
		}
	}
	return best, len(conns) >= max
}

// dial opens a connection, starts its goroutines and queues its HELLO. The caller has counted
// itself in c.dialing.
func (c *Client) dial(ctx context.Context, op uint8) (*conn, error) {
	fd, err := dialUnix(ctx, c.path, c.opt.DialTimeout)
	c.mu.Lock()
	c.dialing--
	c.wakeDialWaitersLocked()
	if err != nil {
		cancelled := ctx.Err() != nil && errors.Is(err, ctx.Err())
		if !cancelled {
			c.noteFailureLocked(err)
		}
		c.mu.Unlock()
		if cancelled {
			return nil, contextError(ctx, op, "connecting")
		}
		return nil, unavailable(OpName(op)+": cannot connect to "+c.path, err)
	}
	if c.closed {
		c.mu.Unlock()
		closeSocket(fd)
		return nil, ErrClosed
	}
	// failures stays until the connection answers (see forget): a daemon that accepts and
	// closes at once must back off as one that refuses to connect.
	c.retryAt, c.dialErr = time.Time{}, nil
	cn := newConn(c, fd)
	var conns []*conn
	if p := c.live.Load(); p != nil {
		conns = append(conns, *p...)
	}
	conns = append(conns, cn)
	c.live.Store(&conns)
	c.wg.Add(1)
	c.mu.Unlock()
	go cn.writeLoop()
	cn.sendHello(c.opt.ClientName)
	return cn, nil
}

// noteFailureLocked starts or lengthens the back-off after a failed dial, or a connection the
// daemon closed before answering anything.
func (c *Client) noteFailureLocked(err error) {
	backoff := firstBackoff << c.failures
	if c.failures >= 6 || backoff > maxBackoff {
		backoff = maxBackoff
	} else {
		c.failures++
	}
	c.retryAt = time.Now().Add(backoff)
	c.dialErr = err
}

// answered ends the back-off: a connection has answered.
func (c *Client) answered() {
	c.mu.Lock()
	c.failures = 0
	c.mu.Unlock()
}

func (c *Client) wakeDialWaitersLocked() {
	if c.dialDone != nil {
		close(c.dialDone)
		c.dialDone = nil
	}
}

// forget drops a broken connection, so that the next call dials again.
func (c *Client) forget(cn *conn, broken error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cn.replies.Load() == 0 && !c.closed {
		// Accepted and closed without a word (a caller no rule admits, sigild at its
		// connection limit, a socket whose daemon died): back off as for a failed dial.
		c.noteFailureLocked(broken)
	} else {
		c.failures = 0
		c.retryAt = time.Time{}
	}
	p := c.live.Load()
	if p == nil {
		return
	}
	conns := make([]*conn, 0, len(*p))
	for _, x := range *p {
		if x != cn {
			conns = append(conns, x)
		}
	}
	c.live.Store(&conns)
	c.wakeDialWaitersLocked()
}
