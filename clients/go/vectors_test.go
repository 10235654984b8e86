package sigil

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

type vector struct {
	name              string
	request, response []byte
}

// protocolVectors reads the test vectors of docs/PROTOCOL.md, the protocol's own reference.
func protocolVectors(t *testing.T) map[string]vector {
	text, err := os.ReadFile("../../docs/PROTOCOL.md")
	if err != nil {
		t.Fatalf("docs/PROTOCOL.md next to clients/go: %v", err)
	}
	out := map[string]vector{}
	var cur *vector
	for _, line := range strings.Split(string(text), "\n") {
		switch {
		case strings.HasPrefix(line, "vector: "):
			if cur != nil {
				out[cur.name] = *cur
			}
			cur = &vector{name: strings.TrimPrefix(line, "vector: ")}
		case cur != nil && (strings.HasPrefix(line, "> ") || strings.HasPrefix(line, "< ")):
			b, err := hex.DecodeString(strings.ReplaceAll(line[2:], " ", ""))
			if err != nil {
				t.Fatalf("vector %s: %v", cur.name, err)
			}
			if line[0] == '>' {
				cur.request = append(cur.request, b...)
			} else {
				cur.response = append(cur.response, b...)
			}
		case cur != nil && strings.HasPrefix(line, "```"):
			out[cur.name] = *cur
			cur = nil
		}
	}
	if len(out) < 6 {
		t.Fatalf("found %d vectors in docs/PROTOCOL.md", len(out))
	}
	return out
}

// The client encodes each vector's request exactly as docs/PROTOCOL.md gives it.
func TestRequestsEncodeAsTheProtocolVectors(t *testing.T) {
	vectors := protocolVectors(t)
	spec := specKey(t)
	download := "/_matrix/federation/v1/media/download/abc123"
	signed := signedObject(t, "domain", "example.org", "GET", download, nil)
	_, sig := expectedHeader(t, spec, "domain", "example.org", "GET", download, nil)
	frames := map[string]func() ([]byte, error){
		"ping": func() ([]byte, error) { return pingFrame([]byte("hi")) },
		"sign_request": func() ([]byte, error) {
			return signRequestFrame("domain", "example.org", "GET", download, nil)
		},
		"sign_request_batch": func() ([]byte, error) {
			return signRequestsFrame([]RequestToSign{
				{Origin: "domain", Destination: "example.org", Method: "GET", URI: download},
				{Origin: "domain", Destination: "example.org:8448", Method: "GET", URI: "/_matrix/federation/v1/media/thumbnail/abc123?width=32&height=32&method=crop"},
			})
		},
		"verify":       func() ([]byte, error) { return verifyFrame(spec.public(), signed, sig).finish(0) },
		"key_document": func() ([]byte, error) { return keyDocumentFrame("domain", time.UnixMilli(1700000000000)) },
	}
	for name, build := range frames {
		v, ok := vectors[name]
		if !ok {
			t.Fatalf("docs/PROTOCOL.md has no vector %q", name)
		}
		frame, err := build()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		copy(frame[8:12], v.request[8:12]) // the vector's request ID
		if !bytes.Equal(frame, v.request) {
			t.Errorf("%s: encoded\n%x\nvector\n%x", name, frame, v.request)
		}
	}
}

// Each vector's request, sent through the client to a real sigild holding the spec key, gets
// the vector's response body, byte for byte.
func TestProtocolVectorsReplayedThroughTheClient(t *testing.T) {
	vectors := protocolVectors(t)
	d := startDaemon(t, daemonConfig{})
	c := New(d.socket(), Options{})
	defer c.Close()
	ctx := testContext(t, 30*time.Second)
	for _, name := range []string{"ping", "sign_request", "sign_request_batch", "verify", "key_document", "unknown_opcode"} {
		v := vectors[name]
		frame := append([]byte(nil), v.request...)
		r, err := c.roundTrip(ctx, frame[5], frame)
		wantStatus := v.response[7]
		if wantStatus != StatusOK {
			var se *StatusError
			if !errors.As(err, &se) || se.Status != wantStatus {
				t.Fatalf("%s: got %v, want status %d", name, err, wantStatus)
			}
			want := decodeMessage(v.response[12:])
			if se.Message != want {
				t.Errorf("%s: message %q, want %q", name, se.Message, want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mustEqualBytes(t, name+" response body", r.body, v.response[12:])
		if r.flags != v.response[6] {
			t.Errorf("%s: flags %#x, want %#x", name, r.flags, v.response[6])
		}
		if got := binary.BigEndian.Uint32(v.response[0:4]); int(got) != len(r.body)+8 {
			t.Errorf("%s: length %d, want %d", name, len(r.body)+8, got)
		}
	}
	// And through the typed API: the spec vector's header.
	s, err := c.SignRequest(ctx, "domain", "example.org", "GET", "/_matrix/federation/v1/media/download/abc123", nil)
	if err != nil {
		t.Fatal(err)
	}
	want, sig := expectedHeader(t, specKey(t), "domain", "example.org", "GET", "/_matrix/federation/v1/media/download/abc123", nil)
	if s.Header != want || !bytes.Equal(s.Signature, sig) || s.KeyID != "ed25519:1" {
		t.Fatalf("got %+v, want header %s", s, want)
	}
	if !ed25519.Verify(specKey(t).public(), signedObject(t, "domain", "example.org", "GET", "/_matrix/federation/v1/media/download/abc123", nil), s.Signature) {
		t.Fatal("signature does not verify")
	}
}
