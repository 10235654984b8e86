// Package sigil is a Go client for sigild, the Sigil signing daemon: it signs Matrix federation
// requests and JSON with keys that stay in the daemon, and verifies signatures, over the binary
// protocol of docs/PROTOCOL.md on a Unix socket.
//
// One Client serves a whole program. It connects on first use, pipelines the calls of any
// number of goroutines over its connection (Options.MaxConns allows more; replies are matched
// by request ID, in any order), and reconnects after sigild restarts:
//
//	signer := sigil.New("/run/sigil/sigild.sock", sigil.Options{})
//	defer signer.Close()
//	s, err := signer.SignRequest(ctx, "example.org", "matrix.org", "GET",
//		"/_matrix/federation/v1/media/download/abc123", nil)
//	if err != nil {
//		return err
//	}
//	req.Header.Set("Authorization", s.Header)
//
// Every call honours its context; without a deadline, Options.CallTimeout applies. Errors tell
// apart the three things that can go wrong:
//
//   - errors.Is(err, ErrUnavailable): sigild is not there (cannot connect, the connection
//     broke, no reply in time). Nothing was refused; try again later.
//   - *StatusError: sigild answered and said no (DENIED, UNKNOWN_SERVER, BAD_REQUEST…).
//     Temporary() is true for BUSY, the one status worth an immediate retry.
//   - ErrInvalidArgument, ErrTooLarge: the request cannot be sent as given.
//
// The package uses the standard library only, without cgo, and builds with Go 1.19 and later.
package sigil
