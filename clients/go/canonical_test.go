package sigil

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"unicode/utf8"
)

// The tests' own Matrix canonical JSON (spec, appendix "Canonical JSON"): keys sorted by code
// point, no insignificant whitespace, UTF-8 as is, only '"', '\' and control characters
// escaped, integers only. It is written here from the specification, independently of sigild,
// so that a shared mistake cannot hide.
func canonicalJSON(t testing.TB, raw []byte) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v interface{}
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("test JSON %q: %v", raw, err)
	}
	return appendCanonical(nil, v)
}

func appendCanonical(b []byte, v interface{}) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			panic(fmt.Sprintf("canonical JSON has integers only, not %s", x))
		}
		return strconv.AppendInt(b, n, 10)
	case string:
		return appendCanonicalString(b, x)
	case []interface{}:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonical(b, e)
		}
		return append(b, ']')
	case map[string]interface{}:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // byte order of UTF-8 is code point order
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonicalString(b, k)
			b = append(b, ':')
			b = appendCanonical(b, x[k])
		}
		return append(b, '}')
	}
	panic(fmt.Sprintf("unexpected JSON value %T", v))
}

func appendCanonicalString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		panic("canonical JSON strings are UTF-8")
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\b':
			b = append(b, `\b`...)
		case c == '\f':
			b = append(b, `\f`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '\r':
			b = append(b, `\r`...)
		case c == '\t':
			b = append(b, `\t`...)
		case c < 0x20:
			b = append(b, fmt.Sprintf(`\u%04x`, c)...)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// signedObject is the canonical JSON an X-Matrix signature covers, built by the test.
func signedObject(t testing.TB, origin, destination, method, uri string, content []byte) []byte {
	var b []byte
	b = append(b, '{')
	if content != nil {
		b = append(b, `"content":`...)
		b = append(b, canonicalJSON(t, content)...)
		b = append(b, ',')
	}
	b = append(b, `"destination":`...)
	b = appendCanonicalString(b, destination)
	b = append(b, `,"method":`...)
	b = appendCanonicalString(b, method)
	b = append(b, `,"origin":`...)
	b = appendCanonicalString(b, origin)
	b = append(b, `,"uri":`...)
	b = appendCanonicalString(b, uri)
	return append(b, '}')
}

// expectedHeader is the Authorization value for a request, signed by the test with
// crypto/ed25519, in MMR's layout.
func expectedHeader(t testing.TB, k testKey, origin, destination, method, uri string, content []byte) (string, []byte) {
	sig := ed25519.Sign(k.private, signedObject(t, origin, destination, method, uri, content))
	return fmt.Sprintf(`X-Matrix origin="%s",destination="%s",key="%s",sig="%s"`,
		origin, destination, k.id(), base64.RawStdEncoding.EncodeToString(sig)), sig
}

func TestCanonicalJSONOfTheTests(t *testing.T) {
	// The spec's own examples.
	for in, want := range map[string]string{
		`{}`:                                  `{}`,
		`{"one": 1, "two": "Two"}`:            `{"one":1,"two":"Two"}`,
		`{"b": "2", "a": "1"}`:                `{"a":"1","b":"2"}`,
		`{"a": "\u65e5\u672c\u8a9e"}`:         `{"a":"日本語"}`,
		`{"本": 2, "日": 1}`:                    `{"日":1,"本":2}`,
		`{"a": "\u0000"}`:                     `{"a":"\u0000"}`,
		`{"a": null, "b": [true, false, -1]}`: `{"a":null,"b":[true,false,-1]}`,
		`{"auth": {"mxid": "@john.doe:example.com", "success": true, "signatures": {"example.org": {"ed25519:1": "x"}}}}`: `{"auth":{"mxid":"@john.doe:example.com","signatures":{"example.org":{"ed25519:1":"x"}},"success":true}}`,
	} {
		if got := string(canonicalJSON(t, []byte(in))); got != want {
			t.Errorf("canonical %s = %s, want %s", in, got, want)
		}
	}
}

// The spec's X-Matrix example (docs/PROTOCOL.md's sign_request vector) from the test's own
// signing, so that the tests' expectations are themselves checked against published bytes.
func TestExpectedHeaderMatchesTheProtocolVector(t *testing.T) {
	header, _ := expectedHeader(t, specKey(t), "domain", "example.org", "GET", "/_matrix/federation/v1/media/download/abc123", nil)
	want := `X-Matrix origin="domain",destination="example.org",key="ed25519:1",sig="UxgQZoKQVT7ekj4hjL7QlLRJwA7YaGP7mDBBXDITiGiVDxcGOep/LlSrlzfWGQ6GvgeMdydmBp2v9r+rHdKhDA"`
	if header != want {
		t.Fatalf("got %s\nwant %s", header, want)
	}
	if got := base64.RawStdEncoding.EncodeToString(specKey(t).public()); got != specPublicKey {
		t.Fatalf("spec public key %s, want %s", got, specPublicKey)
	}
}
