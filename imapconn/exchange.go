package imapconn

import (
	"errors"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// exchangeTransient are replies of Exchange Online that carry no response
// code but mean "this session is gone, come back on a new connection".
var exchangeTransient = []string{
	// After repeated errors or throttling Exchange drops the session's
	// backend but keeps the connection: every later command gets this
	// NO (or a BYE).
	"user is authenticated but not connected",
}

// IsExchangeTransient reports whether err is an Exchange Online reply that
// a new connection later may not get: IsTemporary should say true for it.
func IsExchangeTransient(err error) bool {
	var ie *imap.Error
	if !errors.As(err, &ie) {
		return false
	}
	text := strings.ToLower(ie.Text)
	for _, s := range exchangeTransient {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}
