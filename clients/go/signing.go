package sigil

import "context"

// SignJSON signs a JSON object as serverName (SIGN_JSON) and returns it with the signature
// added under "signatures", in canonical form. Existing signatures are kept; "unsigned" is
// left out of what is signed and kept. sigild grants this operation only by name.
func (c *Client) SignJSON(ctx context.Context, serverName string, object []byte) ([]byte, error) {
	e := newEncoder(OpSignJSON, 6+len(serverName)+len(object))
	e.str("server_name", serverName)
	e.bytes("json", object)
	frame, err := e.finish(0)
	if err != nil {
		return nil, err
	}
	r, err := c.roundTrip(ctx, OpSignJSON, frame)
	if err != nil {
		return nil, err
	}
	d := decoder{b: r.body, op: OpSignJSON}
	signed := d.bytes("json")
	return signed, d.done()
}

// RawSignature is SignRaw's answer.
type RawSignature struct {
	KeyID     string
	Signature []byte
}

// SignRaw signs arbitrary bytes with one of serverName's keys (SIGN_RAW); keyID "" means its
// signing key. sigild grants this operation only by name.
func (c *Client) SignRaw(ctx context.Context, serverName, keyID string, message []byte) (RawSignature, error) {
	e := newEncoder(OpSignRaw, 8+len(serverName)+len(keyID)+len(message))
	e.str("server_name", serverName)
	e.str("key_id", keyID)
	e.bytes("message", message)
	frame, err := e.finish(0)
	if err != nil {
		return RawSignature{}, err
	}
	r, err := c.roundTrip(ctx, OpSignRaw, frame)
	if err != nil {
		return RawSignature{}, err
	}
	d := decoder{b: r.body, op: OpSignRaw}
	var s RawSignature
	s.KeyID = d.str("key_id")
	s.Signature = d.take("signature", 64)
	return s, d.done()
}
