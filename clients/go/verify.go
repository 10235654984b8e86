package sigil

import (
	"context"
	"crypto/ed25519"
	"fmt"
)

// Verify checks an Ed25519 signature over message with the given public key (VERIFY, key
// mode 0). A signature that is not 64 bytes is simply invalid. Results are libsodium's:
// non-canonical signatures and small-order keys are refused.
func (c *Client) Verify(ctx context.Context, publicKey ed25519.PublicKey, message, signature []byte) (bool, error) {
	return c.verify(ctx, verifyFrame(publicKey, message, signature))
}

func verifyFrame(publicKey ed25519.PublicKey, message, signature []byte) *encoder {
	e := newEncoder(OpVerify, 41+len(message)+len(signature))
	if len(publicKey) != ed25519.PublicKeySize {
		e.fail("public_key", "%d bytes, expected %d", len(publicKey), ed25519.PublicKeySize)
	}
	e.u8(0)
	e.fixed(publicKey)
	e.bytes("message", message)
	e.bytes("signature", signature)
	return e
}

// VerifyWithKeyring checks a signature with one of the daemon's own keys for serverName,
// active or retired (VERIFY, key mode 1).
func (c *Client) VerifyWithKeyring(ctx context.Context, serverName, keyID string, message, signature []byte) (bool, error) {
	e := newEncoder(OpVerify, 13+len(serverName)+len(keyID)+len(message)+len(signature))
	e.u8(1)
	e.str("server_name", serverName)
	e.str("key_id", keyID)
	e.bytes("message", message)
	e.bytes("signature", signature)
	return c.verify(ctx, e)
}

func (c *Client) verify(ctx context.Context, e *encoder) (bool, error) {
	frame, err := e.finish(0)
	if err != nil {
		return false, err
	}
	r, err := c.roundTrip(ctx, OpVerify, frame)
	if err != nil {
		return false, err
	}
	d := decoder{b: r.body, op: OpVerify}
	valid := d.u8("valid")
	if err := d.done(); err != nil {
		return false, err
	}
	return valid == 1, nil
}

// PublicKey names a server's public key.
type PublicKey struct {
	KeyID string // "ed25519:VERSION"
	Key   ed25519.PublicKey
}

// Outcomes of one key in VerifyJSON.
const (
	OutcomeValid   uint8 = 0
	OutcomeInvalid uint8 = 1
	OutcomeMissing uint8 = 2 // the object carries no signature by this key
)

// KeyOutcome is one key's result in VerifyJSON.
type KeyOutcome struct {
	KeyID   string
	Outcome uint8
}

// JSONCheck is VerifyJSON's answer.
type JSONCheck struct {
	// Valid: at least one key's signature verifies, and none fails.
	Valid bool
	Keys  []KeyOutcome
}

// VerifyJSON checks serverName's signatures on a signed JSON object (VERIFY_JSON) with the
// given keys, or with the daemon's own keys for serverName when keys is empty.
func (c *Client) VerifyJSON(ctx context.Context, serverName string, keys []PublicKey, object []byte) (JSONCheck, error) {
	hint := 8 + len(serverName) + len(object)
	for _, k := range keys {
		hint += 34 + len(k.KeyID)
	}
	e := newEncoder(OpVerifyJSON, hint)
	e.str("server_name", serverName)
	if len(keys) > 0xFFFF {
		e.fail("key_count", "%d keys; at most 65535", len(keys))
	}
	e.u16(uint16(len(keys)))
	for i, k := range keys {
		e.str("key_id", k.KeyID)
		if len(k.Key) != ed25519.PublicKeySize {
			e.fail(fmt.Sprintf("keys[%d].public_key", i), "%d bytes, expected %d", len(k.Key), ed25519.PublicKeySize)
		}
		e.fixed(k.Key)
	}
	e.bytes("json", object)
	frame, err := e.finish(0)
	if err != nil {
		return JSONCheck{}, err
	}
	r, err := c.roundTrip(ctx, OpVerifyJSON, frame)
	if err != nil {
		return JSONCheck{}, err
	}
	d := decoder{b: r.body, op: OpVerifyJSON}
	var out JSONCheck
	out.Valid = d.u8("valid") == 1
	n := int(d.u16("key_count"))
	for i := 0; i < n && d.err == nil; i++ {
		id := d.str("key_id")
		out.Keys = append(out.Keys, KeyOutcome{KeyID: id, Outcome: d.u8("outcome")})
	}
	return out, d.done()
}

