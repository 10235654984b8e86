package sigil

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"time"
)

// Hello is the daemon's answer to HELLO: its limits, and what this caller may do.
type Hello struct {
	ProtocolVersion uint8
	// MaxFrame, MaxBatch and MaxInFlight are the limits of the connection that asked.
	MaxFrame    uint32
	MaxBatch    uint16
	MaxInFlight uint32
	// Ops are the operations this caller may use (OpSignRequest…).
	Ops []uint8
	// Servers are server names this caller may use, sorted; with many servers, only those
	// that fit in one reply (see HelloPage).
	Servers       []string
	DaemonVersion string
	// ServerTotal and NextCursor are set by HelloPage only: how many servers this caller may
	// use, and the cursor for the next page ("" when Servers completes the list).
	ServerTotal uint32
	NextCursor  string
}

// Allows reports whether the caller may use op.
func (h Hello) Allows(op uint8) bool {
	for _, o := range h.Ops {
		if o == op {
			return true
		}
	}
	return false
}

// Hello asks the daemon for its limits and this caller's rights (HELLO). Calls never need it
// first; the client sends its own HELLO on each connection it opens.
func (c *Client) Hello(ctx context.Context) (Hello, error) {
	e := newEncoder(OpHello, 2+len(c.opt.ClientName))
	e.str("client_name", c.opt.ClientName)
	return c.hello(ctx, e, false)
}

// HelloPage is Hello in its paged form: one page of at most 1,000 server names, from cursor
// ("" for the first page), with ServerTotal and NextCursor set. Daemons older than the paged
// form answer it with BAD_REQUEST.
func (c *Client) HelloPage(ctx context.Context, cursor string) (Hello, error) {
	e := newEncoder(OpHello, 8+len(c.opt.ClientName)+len(cursor))
	e.str("client_name", c.opt.ClientName)
	e.u32(0) // features: none defined
	e.str("cursor", cursor)
	return c.hello(ctx, e, true)
}

func (c *Client) hello(ctx context.Context, e *encoder, paged bool) (Hello, error) {
	frame, err := e.finish(0)
	if err != nil {
		return Hello{}, err
	}
	r, err := c.roundTrip(ctx, OpHello, frame)
	if err != nil {
		return Hello{}, err
	}
	d := decoder{b: r.body, op: OpHello}
	var h Hello
	h.ProtocolVersion = d.u8("protocol_version")
	h.MaxFrame = d.u32("max_frame")
	h.MaxBatch = d.u16("max_batch")
	h.MaxInFlight = d.u32("max_in_flight")
	h.Ops = append([]uint8(nil), d.take("ops", uint64(d.u16("op_count")))...)
	n := int(d.u16("server_count"))
	for i := 0; i < n && d.err == nil; i++ {
		h.Servers = append(h.Servers, d.str("server_name"))
	}
	h.DaemonVersion = d.str("daemon_version")
	if paged {
		h.ServerTotal = d.u32("server_total")
		h.NextCursor = d.str("next_cursor")
	}
	return h, d.done()
}

// Ping checks that the daemon answers (PING), with a random payload it must echo.
func (c *Client) Ping(ctx context.Context) error {
	var payload [8]byte
	if _, err := rand.Read(payload[:]); err != nil {
		return err
	}
	echo, err := c.PingPayload(ctx, payload[:])
	if err != nil {
		return err
	}
	if !bytes.Equal(echo, payload[:]) {
		return protocolError(OpPing, "echoed %x for %x", echo, payload)
	}
	return nil
}

// PingPayload sends payload (at most 64 KiB) in a PING and returns the daemon's echo.
func (c *Client) PingPayload(ctx context.Context, payload []byte) ([]byte, error) {
	frame, err := pingFrame(payload)
	if err != nil {
		return nil, err
	}
	r, err := c.roundTrip(ctx, OpPing, frame)
	if err != nil {
		return nil, err
	}
	d := decoder{b: r.body, op: OpPing}
	echo := d.bytes("payload")
	return echo, d.done()
}

func pingFrame(payload []byte) ([]byte, error) {
	e := newEncoder(OpPing, 4+len(payload))
	e.bytes("payload", payload)
	return e.finish(0)
}

// Key states in ListKeys.
const (
	KeySigning uint8 = 0 // the first active key: it signs requests and JSON
	KeyActive  uint8 = 1 // published in verify_keys; signs key documents
	KeyRetired uint8 = 2 // published in old_verify_keys
)

// ServerKeys is one server's keys in ListKeys.
type ServerKeys struct {
	ServerName string
	Keys       []KeyInfo
}

// KeyInfo describes one public key.
type KeyInfo struct {
	KeyID     string
	PublicKey ed25519.PublicKey
	State     uint8
	// ExpiredTS is when a retired key stopped being used, in milliseconds since the epoch; 0
	// for keys in use.
	ExpiredTS uint64
}

