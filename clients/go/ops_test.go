package sigil

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A daemon with two servers: "domain" (the spec key) and "other.example" (a signing key, a
// second active key, and a retired one).
type opsFixture struct {
	d       *daemon
	c       *Client
	spec    testKey
	other   testKey
	second  testKey
	retired ed25519.PublicKey
}

const retiredTS uint64 = 1600000000000

func newOpsFixture(t *testing.T) *opsFixture {
	f := &opsFixture{spec: specKey(t), other: randomKey(t, "other.example", "a1"), second: randomKey(t, "other.example", "b2")}
	f.retired = randomKey(t, "other.example", "old").public()
	f.d = startDaemon(t, daemonConfig{
		keys: []testKey{f.spec, f.other, f.second},
		serverYAML: map[string]string{"other.example": fmt.Sprintf(
			"    retired:\n      - { id: \"ed25519:old\", key: \"%s\", expired_ts: %d }\n",
			base64.RawStdEncoding.EncodeToString(f.retired), retiredTS)},
	})
	f.c = New(f.d.socket(), Options{ClientName: "ops-test"})
	t.Cleanup(func() { f.c.Close() })
	return f
}

func TestHello(t *testing.T) {
	f := newOpsFixture(t)
	h, err := f.c.Hello(testContext(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if h.ProtocolVersion != 1 || h.MaxFrame != 65536 || h.MaxBatch != 256 || h.MaxInFlight == 0 || h.DaemonVersion == "" {
		t.Fatalf("hello %+v", h)
	}
	for _, op := range []uint8{OpHello, OpPing, OpListKeys, OpSignRequest, OpSignJSON, OpSignRaw, OpVerify, OpVerifyJSON, OpVerifyRequest, OpKeyDocument, OpStats} {
		if !h.Allows(op) {
			t.Errorf("hello does not list %s: %v", OpName(op), h.Ops)
		}
	}
	if strings.Join(h.Servers, ",") != "domain,other.example" {
		t.Errorf("servers %v", h.Servers)
	}
}

// The paged HELLO and LIST_KEYS (protocol-changes items 1 and 2) need a daemon that has them.
func TestPagedHelloAndListKeys(t *testing.T) {
	f := newOpsFixture(t)
	ctx := testContext(t, 10*time.Second)
	h, err := f.c.HelloPage(ctx, "")
	var se *StatusError
	if errors.As(err, &se) && se.Status == StatusBadRequest {
		t.Skipf("this sigild predates the paged HELLO: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if h.ServerTotal != 2 || h.NextCursor != "" || strings.Join(h.Servers, ",") != "domain,other.example" {
		t.Fatalf("paged hello %+v", h)
	}
	servers, next, err := f.c.ListKeysPage(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if next != "" || len(servers) != 2 {
		t.Fatalf("paged list_keys: %+v next %q", servers, next)
	}
}

func TestPing(t *testing.T) {
	f := newOpsFixture(t)
	ctx := testContext(t, 10*time.Second)
	if err := f.c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte{0xA5, 0, '"'}, 20000)
	echo, err := f.c.PingPayload(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, "echo", echo, payload)
}

func TestListKeys(t *testing.T) {
	f := newOpsFixture(t)
	servers, err := f.c.ListKeys(testContext(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]KeyInfo{}
	for _, s := range servers {
		got[s.ServerName] = s.Keys
	}
	want := map[string][]KeyInfo{
		"domain": {{KeyID: "ed25519:1", PublicKey: f.spec.public(), State: KeySigning}},
		"other.example": {
			{KeyID: "ed25519:a1", PublicKey: f.other.public(), State: KeySigning},
			{KeyID: "ed25519:b2", PublicKey: f.second.public(), State: KeyActive},
			{KeyID: "ed25519:old", PublicKey: f.retired, State: KeyRetired, ExpiredTS: retiredTS},
		},
	}
	if len(got) != len(want) {
		t.Fatalf("servers %+v", servers)
	}
	for name, keys := range want {
		if len(got[name]) != len(keys) {
			t.Fatalf("%s: keys %+v, want %+v", name, got[name], keys)
		}
		for i, k := range keys {
			g := got[name][i]
			if g.KeyID != k.KeyID || !bytes.Equal(g.PublicKey, k.PublicKey) || g.State != k.State || g.ExpiredTS != k.ExpiredTS {
				t.Errorf("%s key %d: %+v, want %+v", name, i, g, k)
			}
		}
	}
}

func TestSignRequest(t *testing.T) {
	f := newOpsFixture(t)
	ctx := testContext(t, 10*time.Second)
	for _, tc := range []struct {
		key                      testKey
		destination, method, uri string
		content                  []byte
	}{
		{f.spec, "matrix.org", "GET", "/_matrix/federation/v1/media/download/abc123", nil},
		{f.other, "remote.example:8448", "GET", "/_matrix/federation/v1/media/download/a%2Fb?x=1&y=<2>", nil},
		{f.other, "[2001:db8::1]:8448", "PUT", "/_matrix/federation/v1/send/1", []byte(`{"pdus": [], "origin": "other.example", "n": -5, "s": "é\"\\\n"}`)},
		{f.spec, "matrix.org", "POST", `/_matrix/federation/v1/user/keys/query?q="quoted"\`, []byte(`{}`)},
	} {
		s, err := f.c.SignRequest(ctx, tc.key.server, tc.destination, tc.method, tc.uri, tc.content)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.uri, err)
		}
		want, sig := expectedHeader(t, tc.key, tc.key.server, tc.destination, tc.method, tc.uri, tc.content)
		if s.Header != want || s.KeyID != tc.key.id() || !bytes.Equal(s.Signature, sig) {
			t.Errorf("%s %s:\n got %s\nwant %s", tc.method, tc.uri, s.Header, want)
		}
	}
}

func TestSignRequestsBatch(t *testing.T) {
	f := newOpsFixture(t)
	reqs := []RequestToSign{
		{Origin: "domain", Destination: "a.example", Method: "GET", URI: "/_matrix/federation/v1/media/download/1"},
		{Origin: "nosuch.example", Destination: "a.example", Method: "GET", URI: "/x"},
		{Origin: "other.example", Destination: "b.example", Method: "PUT", URI: "/_matrix/federation/v1/send/2", Content: []byte(`{"b":2,"a":1}`)},
		{Origin: "domain", Destination: "a.example", Method: "GET", URI: "no-slash"},
	}
	results, err := f.c.SignRequests(testContext(t, 10*time.Second), reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range map[int]testKey{0: f.spec, 2: f.other} {
		q := reqs[i]
		want, _ := expectedHeader(t, key, q.Origin, q.Destination, q.Method, q.URI, q.Content)
		if results[i].Err != nil || results[i].Header != want {
			t.Errorf("item %d: %+v, want %s", i, results[i], want)
		}
	}
	for i, status := range map[int]uint8{1: StatusUnknownServer, 3: StatusBadRequest} {
		var se *StatusError
		if !errors.As(results[i].Err, &se) || se.Status != status || se.Op != OpSignRequest {
			t.Errorf("item %d: %v, want %s", i, results[i].Err, StatusName(status))
		}
	}
}

func TestSignJSON(t *testing.T) {
	f := newOpsFixture(t)
	object := []byte(`{"b": 1, "a": "x", "unsigned": {"age": 5}, "signatures": {"elsewhere.example": {"ed25519:z": "c2ln"}}}`)
	signed, err := f.c.SignJSON(testContext(t, 10*time.Second), "other.example", object)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]interface{}
	if err := json.Unmarshal(signed, &got); err != nil {
		t.Fatalf("%s: %v", signed, err)
	}
	sigs := got["signatures"].(map[string]interface{})
	if _, kept := sigs["elsewhere.example"]; !kept {
		t.Errorf("existing signature dropped: %s", signed)
	}
	sig, err := base64.RawStdEncoding.DecodeString(sigs["other.example"].(map[string]interface{})["ed25519:a1"].(string))
	if err != nil {
		t.Fatalf("%s: %v", signed, err)
	}
	// What the signature covers: the object without signatures and unsigned.
	covered := canonicalJSON(t, []byte(`{"b": 1, "a": "x"}`))
	if !ed25519.Verify(f.other.public(), covered, sig) {
		t.Fatalf("signature in %s does not verify over %s", signed, covered)
	}
	if got["unsigned"] == nil {
		t.Errorf("unsigned dropped: %s", signed)
	}
	mustEqualBytes(t, "canonical form", signed, canonicalJSON(t, signed))
}

func TestSignRaw(t *testing.T) {
	f := newOpsFixture(t)
	ctx := testContext(t, 10*time.Second)
	message := []byte("any bytes \x00\xff")
	s, err := f.c.SignRaw(ctx, "other.example", "", message)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID != "ed25519:a1" || !bytes.Equal(s.Signature, ed25519.Sign(f.other.private, message)) {
		t.Fatalf("signing key: %+v", s)
	}
	s, err = f.c.SignRaw(ctx, "other.example", "ed25519:b2", message)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID != "ed25519:b2" || !ed25519.Verify(f.second.public(), message, s.Signature) {
		t.Fatalf("second key: %+v", s)
	}
}

func TestVerify(t *testing.T) {
	f := newOpsFixture(t)
	ctx := testContext(t, 10*time.Second)
	message := []byte("message")
	sig := ed25519.Sign(f.other.private, message)
	for _, tc := range []struct {
		name      string
		message   []byte
		signature []byte
		valid     bool
	}{
		{"good", message, sig, true},
		{"other message", []byte("massage"), sig, false},
		{"short signature", message, sig[:63], false},
	} {
		ok, err := f.c.Verify(ctx, f.other.public(), tc.message, tc.signature)
		if err != nil || ok != tc.valid {
			t.Errorf("%s with a public key: %v %v", tc.name, ok, err)
		}
		ok, err = f.c.VerifyWithKeyring(ctx, "other.example", "ed25519:a1", tc.message, tc.signature)
		if err != nil || ok != tc.valid {
			t.Errorf("%s with the keyring: %v %v", tc.name, ok, err)
		}
	}
	_, err := f.c.VerifyWithKeyring(ctx, "other.example", "ed25519:nope", message, sig)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != StatusUnknownKey {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := f.c.Verify(ctx, f.other.public()[:31], message, sig); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("31-byte public key: %v", err)
	}
}

func TestVerifyJSON(t *testing.T) {
	f := newOpsFixture(t)
	ctx := testContext(t, 10*time.Second)
	signed, err := f.c.SignJSON(ctx, "other.example", []byte(`{"event": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	check, err := f.c.VerifyJSON(ctx, "other.example", nil, signed)
	if err != nil || !check.Valid {
		t.Fatalf("with the daemon's keys: %+v %v", check, err)
	}
	outcomes := map[string]uint8{}
	for _, k := range check.Keys {
		outcomes[k.KeyID] = k.Outcome
	}
	if outcomes["ed25519:a1"] != OutcomeValid || outcomes["ed25519:b2"] != OutcomeMissing {
		t.Errorf("outcomes %+v", check.Keys)
	}
	keys := []PublicKey{{KeyID: "ed25519:a1", Key: f.other.public()}}
	if check, err := f.c.VerifyJSON(ctx, "other.example", keys, signed); err != nil || !check.Valid {
		t.Errorf("with given keys: %+v %v", check, err)
	}
	tampered := bytes.Replace(signed, []byte(`"x"`), []byte(`"y"`), 1)
	if check, err := f.c.VerifyJSON(ctx, "other.example", keys, tampered); err != nil || check.Valid || check.Keys[0].Outcome != OutcomeInvalid {
		t.Errorf("tampered: %+v %v", check, err)
	}
}

func TestVerifyRequest(t *testing.T) {
	f := newOpsFixture(t)
	ctx := testContext(t, 10*time.Second)
	uri := "/_matrix/federation/v1/media/download/abc"
	s, err := f.c.SignRequest(ctx, "other.example", "domain", "GET", uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := InboundRequest{Authorization: []string{s.Header}, Method: "GET", URI: uri, Destination: "domain"}
	check, err := f.c.VerifyRequest(ctx, in)
	if err != nil || !check.Valid() || check.Origin != "other.example" || check.KeyID != "ed25519:a1" {
		t.Fatalf("with the daemon's keyring: %+v %v", check, err)
	}
	in.Keys = []OriginKey{{Origin: "other.example", PublicKey: PublicKey{KeyID: "ed25519:a1", Key: f.other.public()}}}
	if check, err := f.c.VerifyRequest(ctx, in); err != nil || !check.Valid() {
		t.Fatalf("with given keys: %+v %v", check, err)
	}
	in.URI = uri + "x"
	if check, err := f.c.VerifyRequest(ctx, in); err != nil || check.Result != RequestBadSignature {
		t.Errorf("another uri: %+v %v", check, err)
	}
	in.Authorization = []string{"Bearer abc"}
	if check, err := f.c.VerifyRequest(ctx, in); err != nil || check.Result != RequestNoXMatrix {
		t.Errorf("no X-Matrix header: %+v %v", check, err)
	}
}

func TestKeyDocument(t *testing.T) {
	f := newOpsFixture(t)
	// Within the daemon's cap (now plus its validity, at most 7 days), so it is kept as asked.
	until := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	doc, err := f.c.KeyDocument(testContext(t, 10*time.Second), "other.example", until)
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		ServerName    string                       `json:"server_name"`
		ValidUntil    int64                        `json:"valid_until_ts"`
		VerifyKeys    map[string]map[string]string `json:"verify_keys"`
		OldVerifyKeys map[string]json.RawMessage   `json:"old_verify_keys"`
		Signatures    map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(doc, &parsed); err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	if parsed.ServerName != "other.example" || parsed.ValidUntil != until.UnixMilli() ||
		parsed.VerifyKeys["ed25519:a1"]["key"] != base64.RawStdEncoding.EncodeToString(f.other.public()) ||
		parsed.OldVerifyKeys["ed25519:old"] == nil {
		t.Fatalf("document %s", doc)
	}
	var unsigned map[string]interface{}
	json.Unmarshal(doc, &unsigned)
	delete(unsigned, "signatures")
	body, _ := json.Marshal(unsigned)
	for id, key := range map[string]testKey{"ed25519:a1": f.other, "ed25519:b2": f.second} {
		sig, _ := base64.RawStdEncoding.DecodeString(parsed.Signatures["other.example"][id])
		if !ed25519.Verify(key.public(), canonicalJSON(t, body), sig) {
			t.Errorf("signature by %s does not verify: %s", id, doc)
		}
	}
}

func TestStats(t *testing.T) {
	f := newOpsFixture(t)
	ctx := testContext(t, 10*time.Second)
	if err := f.c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := f.c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Requests map[string]struct{ Count int } `json:"requests"`
		KeyCount int                            `json:"key_count"`
	}
	if err := json.Unmarshal(raw, &stats); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	if stats.Requests["ping"].Count < 1 || stats.Requests["hello"].Count < 1 || stats.KeyCount != 3 {
		t.Fatalf("stats %s", raw)
	}
}

// A cancelled context returns at once, without waiting for anything.
func TestCancelledContext(t *testing.T) {
	f := newOpsFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.c.SignRequest(ctx, "domain", "a.example", "GET", "/x", nil)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled: %v", err)
	}
}

// A listing larger than max_frame: LIST_KEYS' old form is refused and ListKeys pages on its
// own; HELLO pages by cursor.
func TestListingsLargerThanAFrame(t *testing.T) {
	var keys []testKey
	for i := 0; i < 150; i++ {
		keys = append(keys, randomKey(t, fmt.Sprintf("server%03d.example", i), "k1"))
	}
	d := startDaemon(t, daemonConfig{keys: keys, limits: "  max_frame: 2048\n"})
	c := New(d.socket(), Options{})
	defer c.Close()
	ctx := testContext(t, 30*time.Second)
	if _, _, err := c.ListKeysPage(ctx, ""); err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Status == StatusBadRequest {
			t.Skipf("this sigild predates the paged LIST_KEYS: %v", err)
		}
		t.Fatal(err)
	}
	// The old form cannot hold it all.
	frame, _ := newEncoder(OpListKeys, 0).finish(0)
	if _, err := c.roundTrip(ctx, OpListKeys, frame); err == nil {
		t.Fatal("the whole listing fits in one frame: the test lists too few servers")
	}
	servers, err := c.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != len(keys) {
		t.Fatalf("%d servers listed, %d configured", len(servers), len(keys))
	}
	for i, s := range servers {
		k := keys[i] // sigild lists servers in byte order, as they were named here
		if s.ServerName != k.server || len(s.Keys) != 1 || !bytes.Equal(s.Keys[0].PublicKey, k.public()) {
			t.Fatalf("server %d: %+v, want %s", i, s, k.server)
		}
	}
	var names []string
	cursor, pages := "", 0
	for {
		h, err := c.HelloPage(ctx, cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		names = append(names, h.Servers...)
		if h.ServerTotal != uint32(len(keys)) {
			t.Fatalf("server_total %d", h.ServerTotal)
		}
		if cursor = h.NextCursor; cursor == "" {
			break
		}
		if pages > len(keys) {
			t.Fatal("HELLO pages do not end")
		}
	}
	if pages < 2 {
		t.Fatalf("HELLO in %d page: the test lists too few servers", pages)
	}
	if len(names) != len(keys) || names[0] != keys[0].server || names[len(names)-1] != keys[len(keys)-1].server {
		t.Fatalf("%d names over %d pages: %v", len(names), pages, names)
	}
	t.Logf("LIST_KEYS and HELLO paged (HELLO in %d pages)", pages)
}