// Results of VerifyRequest (docs/PROTOCOL.md, VERIFY_REQUEST).
const (
	RequestValid               uint8 = 0
	RequestNoXMatrix           uint8 = 1
	RequestMalformedHeader     uint8 = 2
	RequestOriginsDiffer       uint8 = 3
	RequestDestinationMismatch uint8 = 4
	RequestUnknownKey          uint8 = 5
	RequestBadSignature        uint8 = 6
	RequestInvalidContent      uint8 = 7
	RequestInvalidTarget       uint8 = 8
)

// InboundRequest is what VerifyRequest checks: an inbound federation request as received.
type InboundRequest struct {
	// Authorization holds every Authorization header value received.
	Authorization []string
	Method        string
	// URI is the request target exactly as received.
	URI string
	// Destination is our server name.
	Destination string
	// Content is the JSON body; nil for none.
	Content []byte
	// Keys are the origin's public keys; none means the daemon's own keyring.
	Keys []OriginKey
}

// OriginKey is a public key of a request's origin server.
type OriginKey struct {
	Origin string
	PublicKey
}

// RequestCheck is VerifyRequest's answer.
type RequestCheck struct {
	Result uint8 // RequestValid or the reason it is not
	Origin string
	KeyID  string
	Detail string
}

// Valid reports whether the request's X-Matrix authorization verified.
func (r RequestCheck) Valid() bool { return r.Result == RequestValid }

// VerifyRequest checks an inbound request's X-Matrix authorization (VERIFY_REQUEST).
func (c *Client) VerifyRequest(ctx context.Context, in InboundRequest) (RequestCheck, error) {
	hint := 16 + len(in.Method) + len(in.URI) + len(in.Destination) + len(in.Content)
	for _, h := range in.Authorization {
		hint += 2 + len(h)
	}
	for _, k := range in.Keys {
		hint += 36 + len(k.Origin) + len(k.KeyID)
	}
	e := newEncoder(OpVerifyRequest, hint)
	if len(in.Authorization) > 0xFFFF {
		e.fail("header_count", "%d headers; at most 65535", len(in.Authorization))
	}
	e.u16(uint16(len(in.Authorization)))
	for _, h := range in.Authorization {
		e.str("authorization", h)
	}
	e.str("method", in.Method)
	e.str("uri", in.URI)
	e.str("destination", in.Destination)
	e.bytes("content", in.Content)
	if len(in.Keys) > 0xFFFF {
		e.fail("key_count", "%d keys; at most 65535", len(in.Keys))
	}
	e.u16(uint16(len(in.Keys)))
	for i, k := range in.Keys {
		e.str("origin", k.Origin)
		e.str("key_id", k.KeyID)
		if len(k.Key) != ed25519.PublicKeySize {
			e.fail(fmt.Sprintf("keys[%d].public_key", i), "%d bytes, expected %d", len(k.Key), ed25519.PublicKeySize)
		}
		e.fixed(k.Key)
	}
	frame, err := e.finish(0)
	if err != nil {
		return RequestCheck{}, err
	}
	r, err := c.roundTrip(ctx, OpVerifyRequest, frame)
	if err != nil {
		return RequestCheck{}, err
	}
	d := decoder{b: r.body, op: OpVerifyRequest}
	var out RequestCheck
	out.Result = d.u8("result")
	out.Origin = d.str("origin")
	out.KeyID = d.str("key_id")
	out.Detail = d.str("detail")
	return out, d.done()
}
