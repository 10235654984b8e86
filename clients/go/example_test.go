package sigil_test

import (
	"context"
	"errors"
	"log"
	"net/http"

	"sigil.invalid/sigil"
)

// Signing an outbound federation request, and telling "sigild is down" from "sigild said no".
func ExampleClient_SignRequest() {
	signer := sigil.New("/run/sigil/sigild.sock", sigil.Options{ClientName: "my-worker"})
	defer signer.Close()

	uri := "/_matrix/federation/v1/media/download/abc123"
	s, err := signer.SignRequest(context.Background(), "example.org", "matrix.org", "GET", uri, nil)
	var refusal *sigil.StatusError
	switch {
	case errors.Is(err, sigil.ErrUnavailable):
		log.Printf("sigild is not there, try later: %v", err)
		return
	case errors.As(err, &refusal):
		log.Printf("sigild refused (%s): %v", sigil.StatusName(refusal.Status), err)
		return
	case err != nil:
		log.Print(err)
		return
	}
	req, err := http.NewRequest("GET", "https://matrix.org"+uri, nil)
	if err != nil {
		log.Print(err)
		return
	}
	req.Header.Set("Authorization", s.Header)
}
