package sigil

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

var errEOF = fmt.Errorf("connection closed by the daemon: %w", io.EOF)

var errShutDown = errors.New("connection shut down")

type pathError struct{ path string }

func (e *pathError) Error() string {
	return fmt.Sprintf("socket path %q is too long for a Unix socket (at most 107 bytes)", e.path)
}

// socketFD is a descriptor that several goroutines use with plain system calls. It is closed
// only once no call is using it, so that a closed descriptor number, reused by the process for
// another file, is never read or written by mistake.
type socketFD struct {
	fd    int
	state atomic.Int64 // users, plus closingBit once shut down
}

const closingBit = 1 << 62

// acquire registers a user; false once the socket is shut down.
func (s *socketFD) acquire() bool {
	for {
		st := s.state.Load()
		if st&closingBit != 0 {
			return false
		}
		if s.state.CompareAndSwap(st, st+1) {
			return true
		}
	}
}

func (s *socketFD) release() {
	if s.state.Add(-1) == closingBit {
		closeSocket(s.fd)
	}
}

// shutdown wakes every call blocked on the socket (they fail) and closes it after the last.
func (s *socketFD) shutdown() {
	for {
		st := s.state.Load()
		if st&closingBit != 0 {
			return
		}
		if s.state.CompareAndSwap(st, st|closingBit) {
			shutdownSocket(s.fd)
			if st == 0 {
				closeSocket(s.fd)
			}
			return
		}
	}
}

func (s *socketFD) send(b []byte, wait bool) (int, error) {
	if !s.acquire() {
		return 0, errShutDown
	}
	defer s.release()
	if wait {
		return sendWait(s.fd, b)
	}
	return sendNow(s.fd, b)
}

func (s *socketFD) recv(b []byte) (int, error) {
	if !s.acquire() {
		return 0, errShutDown
	}
	defer s.release()
	return recvSome(s.fd, b)
}

// peek copies what the socket holds unread into b, without taking it and without waiting.
func (s *socketFD) peek(b []byte) int {
	if !s.acquire() {
		return 0
	}
	defer s.release()
	return peekNow(s.fd, b)
}
