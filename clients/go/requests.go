package sigil

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
)

// SignedRequest is an outbound federation request's signature.
type SignedRequest struct {
	// KeyID is the key that signed, such as "ed25519:a_RVfN".
	KeyID string
	// Signature is the raw 64-byte Ed25519 signature.
	Signature []byte
	// Header is the whole Authorization header value,
	// `X-Matrix origin="…",destination="…",key="…",sig="…"`, laid out exactly as
	// matrix-media-repo's CreateXMatrixHeader lays it out.
	Header string
}

// RequestToSign is one item of SignRequests.
type RequestToSign struct {
	Origin, Destination, Method, URI string
	// Content is the JSON request body; nil (or empty) for requests without one.
	Content []byte
}

// SignResult is one item's outcome in SignRequests: Err is nil or a *StatusError.
type SignResult struct {
	SignedRequest
	Err error
}

// SignRequest signs an outbound federation request as origin (SIGN_REQUEST): the canonical
// JSON of {"content"?, "destination", "method", "origin", "uri"} with origin's signing key.
// uri is the request target exactly as sent (path and query). content is the JSON body; nil
// means the request has none and the signed object has no "content" member. (The protocol
// cannot tell nil from empty: an empty body is no body.)
//
// The returned header is checked to be exactly the one for this origin, destination, key and
// signature; a daemon that answered for another request would fail with ErrProtocol.
func (c *Client) SignRequest(ctx context.Context, origin, destination, method, uri string, content []byte) (SignedRequest, error) {
	frame, err := signRequestFrame(origin, destination, method, uri, content)
	if err != nil {
		return SignedRequest{}, err
	}
	r, err := c.roundTrip(ctx, OpSignRequest, frame)
	if err != nil {
		return SignedRequest{}, err
	}
	d := decoder{b: r.body, op: OpSignRequest}
	s := decodeSignedRequest(&d)
	if err := d.done(); err != nil {
		return SignedRequest{}, err
	}
	return s, checkHeader(s, origin, destination)
}

// SignRequests signs many requests in one frame (a SIGN_REQUEST batch). Each item succeeds or
// fails on its own; the error is for the frame as a whole (BUSY, BATCH_TOO_LARGE, DENIED…,
// or the daemon unavailable). The daemon's max_batch (256 by default) bounds len(reqs).
func (c *Client) SignRequests(ctx context.Context, reqs []RequestToSign) ([]SignResult, error) {
	frame, err := signRequestsFrame(reqs)
	if err != nil {
		return nil, err
	}
	items, err := c.batchRoundTrip(ctx, OpSignRequest, frame, len(reqs))
	if err != nil {
		return nil, err
	}
	out := make([]SignResult, len(reqs))
	for i, it := range items {
		if it.err != nil {
			out[i].Err = it.err
			continue
		}
		d := decoder{b: it.body, op: OpSignRequest}
		s := decodeSignedRequest(&d)
		if err := d.done(); err != nil {
			return nil, err
		}
		if err := checkHeader(s, reqs[i].Origin, reqs[i].Destination); err != nil {
			return nil, err
		}
		out[i].SignedRequest = s
	}
	return out, nil
}

func signRequestFrame(origin, destination, method, uri string, content []byte) ([]byte, error) {
	e := newEncoder(OpSignRequest, 16+len(origin)+len(destination)+len(method)+len(uri)+len(content))
	encodeSignRequest(e, origin, destination, method, uri, content)
	return e.finish(0)
}

func signRequestsFrame(reqs []RequestToSign) ([]byte, error) {
	hint := 2
	for _, q := range reqs {
		hint += 20 + len(q.Origin) + len(q.Destination) + len(q.Method) + len(q.URI) + len(q.Content)
	}
	e := newEncoder(OpSignRequest, hint)
	e.batch(len(reqs), func(i int) {
		q := reqs[i]
		encodeSignRequest(e, q.Origin, q.Destination, q.Method, q.URI, q.Content)
	})
	return e.finish(flagBatch)
}

func encodeSignRequest(e *encoder, origin, destination, method, uri string, content []byte) {
	e.str("origin", origin)
	e.str("destination", destination)
	e.str("method", method)
	e.str("uri", uri)
	e.bytes("content", content)
}

func decodeSignedRequest(d *decoder) SignedRequest {
	var s SignedRequest
	s.KeyID = d.str("key_id")
	s.Signature = d.take("signature", 64)
	s.Header = d.str("header")
	return s
}

// checkHeader insists on the header this request must have, byte for byte: MMR's layout with
// this origin, destination, key and signature. It allocates nothing.
func checkHeader(s SignedRequest, origin, destination string) error {
	h := s.Header
	ok := len(s.Signature) == 64
	for _, part := range [...]string{`X-Matrix origin="`, origin, `",destination="`, destination, `",key="`, s.KeyID, `",sig="`} {
		if !ok || !strings.HasPrefix(h, part) {
			ok = false
			break
		}
		h = h[len(part):]
	}
	var sig [86]byte
	if ok {
		base64.RawStdEncoding.Encode(sig[:], s.Signature)
		ok = len(h) == len(sig)+1 && h[:len(sig)] == string(sig[:]) && h[len(sig)] == '"'
	}
	if !ok {
		return fmt.Errorf("%w: sign_request reply: header %q is not the one for origin %q, destination %q and key %q",
			ErrProtocol, s.Header, origin, destination, s.KeyID)
	}
	return nil
}

type batchItem struct {
	body []byte
	err  error
}

// batchRoundTrip sends a batch frame and splits its reply into items, each with its body or
// its *StatusError.
func (c *Client) batchRoundTrip(ctx context.Context, op uint8, frame []byte, count int) ([]batchItem, error) {
	r, err := c.roundTrip(ctx, op, frame)
	if err != nil {
		return nil, err
	}
	if r.flags&flagBatch == 0 {
		return nil, protocolError(op, "batch request answered without the BATCH flag")
	}
	d := decoder{b: r.body, op: op}
	if n := int(d.u16("item_count")); d.err == nil && n != count {
		return nil, protocolError(op, "%d items answered for %d sent", n, count)
	}
	items := make([]batchItem, count)
	for i := range items {
		status := d.u8("item_status")
		body := d.bytes("item")
		if status != StatusOK {
			items[i].err = &StatusError{Status: status, Op: op, Message: decodeMessage(body)}
		} else {
			items[i].body = body
		}
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return items, nil
}