// ListKeys lists the public keys of every server this caller may use (LIST_KEYS). When the
// listing does not fit in one reply and the daemon pages it, ListKeys fetches every page.
func (c *Client) ListKeys(ctx context.Context) ([]ServerKeys, error) {
	frame, err := newEncoder(OpListKeys, 0).finish(0)
	if err != nil {
		return nil, err
	}
	r, err := c.roundTrip(ctx, OpListKeys, frame)
	var se *StatusError
	if errors.As(err, &se) && se.Status == StatusBadRequest {
		// Too many servers for one reply: the daemon asks for the paged form. A daemon that
		// has no paged form refuses that too, and then the first refusal is the answer.
		if all, perr := c.listAllPages(ctx); !errors.As(perr, &se) || se.Status != StatusBadRequest {
			return all, perr
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	d := decoder{b: r.body, op: OpListKeys}
	servers := decodeServerKeys(&d)
	return servers, d.done()
}

func (c *Client) listAllPages(ctx context.Context) ([]ServerKeys, error) {
	var all []ServerKeys
	cursor := ""
	seen := map[string]bool{}
	for {
		page, next, err := c.ListKeysPage(ctx, cursor)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		if seen[next] {
			return nil, protocolError(OpListKeys, "cursor %q came back twice", next)
		}
		seen[next] = true
		cursor = next
	}
}

// ListKeysPage is one page of LIST_KEYS in its paged form: at most 1,000 servers from cursor
// ("" for the first page), and the cursor of the next page ("" after the last). Daemons older
// than the paged form answer it with BAD_REQUEST.
func (c *Client) ListKeysPage(ctx context.Context, cursor string) ([]ServerKeys, string, error) {
	e := newEncoder(OpListKeys, 2+len(cursor))
	e.str("cursor", cursor)
	frame, err := e.finish(0)
	if err != nil {
		return nil, "", err
	}
	r, err := c.roundTrip(ctx, OpListKeys, frame)
	if err != nil {
		return nil, "", err
	}
	d := decoder{b: r.body, op: OpListKeys}
	servers := decodeServerKeys(&d)
	next := d.str("next_cursor")
	return servers, next, d.done()
}

func decodeServerKeys(d *decoder) []ServerKeys {
	n := int(d.u16("server_count"))
	var out []ServerKeys
	for i := 0; i < n && d.err == nil; i++ {
		s := ServerKeys{ServerName: d.str("server_name")}
		k := int(d.u16("key_count"))
		for j := 0; j < k && d.err == nil; j++ {
			var ki KeyInfo
			ki.KeyID = d.str("key_id")
			ki.PublicKey = ed25519.PublicKey(d.take("public_key", ed25519.PublicKeySize))
			ki.State = d.u8("state")
			ki.ExpiredTS = d.u64("expired_ts")
			s.Keys = append(s.Keys, ki)
		}
		out = append(out, s)
	}
	return out
}

// KeyDocument returns serverName's signed /_matrix/key/v2/server body (KEY_DOCUMENT), valid
// until validUntil; the zero time means now plus the daemon's configured validity.
func (c *Client) KeyDocument(ctx context.Context, serverName string, validUntil time.Time) ([]byte, error) {
	frame, err := keyDocumentFrame(serverName, validUntil)
	if err != nil {
		return nil, err
	}
	r, err := c.roundTrip(ctx, OpKeyDocument, frame)
	if err != nil {
		return nil, err
	}
	d := decoder{b: r.body, op: OpKeyDocument}
	doc := d.bytes("json")
	return doc, d.done()
}

func keyDocumentFrame(serverName string, validUntil time.Time) ([]byte, error) {
	e := newEncoder(OpKeyDocument, 10+len(serverName))
	e.str("server_name", serverName)
	var ts uint64
	if !validUntil.IsZero() {
		if ms := validUntil.UnixMilli(); ms > 0 {
			ts = uint64(ms)
		} else {
			e.fail("valid_until_ts", "%v is not after the epoch", validUntil)
		}
	}
	e.u64(ts)
	return e.finish(0)
}

// Stats returns the daemon's counters (STATS), one JSON object; docs/PROTOCOL.md lists its
// fields, and new ones may appear.
func (c *Client) Stats(ctx context.Context) (json.RawMessage, error) {
	frame, err := newEncoder(OpStats, 0).finish(0)
	if err != nil {
		return nil, err
	}
	r, err := c.roundTrip(ctx, OpStats, frame)
	if err != nil {
		return nil, err
	}
	d := decoder{b: r.body, op: OpStats}
	stats := d.bytes("json")
	if err := d.done(); err != nil {
		return nil, err
	}
	if !json.Valid(stats) {
		return nil, protocolError(OpStats, "the counters are not valid JSON")
	}
	return stats, nil
}
