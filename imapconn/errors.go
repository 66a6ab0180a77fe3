package imapconn

import (
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Permanent marks an error that a retry cannot fix (wrong password, folder
// the server refuses, message too big). Everything else that reaches a retry
// loop is temporary.
type Permanent struct{ Err error }

func (p *Permanent) Error() string { return p.Err.Error() }
func (p *Permanent) Unwrap() error { return p.Err }

// MakePermanent wraps err so that IsTemporary reports false.
func MakePermanent(err error) error {
	if err == nil {
		return nil
	}
	return &Permanent{Err: err}
}

// Temporary marks an error worth retrying later that the classification
// below would not recognise (a folder that changed under a pass, say).
type Temporary struct{ Err error }

func (t *Temporary) Error() string { return t.Err.Error() }
func (t *Temporary) Unwrap() error { return t.Err }

// MakeTemporary wraps err so that IsTemporary reports true.
func MakeTemporary(err error) error {
	if err == nil {
		return nil
	}
	return &Temporary{Err: err}
}

// IsTemporary reports whether retrying the operation later may succeed.
// Network failures, dropped connections, timeouts and server replies that say
// "later" are temporary; authentication failures, refusals and our own
// Permanent errors are not. A canceled context is not temporary either: the
// caller asked to stop.
func IsTemporary(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var perm *Permanent
	if errors.As(err, &perm) {
		return false
	}
	var tmp *Temporary
	if errors.As(err, &tmp) {
		return true
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		if _, ok := ThrottleDelay(err); ok || IsExchangeTransient(err) {
			return true
		}
		switch ie.Code {
		case imap.ResponseCodeUnavailable, imap.ResponseCodeInUse, imap.ResponseCodeServerBug, imap.ResponseCodeLimit:
			return ie.Code != imap.ResponseCodeLimit || ie.Type == imap.StatusResponseTypeBye
		}
		// BYE is the server hanging up: reconnecting may work.
		return ie.Type == imap.StatusResponseTypeBye
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	// go-imap formats some I/O errors with %v, which loses the chain.
	msg := err.Error()
	for _, s := range networkFailures {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

var networkFailures = []string{"connection reset", "broken pipe", "unexpected EOF", "use of closed network connection",
	"i/o timeout", "connection refused", ": EOF"}

// IsAuthFailure reports whether err is the server refusing the credentials.
func IsAuthFailure(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && (ie.Code == imap.ResponseCodeAuthenticationFailed ||
		ie.Code == imap.ResponseCodeAuthorizationFailed || ie.Code == imap.ResponseCodeExpired)
}

var throttleRE = regexp.MustCompile(`(?i)throttled.*?backoff time:\s*(\d+)\s*milliseconds`)

// ThrottleDelay extracts Exchange Online's "Request is throttled. Suggested
// Backoff Time: N milliseconds" from err.
func ThrottleDelay(err error) (time.Duration, bool) {
	if err == nil {
		return 0, false
	}
	m := throttleRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	ms, perr := strconv.ParseInt(m[1], 10, 64)
	if perr != nil {
		return 0, false
	}
	return time.Duration(ms) * time.Millisecond, true
}
