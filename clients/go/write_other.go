//go:build !unix

package sigil

import "syscall"

// Without a non-blocking write, every write goes through the connection's writer goroutine.
const nonBlockingWrites = false

func writeNonBlocking(raw syscall.RawConn, b []byte) (int, error) { return 0, nil }
