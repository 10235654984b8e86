package sigil

import (
	"context"
	"fmt"
	"time"
)

// sendHello queues a HELLO as a new connection's first frame. Nothing waits for it: it tells the
// daemon who is calling (for its logs) and tells the client the connection's max_frame, which
// only requests larger than any daemon's smallest max_frame ever wait for.
func (cn *conn) sendHello(clientName string) {
	e := newEncoder(OpHello, 2+len(clientName))
	e.str("client_name", clientName)
	frame, err := e.finish(0)
	if err != nil {
		cn.helloAnswered(defaultMaxFrame)
		return
	}
	cl := &call{op: OpHello, internal: func(r reply) {
		maxFrame := uint32(defaultMaxFrame)
		if r.err == nil && r.status == StatusOK {
			d := decoder{b: r.body, op: OpHello}
			d.u8("protocol_version")
			if m := d.u32("max_frame"); d.err == nil && m >= smallestMaxFrame {
				maxFrame = m
			}
		}
		cn.helloAnswered(maxFrame)
	}}
	if _, err := cn.send(cl, frame); err != nil {
		cn.helloAnswered(defaultMaxFrame)
	}
}

func (cn *conn) helloAnswered(maxFrame uint32) {
	cn.helloOnce.Do(func() {
		cn.maxFrame.Store(maxFrame)
		close(cn.helloDone)
	})
}

// checkSize refuses a frame larger than the connection's max_frame, before it is sent: the
// daemon would answer FRAME_TOO_LARGE and close the connection, failing every call on it.
func (cn *conn) checkSize(ctx context.Context, deadline time.Time, op uint8, frameBytes int) error {
	length := frameBytes - 4
	if length <= smallestMaxFrame {
		return nil
	}
	max := cn.maxFrame.Load()
	if max == 0 {
		ctx, cancel := bounded(ctx, deadline)
		defer cancel()
		select {
		case <-cn.helloDone:
		case <-ctx.Done():
			return contextError(ctx, op, "waiting for the daemon's limits (HELLO)")
		}
		if max = cn.maxFrame.Load(); max == 0 {
			cn.mu.Lock()
			err := cn.broken
			cn.mu.Unlock()
			return err
		}
	}
	if uint64(length) > uint64(max) {
		return fmt.Errorf("%w: %s: the frame's length is %d bytes and this daemon accepts at most %d (limits.max_frame): send fewer or smaller items",
			ErrTooLarge, OpName(op), length, max)
	}
	return nil
}
