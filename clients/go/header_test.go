package sigil

import (
	"errors"
	"strings"
	"testing"
)

// The client refuses a header that is not exactly the one for what it asked.
func TestCheckHeader(t *testing.T) {
	header, sig := expectedHeader(t, specKey(t), "domain", "example.org", "GET", "/x", nil)
	good := SignedRequest{KeyID: "ed25519:1", Signature: sig, Header: header}
	if err := checkHeader(good, "domain", "example.org"); err != nil {
		t.Fatal(err)
	}
	other := append([]byte(nil), sig...)
	other[0] ^= 1
	for name, tc := range map[string]struct {
		s                   SignedRequest
		origin, destination string
	}{
		"another origin":      {good, "domain2", "example.org"},
		"origin prefix":       {good, "dom", "example.org"},
		"another destination": {good, "domain", "example.org:8448"},
		"another key":         {SignedRequest{KeyID: "ed25519:2", Signature: sig, Header: header}, "domain", "example.org"},
		"another signature":   {SignedRequest{KeyID: "ed25519:1", Signature: other, Header: header}, "domain", "example.org"},
		"short signature":     {SignedRequest{KeyID: "ed25519:1", Signature: sig[:63], Header: header}, "domain", "example.org"},
		"trailing bytes":      {SignedRequest{KeyID: "ed25519:1", Signature: sig, Header: header + " "}, "domain", "example.org"},
		"cut short":           {SignedRequest{KeyID: "ed25519:1", Signature: sig, Header: strings.TrimSuffix(header, `"`)}, "domain", "example.org"},
	} {
		if err := checkHeader(tc.s, tc.origin, tc.destination); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
