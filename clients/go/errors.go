package sigil

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// ErrUnavailable is wrapped by every error that means "sigild is not there": the socket cannot
// be dialled, the connection broke, or no reply came before the deadline. Test with errors.Is.
// Such a call may be retried later; nothing was refused.
var ErrUnavailable = errors.New("sigil: daemon unavailable")

// ErrClosed is returned by calls on a Client after Close.
var ErrClosed = errors.New("sigil: client closed")

// ErrProtocol is wrapped by errors about a reply that breaks docs/PROTOCOL.md, for example a
// header that names another origin than the one asked for.
var ErrProtocol = errors.New("sigil: protocol error")

// ErrTooLarge is wrapped by the error for a request whose frame is larger than the daemon's
// max_frame. It is refused before anything is sent, because the daemon would close the
// connection (and fail every other call on it).
var ErrTooLarge = errors.New("sigil: request too large")

// ErrInvalidArgument is wrapped by the error for a request that cannot be encoded: a string
// field over 65,535 bytes or not UTF-8, a batch with no items or over 65,535 of them.
var ErrInvalidArgument = errors.New("sigil: invalid argument")

// Status codes of a reply (docs/PROTOCOL.md, "Status codes").
const (
	StatusOK                 uint8 = 0
	StatusBadFrame           uint8 = 1
	StatusUnsupportedVersion uint8 = 2
	StatusUnknownOpcode      uint8 = 3
	StatusFrameTooLarge      uint8 = 4
	StatusBadRequest         uint8 = 5
	StatusBusy               uint8 = 6
	StatusDenied             uint8 = 7
	StatusUnknownServer      uint8 = 8
	StatusUnknownKey         uint8 = 9
	StatusInvalidJSON        uint8 = 10
	StatusBatchTooLarge      uint8 = 11
	StatusShuttingDown       uint8 = 12
	StatusInternalError      uint8 = 13
)

// Operation codes (docs/PROTOCOL.md, "Operations").
const (
	OpHello         uint8 = 0x01
	OpPing          uint8 = 0x02
	OpListKeys      uint8 = 0x03
	OpSignRequest   uint8 = 0x10
	OpSignJSON      uint8 = 0x11
	OpSignRaw       uint8 = 0x12
	OpVerify        uint8 = 0x20
	OpVerifyJSON    uint8 = 0x21
	OpVerifyRequest uint8 = 0x22
	OpKeyDocument   uint8 = 0x30
	OpStats         uint8 = 0x31
)

var statusNames = [...]string{
	"OK", "BAD_FRAME", "UNSUPPORTED_VERSION", "UNKNOWN_OPCODE", "FRAME_TOO_LARGE", "BAD_REQUEST", "BUSY",
	"DENIED", "UNKNOWN_SERVER", "UNKNOWN_KEY", "INVALID_JSON", "BATCH_TOO_LARGE", "SHUTTING_DOWN", "INTERNAL_ERROR",
}

// StatusName is the protocol's name for a status code, such as "DENIED".
func StatusName(status uint8) string {
	if int(status) < len(statusNames) {
		return statusNames[status]
	}
	return "status " + strconv.Itoa(int(status))
}

// OpName is the name sigild's configuration and STATS use for an operation, such as "sign_request".
func OpName(op uint8) string {
	switch op {
	case OpHello:
		return "hello"
	case OpPing:
		return "ping"
	case OpListKeys:
		return "list_keys"
	case OpSignRequest:
		return "sign_request"
	case OpSignJSON:
		return "sign_json"
	case OpSignRaw:
		return "sign_raw"
	case OpVerify:
		return "verify"
	case OpVerifyJSON:
		return "verify_json"
	case OpVerifyRequest:
		return "verify_request"
	case OpKeyDocument:
		return "key_document"
	case OpStats:
		return "stats"
	}
	return fmt.Sprintf("opcode 0x%02x", op)
}

// StatusError is a request sigild answered with a non-zero status: it is there, and it said no.
// Act on Status; Message names the field or rule at fault and is meant for logs.
type StatusError struct {
	Status  uint8
	Op      uint8
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return "sigil: " + OpName(e.Op) + ": " + StatusName(e.Status)
	}
	return "sigil: " + OpName(e.Op) + ": " + StatusName(e.Status) + ": " + e.Message
}

// Temporary reports whether the same request may succeed if sent again later: true for BUSY
// (too many large batches in flight on the connection, or the caller's rate limit).
func (e *StatusError) Temporary() bool { return e.Status == StatusBusy }

// unavailableError carries the cause (a dial error, an I/O error, a deadline) and matches
// ErrUnavailable, so that both errors.Is(err, ErrUnavailable) and, say,
// errors.Is(err, context.DeadlineExceeded) hold.
type unavailableError struct {
	what  string
	cause error
}

func (e *unavailableError) Error() string { return ErrUnavailable.Error() + ": " + e.detail() }

// detail is the message without the prefix, so that one unavailability wrapping another reads
// as one sentence.
func (e *unavailableError) detail() string {
	switch inner := e.cause.(type) {
	case nil:
		return e.what
	case *unavailableError:
		return e.what + ": " + inner.detail()
	default:
		return e.what + ": " + inner.Error()
	}
}

func (e *unavailableError) Unwrap() error { return e.cause }

func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// Timeout reports whether the daemon did not answer in time, as net.Error does.
func (e *unavailableError) Timeout() bool { return errors.Is(e.cause, context.DeadlineExceeded) }

func unavailable(what string, cause error) error {
	return &unavailableError{what: what, cause: cause}
}

// contextError is what a call returns when its context ends first. A deadline means the daemon
// did not answer in time (unavailable); a cancellation is the caller's own doing.
func contextError(ctx context.Context, op uint8, waitingFor string) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return unavailable(OpName(op)+": "+waitingFor, err)
	}
	return fmt.Errorf("sigil: %s: cancelled while %s: %w", OpName(op), waitingFor, err)
}

func protocolError(op uint8, format string, args ...interface{}) error {
	return fmt.Errorf("%w: %s reply: %s", ErrProtocol, OpName(op), fmt.Sprintf(format, args...))
}
