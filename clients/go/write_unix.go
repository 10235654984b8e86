//go:build unix

package sigil

import "syscall"

const nonBlockingWrites = true

// writeNonBlocking writes what the socket takes now and returns at once: n < len(b) means the
// socket is full. The runtime keeps the descriptor non-blocking; SIGPIPE on a socket only
// makes the write fail with EPIPE in a Go program.
func writeNonBlocking(raw syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if werr == syscall.EAGAIN {
		return 0, nil
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}
