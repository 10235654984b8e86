package sigil

import (
	"context"
	"syscall"
	"time"
)

// The socket is used with plain system calls on a blocking descriptor, not through the Go
// runtime's poller: a caller waiting for its reply sleeps in recv itself, which costs two
// system calls per request instead of a round of goroutine hand-offs and epoll wake-ups (see
// docs/BENCHMARKS.md, "The Go client").

// readSlice is how long one recv may block (SO_RCVTIMEO) before the reader checks its context:
// the longest a cancelled reader takes to notice.
const readSlice = 5 * time.Millisecond

const socketsSupported = true

// dialUnix connects without ever blocking in connect: a backlog that is full (sigild stopped or
// swamped) is retried every few milliseconds until timeout or ctx ends.
func dialUnix(ctx context.Context, path string, timeout time.Duration) (int, error) {
	if len(path) >= len(syscall.RawSockaddrUnix{}.Path) {
		return -1, &pathError{path}
	}
	deadline := time.Now().Add(timeout)
	for {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
		if err != nil {
			return -1, err
		}
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
		if err == nil {
			if err = setupConnected(fd); err == nil {
				return fd, nil
			}
		}
		syscall.Close(fd)
		if err != syscall.EAGAIN {
			return -1, err
		}
		if time.Now().After(deadline) {
			return -1, err
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func setupConnected(fd int) error {
	if err := syscall.SetNonblock(fd, false); err != nil {
		return err
	}
	tv := syscall.NsecToTimeval(int64(readSlice))
	return syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
}

// sendNow writes what the socket takes at once; 0 with a nil error means it is full.
func sendNow(fd int, b []byte) (int, error) {
	for {
		n, err := syscall.SendmsgN(fd, b, nil, nil, syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL)
		switch err {
		case nil:
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, err
	}
}

// sendWait writes, blocking until the socket takes something (or is shut down).
func sendWait(fd int, b []byte) (int, error) {
	for {
		n, err := syscall.SendmsgN(fd, b, nil, nil, syscall.MSG_NOSIGNAL)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
}

// recvSome blocks for up to readSlice; (0, nil) means nothing came in that time, and io.EOF
// that the daemon closed the connection.
func recvSome(fd int, b []byte) (int, error) {
	n, err := syscall.Read(fd, b)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return 0, nil
	case err != nil:
		return 0, err
	case n == 0:
		return 0, errEOF
	}
	return n, nil
}

func shutdownSocket(fd int) { syscall.Shutdown(fd, syscall.SHUT_RDWR) }

func closeSocket(fd int) { syscall.Close(fd) }

// notSent reports whether a send failed because the connection was already gone (the daemon
// closed it while it was idle): nothing of the frame reached the daemon.
func notSent(err error) bool {
	return err == syscall.EPIPE || err == syscall.ECONNRESET || err == syscall.ENOTCONN
}

// peekNow copies what the socket holds unread into b, without taking it and without waiting.
func peekNow(fd int, b []byte) int {
	for {
		n, _, err := syscall.Recvfrom(fd, b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
}
