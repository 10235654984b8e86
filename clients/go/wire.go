package sigil

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

const (
	protocolVersion = 1
	headerLength    = 12 // length u32, version, opcode, flags, status, request_id u32
	flagBatch       = 0x01
	flagResponse    = 0x80

	// Every daemon accepts frames this large: max_frame cannot be configured lower. Larger
	// requests wait until the connection's HELLO reply has said what the daemon accepts.
	smallestMaxFrame = 1024
	// The protocol's default max_frame, assumed when HELLO gives no answer.
	defaultMaxFrame = 65536
	// Replies are refused above this: PROTOCOL.md bounds a reply by 4 x max_frame + 1 KiB x
	// max_batch, which is at most 128 MiB with any configuration. It bounds what a broken daemon
	// can make the client allocate.
	maxReplyLength = 128 << 20
)

// encoder builds one request frame: the 12-byte header (completed by finish), then the body.
// The first field that cannot be encoded is remembered and reported by finish.
type encoder struct {
	buf []byte
	op  uint8
	err error
}

func newEncoder(op uint8, sizeHint int) *encoder {
	return &encoder{buf: make([]byte, headerLength, headerLength+sizeHint), op: op}
}

func (e *encoder) fail(field, format string, args ...interface{}) {
	if e.err == nil {
		e.err = fmt.Errorf("%w: %s: %s: %s", ErrInvalidArgument, OpName(e.op), field, fmt.Sprintf(format, args...))
	}
}

func (e *encoder) u8(v uint8)   { e.buf = append(e.buf, v) }
func (e *encoder) u16(v uint16) { e.buf = binary.BigEndian.AppendUint16(e.buf, v) }
func (e *encoder) u32(v uint32) { e.buf = binary.BigEndian.AppendUint32(e.buf, v) }
func (e *encoder) u64(v uint64) { e.buf = binary.BigEndian.AppendUint64(e.buf, v) }

// str writes a `string` field: u16 length, then UTF-8 bytes.
func (e *encoder) str(field, s string) {
	if len(s) > 0xFFFF {
		e.fail(field, "%d bytes; a string field holds at most 65535", len(s))
		return
	}
	if !utf8.ValidString(s) {
		e.fail(field, "not valid UTF-8")
		return
	}
	e.u16(uint16(len(s)))
	e.buf = append(e.buf, s...)
}

// bytes writes a `bytes` field: u32 length, then the bytes.
func (e *encoder) bytes(field string, b []byte) {
	if uint64(len(b)) > 0xFFFFFFFF-headerLength {
		e.fail(field, "%d bytes, more than a frame can hold", len(b))
		return
	}
	e.u32(uint32(len(b)))
	e.buf = append(e.buf, b...)
}

func (e *encoder) fixed(b []byte) { e.buf = append(e.buf, b...) }

// batch writes the batch body: item_count, then each item as a `bytes` field whose content
// item(i) writes in place.
func (e *encoder) batch(count int, item func(i int)) {
	if count == 0 {
		e.fail("item_count", "a batch needs at least one item")
		return
	}
	if count > 0xFFFF {
		e.fail("item_count", "%d items; a batch holds at most 65535 (and the daemon's max_batch, 256 by default)", count)
		return
	}
	e.u16(uint16(count))
	for i := 0; i < count; i++ {
		start := len(e.buf)
		e.u32(0)
		item(i)
		binary.BigEndian.PutUint32(e.buf[start:], uint32(len(e.buf)-start-4))
	}
}

// finish fills in the header. The request ID is written when the frame is queued.
func (e *encoder) finish(flags uint8) ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	if uint64(len(e.buf)-4) > 0xFFFFFFFF {
		return nil, fmt.Errorf("%w: %s: %d bytes, more than a frame can hold", ErrTooLarge, OpName(e.op), len(e.buf))
	}
	binary.BigEndian.PutUint32(e.buf[0:], uint32(len(e.buf)-4))
	e.buf[4] = protocolVersion
	e.buf[5] = e.op
	e.buf[6] = flags
	e.buf[7] = 0
	return e.buf, nil
}

// decoder reads a reply body field by field. The first short read or bad value is remembered;
// done reports it, or bytes left over after the last field.
type decoder struct {
	b   []byte
	op  uint8
	err error
}

func (d *decoder) take(field string, n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = protocolError(d.op, "%s: needs %d bytes, %d left", field, n, len(d.b))
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) u8(field string) uint8 {
	if b := d.take(field, 1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if b := d.take(field, 2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if b := d.take(field, 4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if b := d.take(field, 8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) str(field string) string {
	n := d.u16(field)
	return string(d.take(field, uint64(n)))
}

// bytes returns a sub-slice of the reply body, which belongs to this call alone.
func (d *decoder) bytes(field string) []byte {
	return d.take(field, uint64(d.u32(field)))
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = protocolError(d.op, "%d bytes left over after the last field", len(d.b))
	}
	return d.err
}
