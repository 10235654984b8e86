// Package sidecar signs matrix-media-repo's outbound federation requests through sigild, the
// Sigil signing daemon, so that no MMR process holds the homeserver's signing key.
//
// This file is part of the MMR patch in Sigil's contrib/mmr, where it is built and tested
// against a real sigild; the copy in MMR's matrix/sidecar must stay identical to it.
package sidecar

import (
	"context"
	"errors"
	"sync"
	"time"

	"sigil.invalid/sigil"
)

// Logger is what Sign logs through: a *logrus.Entry (MMR's ctx.Log) is one.
type Logger interface {
	Infof(format string, args ...interface{})
	Warnf(format string, args ...interface{})
	Errorf(format string, args ...interface{})
}

// UnavailableError means sigild could not be reached at Socket: the request was not signed,
// through no fault of the remote server or the media. MMR does not cache it as a download
// failure, so the next request tries again.
type UnavailableError struct {
	Socket string
	Err    error
}

func (e *UnavailableError) Error() string {
	return "signing sidecar at " + e.Socket + " unavailable: " + e.Err.Error()
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// closeGrace is how long a client replaced by Reset keeps serving the calls it has in flight.
const closeGrace = 30 * time.Second

var (
	mu      sync.Mutex
	clients = map[string]*sigil.Client{}
	// refused holds "socket origin" pairs whose refusal was logged, so that a misconfigured
	// server name is reported once, not on every download.
	refused = map[string]bool{}
	// down holds sockets whose unavailability was logged, until they answer again.
	down = map[string]bool{}
)

func client(socket string) *sigil.Client {
	mu.Lock()
	defer mu.Unlock()
	c := clients[socket]
	if c == nil {
		c = sigil.New(socket, sigil.Options{ClientName: "matrix-media-repo"})
		clients[socket] = c
	}
	return c
}

// Sign returns the Authorization header for a request from origin to destination, signed by
// sigild at socket with origin's key: byte for byte what CreateXMatrixHeader writes with that
// key. The request has no body, as every request MMR signs.
func Sign(ctx context.Context, socket, origin, destination, method, uri string, log Logger) (string, error) {
	c := client(socket)
	s, err := c.SignRequest(ctx, origin, destination, method, uri, nil)
	var refusal *sigil.StatusError
	if errors.As(err, &refusal) && refusal.Temporary() {
		// BUSY: sigild's rate limit or its queue. Once more, then give up for this request.
		s, err = c.SignRequest(ctx, origin, destination, method, uri, nil)
	}
	switch {
	case err == nil:
		noteAnswered(socket, log)
		return s.Header, nil
	case errors.Is(err, sigil.ErrUnavailable), errors.Is(err, sigil.ErrClosed):
		noteDown(socket, err, log)
		return "", &UnavailableError{Socket: socket, Err: err}
	case errors.As(err, &refusal):
		noteAnswered(socket, log)
		if refusal.Status == sigil.StatusDenied || refusal.Status == sigil.StatusUnknownServer {
			noteRefused(socket, origin, refusal, log)
		}
	}
	return "", err
}

func noteAnswered(socket string, log Logger) {
	mu.Lock()
	wasDown := down[socket]
	delete(down, socket)
	mu.Unlock()
	if wasDown {
		log.Infof("Signing sidecar at %s answers again", socket)
	}
}

func noteDown(socket string, err error, log Logger) {
	mu.Lock()
	first := !down[socket]
	down[socket] = true
	mu.Unlock()
	if first {
		log.Errorf("Signing sidecar at %s is unavailable (%v): federated downloads that need signing fail until it answers; they are not cached as failures", socket, err)
	}
}

func noteRefused(socket, origin string, refusal *sigil.StatusError, log Logger) {
	key := socket + " " + origin
	mu.Lock()
	first := !refused[key]
	refused[key] = true
	mu.Unlock()
	if !first {
		return
	}
	if refusal.Status == sigil.StatusUnknownServer {
		log.Errorf("Signing sidecar at %s has no key for %s (%s): federated downloads for this server name fail. Give sigild a key for it, or point this homeserver's signingKeySocket elsewhere", socket, origin, refusal.Message)
	} else {
		log.Errorf("Signing sidecar at %s refuses to sign for %s (%s): federated downloads for this server name fail. Its access rules must allow this process sign_request, GET, /_matrix/federation/v1/media/download/ and this server name", socket, origin, refusal.Message)
	}
}

// Reset forgets every connection and every logged refusal: after a configuration reload the
// next request connects to the socket now configured. Replaced clients finish the calls they
// have in flight, then close.
func Reset() {
	mu.Lock()
	old := clients
	clients = map[string]*sigil.Client{}
	refused = map[string]bool{}
	down = map[string]bool{}
	mu.Unlock()
	for _, c := range old {
		c := c
		time.AfterFunc(closeGrace, func() { c.Close() })
	}
}
