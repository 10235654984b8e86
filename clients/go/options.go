package sigil

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Options tune a Client. The zero value of every field selects its default.
type Options struct {
	// DialTimeout bounds connecting to the socket. Default 1s. The call's context applies too.
	DialTimeout time.Duration
	// CallTimeout bounds a call whose context has no deadline. Default 2s. A context with a
	// deadline is used as it is.
	CallTimeout time.Duration
	// MaxConns is how many connections the client opens at most; calls are pipelined over
	// them. Default 1: one connection carries tens of thousands of requests a second, and
	// the fuller it is, the fewer system calls each request costs, in the caller and in
	// sigild (docs/BENCHMARKS.md, "The Go client"). sigild serves each connection on one
	// event loop, so more connections only help a caller that needs more than one of
	// sigild's cores. A further connection opens only while all are busy.
	MaxConns int
	// ClientName is sent in the HELLO that opens each connection, for sigild's logs.
	// Default: the program's file name.
	ClientName string
}

const (
	defaultDialTimeout = time.Second
	defaultCallTimeout = 2 * time.Second
	defaultMaxConns    = 1
	// The most MaxConns can be: sigild serves a connection on one event loop, and a few
	// connections already keep every loop busy.
	maxMaxConns = 64
)

func (o Options) resolved() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = defaultCallTimeout
	}
	if o.MaxConns <= 0 {
		o.MaxConns = defaultMaxConns
	}
	if o.MaxConns > maxMaxConns {
		o.MaxConns = maxMaxConns
	}
	if o.ClientName == "" && len(os.Args) > 0 {
		o.ClientName = filepath.Base(os.Args[0])
	}
	if len(o.ClientName) > 255 {
		// Cut on a rune boundary: the daemon refuses invalid UTF-8.
		o.ClientName = strings.ToValidUTF8(o.ClientName[:255], "")
	}
	return o
}
