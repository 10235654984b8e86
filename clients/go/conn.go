package sigil

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// call is one request waiting for its reply.
type call struct {
	op     uint8
	weight int64
	// ch receives the reply, unless the call reads it itself as the leader. Capacity 1, so
	// that handing it over never blocks.
	ch chan reply
	// Guarded by conn.mu:
	leader    bool // the caller reads replies for its connection
	abandoned bool // the caller gave up; its reply is dropped when it comes
	// expires is when the call gives up: its context's deadline, or CallTimeout.
	expires time.Time
	// internal, when set, takes the reply (on the reading goroutine) instead of ch.
	internal func(reply)
}

type reply struct {
	status uint8
	flags  uint8
	body   []byte
	err    error
}

// conn is one connection to sigild. Any number of calls are pipelined over it; each reply is
// matched to its call by request ID, in whatever order replies come.
//
// Writing: a caller appends its frame to wbuf and, if no one is writing, sends what is queued
// itself without blocking. What the socket does not take at once is left to the connection's
// writer goroutine, so no caller ever blocks on a full socket. Under load one send carries
// many callers' frames.
//
// Reading: a caller that finds no one reading reads itself (it leads): it sleeps in recv until
// its reply comes, handing others theirs on the way. One caller alone thus pays two system
// calls per request and no goroutine switch. If, when its reply comes, other calls still wait,
// a drainer goroutine takes over and reads until none does: under load one recv serves many
// calls, as one send does.
type conn struct {
	client *Client
	sock   *socketFD

	mu      sync.Mutex
	pending map[uint32]*call
	lastID  uint32
	wbuf    []byte
	woff    int
	writing bool  // a goroutine owns sending wbuf[woff:]
	leading bool  // a caller or a drainer reads replies
	broken  error // set once; every later call fails with it

	// The read buffer belongs to whoever leads; the lead passes under mu.
	rbuf         []byte
	rstart, rend int
	nextSweep    time.Time

	wake      chan struct{} // wakes the writer goroutine
	closed    chan struct{} // closed when the connection fails
	helloOnce sync.Once
	helloDone chan struct{} // closed when HELLO's reply (or the connection's end) came

	inflight atomic.Int32  // calls sent or queued and not answered, abandoned ones included
	maxFrame atomic.Uint32 // from HELLO; 0 until it is known
	replies  atomic.Uint64 // replies received, for telling a refusing daemon from a working one
}

// errNotSent: the connection was found gone before any byte of the frame left; the request
// may go on another connection as it is.
var errNotSent = errors.New("sigil: connection gone before the request was sent")

const (
	// A caller sends at most this many rounds of others' frames before leaving the rest to the
	// writer goroutine.
	maxDirectWriteRounds = 4
	// Buffers larger than this are dropped when they empty, rather than kept.
	keptBuffer = 1 << 20
	readBuffer = 64 << 10
)

func newConn(c *Client, fd int) *conn {
	return &conn{
		client:    c,
		sock:      &socketFD{fd: fd},
		pending:   make(map[uint32]*call),
		rbuf:      make([]byte, readBuffer),
		wake:      make(chan struct{}, 1),
		closed:    make(chan struct{}),
		helloDone: make(chan struct{}),
	}
}

// nextIDLocked picks a request ID that no call on this connection holds, abandoned calls
// included: a reply may still come for those. 0 is skipped, since the daemon uses it for
// errors about frames whose header it could not read.
func (cn *conn) nextIDLocked() uint32 {
	for {
		cn.lastID++
		if cn.lastID == 0 {
			continue
		}
		if _, taken := cn.pending[cn.lastID]; !taken {
			return cn.lastID
		}
	}
}

// send queues frame (its request ID is written into it here) and sends it unless another
// goroutine is sending. It reports whether the caller now leads (reads replies). errNotSent
// means the connection was found gone and nothing of the frame was sent.
func (cn *conn) send(cl *call, frame []byte) (lead bool, err error) {
	cn.mu.Lock()
	if cn.broken != nil {
		cn.mu.Unlock()
		return false, errNotSent
	}
	id := cn.nextIDLocked()
	binary.BigEndian.PutUint32(frame[8:12], id)
	start := len(cn.wbuf) // where this frame goes in the buffer
	cn.pending[id] = cl
	cn.inflight.Add(1)
	cn.wbuf = append(cn.wbuf, frame...)
	if !cn.leading {
		if cl.internal != nil {
			cn.leading = true
			cn.startDrainerLocked()
		} else {
			cn.leading, cl.leader, lead = true, true, true
		}
	}
	if cn.writing {
		cn.mu.Unlock()
		return lead, nil
	}
	cn.writing = true
	if cn.inflight.Load() > 1 {
		// Calls are in flight, so replies are being handed out and their callers are about
		// to send again: let them queue their frames first, and send them all at once.
		cn.mu.Unlock()
		runtime.Gosched()
		cn.mu.Lock()
	}
	if err := cn.flushLocked(); err != nil {
		// The daemon had closed the connection (it restarted, or the connection sat idle past
		// its timeout). If not a byte of this frame left, it can go on another connection.
		cn.mu.Lock()
		unsent := notSent(err) && cn.woff <= start && cn.pending[id] == cl
		if unsent {
			delete(cn.pending, id)
			cl.leader = false
			cn.inflight.Add(-1)
		}
		cn.mu.Unlock()
		cn.fail(err)
		if unsent {
			return false, errNotSent
		}
		// Otherwise the call fails with the connection: as a leader it finds out by reading;
		// as a follower fail hands it the error.
	}
	return lead, nil
}

