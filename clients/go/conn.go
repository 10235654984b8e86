package sigil

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// call is one request waiting for its reply.
type call struct {
	op     uint8
	weight int64
	ch     chan reply // capacity 1: the reader never blocks on it
	// abandoned: the caller gave up; the reply is dropped when it comes. Guarded by conn.mu.
	abandoned bool
	// internal, when set, takes the reply on the reader goroutine instead of ch.
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
// Writes: a caller appends its frame to wbuf and, if no one is writing, writes what is queued
// itself with a non-blocking system call. Whatever the socket does not take at once is left
// to the connection's writer goroutine, so a caller never blocks on the socket and its context
// always decides how long it waits. Under load one write carries many callers' frames.
type conn struct {
	client *Client
	nc     net.Conn
	raw    syscall.RawConn // for non-blocking writes; nil where the platform has none

	mu      sync.Mutex
	pending map[uint32]*call
	lastID  uint32
	wbuf    []byte
	woff    int
	writing bool  // a goroutine owns writing wbuf[woff:]
	broken  error // set once; every later call fails with it

	wake      chan struct{} // wakes the writer goroutine
	closed    chan struct{} // closed when the connection fails
	helloOnce sync.Once
	helloDone chan struct{} // closed when HELLO's reply (or the connection's end) came

	inflight atomic.Int32  // calls sent or queued and not answered, abandoned ones included
	maxFrame atomic.Uint32 // from HELLO; 0 until it is known
	replies  atomic.Uint64 // replies received, for telling a refusing daemon from a working one
}

// A caller writes at most this many rounds of others' frames before leaving the rest to the
// writer goroutine, so that no caller is held up writing for everyone else.
const maxDirectWriteRounds = 4

// Write buffers larger than this are dropped when they empty, rather than kept.
const keptWriteBuffer = 1 << 20

func newConn(c *Client, nc net.Conn) *conn {
	cn := &conn{
		client:    c,
		nc:        nc,
		pending:   make(map[uint32]*call),
		wake:      make(chan struct{}, 1),
		closed:    make(chan struct{}),
		helloDone: make(chan struct{}),
	}
	if sc, ok := nc.(syscall.Conn); ok && nonBlockingWrites {
		if raw, err := sc.SyscallConn(); err == nil {
			cn.raw = raw
		}
	}
	return cn
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

// send queues frame (its request ID is filled in here) and writes it out unless another
// goroutine is already writing. The reply, or the connection's failure, goes to cl.
func (cn *conn) send(cl *call, frame []byte) error {
	cn.mu.Lock()
	if cn.broken != nil {
		err := cn.broken
		cn.mu.Unlock()
		return err
	}
	id := cn.nextIDLocked()
	binary.BigEndian.PutUint32(frame[8:12], id)
	cn.pending[id] = cl
	cn.inflight.Add(1)
	cn.wbuf = append(cn.wbuf, frame...)
	if cn.writing {
		cn.mu.Unlock()
		return nil
	}
	cn.writing = true
	cn.flushLocked()
	return nil
}

// flushLocked writes queued frames without blocking. Called with mu held and writing set; it
// returns with mu released, and writing cleared unless the writer goroutine took over.
func (cn *conn) flushLocked() {
	for round := 0; cn.woff < len(cn.wbuf); round++ {
		if cn.raw == nil || round == maxDirectWriteRounds {
			cn.mu.Unlock()
			cn.wakeWriter()
			return
		}
		chunk := cn.wbuf[cn.woff:]
		cn.mu.Unlock()
		n, err := writeNonBlocking(cn.raw, chunk)
		cn.mu.Lock()
		cn.woff += n
		if err != nil {
			cn.mu.Unlock()
			cn.fail(err)
			return
		}
		if n < len(chunk) {
			// The socket is full: the daemon is slow or stopped. Let the writer wait for it.
			cn.mu.Unlock()
			cn.wakeWriter()
			return
		}
	}
	cn.emptiedLocked()
	cn.mu.Unlock()
}

func (cn *conn) wakeWriter() {
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

func (cn *conn) emptiedLocked() {
	if cap(cn.wbuf) > keptWriteBuffer {
		cn.wbuf = nil
	} else {
		cn.wbuf = cn.wbuf[:0]
	}
	cn.woff = 0
	cn.writing = false
}

// writeLoop finishes writes the callers left, blocking as long as the socket needs.
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
			n, err := cn.nc.Write(chunk)
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

// readLoop reads replies and hands each to its call, until the connection fails.
func (cn *conn) readLoop() {
	defer cn.client.wg.Done()
	r := bufio.NewReaderSize(cn.nc, 64<<10)
	var h [headerLength]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			cn.fail(err)
			return
		}
		length := binary.BigEndian.Uint32(h[0:4])
		op, flags, status, id := h[5], h[6], h[7], binary.BigEndian.Uint32(h[8:12])
		if length < headerLength-4 || length > maxReplyLength {
			cn.fail(protocolError(op, "frame length %d (expected 8 to %d)", length, maxReplyLength))
			return
		}
		if h[4] != protocolVersion || flags&flagResponse == 0 || flags&^(flagResponse|flagBatch) != 0 {
			cn.fail(protocolError(op, "bad frame header % x", h[4:8]))
			return
		}
		body := make([]byte, length-(headerLength-4))
		if _, err := io.ReadFull(r, body); err != nil {
			cn.fail(err)
			return
		}
		cn.replies.Add(1)
		cn.mu.Lock()
		cl := cn.pending[id]
		abandoned := false
		if cl != nil {
			delete(cn.pending, id)
			abandoned = cl.abandoned
		}
		cn.mu.Unlock()
		if cl == nil {
			// A reply nobody asked for. With a status, it is the daemon closing the connection
			// over a frame it could not attribute (FRAME_TOO_LARGE, BAD_FRAME).
			if status != StatusOK {
				cn.fail(&StatusError{Status: status, Op: op, Message: decodeMessage(body)})
			} else {
				cn.fail(protocolError(op, "reply to request ID %d, which is not in flight", id))
			}
			return
		}
		cn.finished(cl)
		if abandoned {
			continue
		}
		rep := reply{status: status, flags: flags, body: body}
		if op != cl.op {
			rep = reply{err: protocolError(cl.op, "reply carries opcode 0x%02x", op)}
		}
		cn.deliver(cl, rep)
	}
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

// abandon is called when cl's caller gives up. Its ID stays taken until the reply comes.
func (cn *conn) abandon(cl *call) {
	cn.mu.Lock()
	cl.abandoned = true
	cn.mu.Unlock()
}

// fail breaks the connection: every call on it gets the error, and the client forgets it.
func (cn *conn) fail(cause error) {
	cn.mu.Lock()
	if cn.broken != nil {
		cn.mu.Unlock()
		return
	}
	var se *StatusError
	switch {
	case errors.Is(cause, ErrClosed):
		cn.broken = ErrClosed
	case errors.As(cause, &se):
		cn.broken = unavailable("the daemon closed the connection", cause)
	case errors.Is(cause, io.EOF) || errors.Is(cause, io.ErrUnexpectedEOF):
		cn.broken = unavailable("connection closed by the daemon", cause)
	default:
		cn.broken = unavailable("connection failed", cause)
	}
	pending := cn.pending
	cn.pending = make(map[uint32]*call)
	broken := cn.broken
	type orphan struct {
		cl        *call
		abandoned bool
	}
	orphans := make([]orphan, 0, len(pending))
	for _, cl := range pending {
		orphans = append(orphans, orphan{cl, cl.abandoned})
	}
	cn.mu.Unlock()

	close(cn.closed)
	cn.nc.Close()
	cn.helloOnce.Do(func() { close(cn.helloDone) })
	cn.client.forget(cn)
	for _, o := range orphans {
		cn.finished(o.cl)
		if !o.abandoned {
			cn.deliver(o.cl, reply{err: broken})
		}
	}
}

func decodeMessage(body []byte) string {
	d := decoder{b: body}
	return d.str("message")
}
