//go:build !linux

package sigil

import (
	"context"
	"errors"
	"runtime"
	"time"
)

// sigild runs on Linux, and so does this client's socket code. Elsewhere the package builds
// (so that programs embedding it build everywhere) and every call is unavailable.

const socketsSupported = false

const readSlice = 5 * time.Millisecond

var errUnsupported = errors.New("sigil: this client talks to sigild on Linux only, not " + runtime.GOOS)

func dialUnix(ctx context.Context, path string, timeout time.Duration) (int, error) {
	return -1, errUnsupported
}

func sendNow(fd int, b []byte) (int, error) { return 0, errUnsupported }

func sendWait(fd int, b []byte) (int, error) { return 0, errUnsupported }

func recvSome(fd int, b []byte) (int, error) { return 0, errUnsupported }

func shutdownSocket(fd int) {}

func closeSocket(fd int) {}

func notSent(err error) bool { return false }

func peekNow(fd int, b []byte) int { return 0 }