// flushLocked sends queued frames without blocking. Called with mu held and writing set; it
// returns with mu released, and writing cleared unless the writer goroutine took over.
func (cn *conn) flushLocked() error {
	for round := 0; cn.woff < len(cn.wbuf); round++ {
		if !socketsSupported || round == maxDirectWriteRounds {
			cn.mu.Unlock()
			cn.wakeWriter()
			return nil
		}
		chunk := cn.wbuf[cn.woff:]
		cn.mu.Unlock()
		n, err := cn.sock.send(chunk, false)
		cn.mu.Lock()
		cn.woff += n
		if err != nil {
			cn.writing = false
			cn.mu.Unlock()
			return err
		}
		if n < len(chunk) {
			// The socket is full: sigild is slow or stopped. The writer waits for it.
			cn.mu.Unlock()
			cn.wakeWriter()
			return nil
		}
	}
	cn.emptiedLocked()
	cn.mu.Unlock()
	return nil
}

func (cn *conn) wakeWriter() {
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

func (cn *conn) emptiedLocked() {
	if cap(cn.wbuf) > keptBuffer {
		cn.wbuf = nil
	} else {
		cn.wbuf = cn.wbuf[:0]
	}
	cn.woff = 0
	cn.writing = false
}

// writeLoop finishes the sends callers left, blocking as long as the socket needs.
func (cn *conn) writeLoop() {
	defer cn.client.wg.Done()
	for {
		select {
		case <-cn.wake:
		case <-cn.closed:
			return
		}
		cn.mu.Lock()
		for cn.woff < len(cn.wbuf) && cn.broken == nil {
			chunk := cn.wbuf[cn.woff:]
			cn.mu.Unlock()
			n, err := cn.sock.send(chunk, true)
			cn.mu.Lock()
			cn.woff += n
			if err != nil {
				cn.mu.Unlock()
				cn.fail(err)
				return
			}
		}
		cn.emptiedLocked()
		cn.mu.Unlock()
	}
}

// await waits for cl's reply: on its channel, or by reading when it leads.
func (cn *conn) await(ctx context.Context, cl *call, lead bool) (reply, error) {
	if lead {
		return cn.lead(ctx, cl)
	}
	select {
	case r := <-cl.ch:
		return r, r.err
	case <-ctx.Done():
		cn.abandon(cl)
		return reply{}, contextError(ctx, cl.op, "waiting for the reply")
	}
}

// lead reads replies and hands each to its call, until me's own has come (me nil: the drainer,
// until no call is in flight), or me's context or deadline ends. A drainer carries on while
// calls are in flight.
func (cn *conn) lead(ctx context.Context, me *call) (reply, error) {
	var mine reply
	found := false
	for {
		handed := false
		for {
			frame, err := cn.nextFrame()
			if err == nil && frame != nil {
				var r reply
				var isMine bool
				if r, isMine, err = cn.dispatch(frame, me); isMine {
					mine, found = r, true
				} else {
					handed = true
				}
			}
			if err != nil {
				cn.fail(err)
				break
			}
			if frame == nil {
				break
			}
		}
		now := time.Now()
		cn.mu.Lock()
		if cn.broken != nil {
			cn.leading = false
			broken := cn.broken
			cn.mu.Unlock()
			if found {
				return mine, mine.err
			}
			return reply{}, broken
		}
		var expired error
		if me != nil && !found {
			if ctx.Err() != nil {
				expired = contextError(ctx, me.op, "waiting for the reply")
			} else if !now.Before(me.expires) {
				expired = deadlineError(me.op)
			}
		}
		if found || expired != nil || (me == nil && len(cn.pending) == 0) {
			if expired != nil {
				me.abandoned, me.leader = true, false
			}
			cn.passLeadLocked()
			cn.mu.Unlock()
			if expired != nil {
				return reply{}, expired
			}
			return mine, mine.err
		}
		if !now.Before(cn.nextSweep) {
			cn.sweepLocked(now)
			cn.nextSweep = now.Add(readSlice)
		}
		cn.mu.Unlock()
		if handed {
			// Let the callers just handed their replies run (and send again) before this
			// goroutine sleeps in recv, holding its processor.
			runtime.Gosched()
		}
		if err := cn.fill(); err != nil {
			cn.fail(err)
		}
	}
}

// sweepLocked gives up, for their callers, the calls whose deadline has passed: those whose
// context had none have only CallTimeout, and nothing but this to end their wait. Their IDs
// stay taken until the replies come.
func (cn *conn) sweepLocked(now time.Time) {
	for _, cl := range cn.pending {
		if !cl.abandoned && !cl.leader && cl.internal == nil && !now.Before(cl.expires) {
			cl.abandoned = true
			cl.ch <- reply{err: deadlineError(cl.op)}
		}
	}
}

// passLeadLocked stops reading: a drainer takes over while calls are in flight; otherwise the
// next caller leads.
func (cn *conn) passLeadLocked() {
	if cn.broken == nil && len(cn.pending) > 0 {
		cn.startDrainerLocked()
		return
	}
	cn.leading = false
}

// startDrainerLocked hands the lead to a goroutine that reads until a caller can take over
// or no reply is due. The client is not closed: Close fails the connection (under mu) before
// it waits for goroutines.
func (cn *conn) startDrainerLocked() {
	cn.client.wg.Add(1)
	go func() {
		defer cn.client.wg.Done()
		cn.lead(context.Background(), nil)
	}()
}

// fill reads what the socket has (waiting up to readSlice) into the read buffer.
func (cn *conn) fill() error {
	if cn.rstart == cn.rend {
		cn.rstart, cn.rend = 0, 0
		if len(cn.rbuf) > keptBuffer {
			cn.rbuf = make([]byte, readBuffer)
		}
	} else if len(cn.rbuf)-cn.rend < 4096 && cn.rstart > 0 {
		cn.rend = copy(cn.rbuf, cn.rbuf[cn.rstart:cn.rend])
		cn.rstart = 0
	}
	if cn.rend == len(cn.rbuf) {
		grown := make([]byte, 2*len(cn.rbuf))
		copy(grown, cn.rbuf[:cn.rend])
		cn.rbuf = grown
	}
	n, err := cn.sock.recv(cn.rbuf[cn.rend:])
	cn.rend += n
	return err
}

// nextFrame takes the next whole frame from the read buffer; nil when more must be read.
func (cn *conn) nextFrame() ([]byte, error) {
	buffered := cn.rend - cn.rstart
	if buffered < 4 {
		return nil, nil
	}
	length := binary.BigEndian.Uint32(cn.rbuf[cn.rstart:])
	if length < headerLength-4 || length > maxReplyLength {
		return nil, protocolError(0, "frame length %d (expected 8 to %d)", length, maxReplyLength)
	}
	total := 4 + int(length)
	if buffered < total {
		if cn.rstart+total > len(cn.rbuf) {
			grown := make([]byte, total+readBuffer)
			cn.rend = copy(grown, cn.rbuf[cn.rstart:cn.rend])
			cn.rbuf, cn.rstart = grown, 0
		}
		return nil, nil
	}
	frame := cn.rbuf[cn.rstart : cn.rstart+total]
	cn.rstart += total
	return frame, nil
}

// dispatch hands one reply frame to its call; mine reports that it is me's.
func (cn *conn) dispatch(frame []byte, me *call) (r reply, mine bool, err error) {
	op, flags, status, id := frame[5], frame[6], frame[7], binary.BigEndian.Uint32(frame[8:12])
	if frame[4] != protocolVersion || flags&flagResponse == 0 || flags&^(flagResponse|flagBatch) != 0 {
		return reply{}, false, protocolError(op, "bad frame header % x", frame[4:8])
	}
	body := append([]byte(nil), frame[headerLength:]...)
	// A frame with request ID 0 answers no call: it is the daemon refusing the connection (at
	// accept: DENIED or BUSY) or a frame it could not read. It must not reset the back-off, or a
	// client that is refused at every connection would reconnect for every call.
	if id != 0 && cn.replies.Add(1) == 1 {
		cn.client.answered()
	}
	cn.mu.Lock()
	cl := cn.pending[id]
	abandoned := false
	if cl != nil {
		delete(cn.pending, id)
		abandoned = cl.abandoned
		cl.leader = false
	}
	cn.mu.Unlock()
	if cl == nil {
		// A reply nobody asked for. With a status, it is the daemon closing the connection over
		// a frame it could not attribute (FRAME_TOO_LARGE, BAD_FRAME).
		if status != StatusOK {
			return reply{}, false, &StatusError{Status: status, Op: op, Message: decodeMessage(body)}
		}
		return reply{}, false, protocolError(op, "reply to request ID %d, which is not in flight", id)
	}
	cn.finished(cl)
	r = reply{status: status, flags: flags, body: body}
	if op != cl.op {
		r = reply{err: protocolError(cl.op, "reply carries opcode 0x%02x", op)}
	}
	if cl == me {
		return r, true, nil
	}
	if !abandoned {
		cn.deliver(cl, r)
	}
	return reply{}, false, nil
}

func (cn *conn) deliver(cl *call, r reply) {
	if cl.internal != nil {
		cl.internal(r)
	} else {
		cl.ch <- r
	}
}

// finished releases what an answered (or failed) call held.
func (cn *conn) finished(cl *call) {
	cn.inflight.Add(-1)
	cn.client.budget.release(cl.weight)
}

// abandon is called when cl's caller gives up waiting. Its ID stays taken until the reply comes.
func (cn *conn) abandon(cl *call) {
	cn.mu.Lock()
	cl.abandoned = true
	cn.mu.Unlock()
}

// fail breaks the connection: every call waiting on it gets the error, and the client forgets
// it. A leader finds out on its own.
func (cn *conn) fail(cause error) {
	cn.mu.Lock()
	if cn.broken != nil {
		cn.mu.Unlock()
		return
	}
	var se *StatusError
	if cn.replies.Load() == 0 && (errors.Is(cause, errEOF) || errors.Is(cause, syscall.ECONNRESET) || errors.Is(cause, syscall.EPIPE)) {
		// A write can fail before the reader has seen the one frame a refused connection gets;
		// look for it in what the socket still holds.
		if refusal := cn.peekRefusal(); refusal != nil {
			cause = refusal
		}
	}
	switch {
	case errors.Is(cause, ErrClosed):
		cn.broken = ErrClosed
	case errors.As(cause, &se) && cn.replies.Load() == 0 && (se.Status == StatusDenied || se.Status == StatusBusy):
		// Refused at accept, with the reason: no access rule of the listener matches this
		// process's uid and groups (DENIED), or a connection cap (BUSY). errors.As finds the
		// StatusError.
		cn.broken = unavailable("sigild refused the connection", cause)
	case errors.As(cause, &se):
		cn.broken = unavailable("the daemon closed the connection", cause)
	case cn.replies.Load() == 0 && (errors.Is(cause, errEOF) || errors.Is(cause, syscall.ECONNRESET) || errors.Is(cause, syscall.EPIPE)):
		// Not a word before closing: what sigild does to a caller that no access rule of the
		// listener matches (and to everyone, when it stops). Say so: the caller cannot tell.
		cn.broken = unavailable("sigild closed the connection before answering anything, as it does when no access "+
			"rule of the listener matches this process's uid and groups (its journal names the refusal), or when it stops", cause)
	default:
		cn.broken = unavailable("connection failed", cause)
	}
	type orphan struct {
		cl     *call
		notify bool
	}
	orphans := make([]orphan, 0, len(cn.pending))
	for _, cl := range cn.pending {
		orphans = append(orphans, orphan{cl, !cl.abandoned && !cl.leader})
	}
	cn.pending = make(map[uint32]*call)
	broken := cn.broken
	cn.mu.Unlock()

	close(cn.closed)
	cn.sock.shutdown()
	cn.helloOnce.Do(func() { close(cn.helloDone) })
	cn.client.forget(cn, broken)
	for _, o := range orphans {
		cn.finished(o.cl)
		if o.notify {
			cn.deliver(o.cl, reply{err: broken})
		}
	}
}

func decodeMessage(body []byte) string {
	d := decoder{b: body}
	return d.str("message")
}

// peekRefusal finds the frame sigild sends a connection it refuses at accept (request ID 0, a
// status, the reason as its message) at the start of what the socket still holds, unread.
func (cn *conn) peekRefusal() *StatusError {
	buf := make([]byte, 4096)
	n := cn.sock.peek(buf)
	if n < headerLength {
		return nil
	}
	length := int(binary.BigEndian.Uint32(buf[0:4]))
	if length < headerLength-4 || 4+length > n {
		return nil
	}
	op, flags, status, id := buf[5], buf[6], buf[7], binary.BigEndian.Uint32(buf[8:12])
	if buf[4] != protocolVersion || flags&flagResponse == 0 || status == StatusOK || id != 0 {
		return nil
	}
	return &StatusError{Status: status, Op: op, Message: decodeMessage(buf[headerLength : 4+length])}
}
