package o365

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/oauth2"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	mfsync "github.com/mailferry/mailferry/sync"
)

// Invalidator is a token source that can be told a token was refused; the
// next Token call then returns a new one. *TokenSource is one.
type Invalidator interface {
	Invalidate(tok *oauth2.Token)
}

// Login returns the sync engine's TargetLogin for Exchange Online:
// AUTHENTICATE XOAUTH2 as mb.Email with a token from src (one source for
// every mailbox). If the server refuses the token, a new one is taken (src
// is told with Invalidate when it is an Invalidator) and the login is tried
// once more on the same connection. Errors:
//   - the server refused: *AuthError, permanent (imapconn.MakePermanent) after
//     the second refusal, or when no new token can be had;
//   - src failed: its error, permanent when it says so (*TokenError);
//   - anything else (connection lost, throttled, [UNAVAILABLE]) as it came,
//     for imapconn.IsTemporary to sort.
func Login(src oauth2.TokenSource) mfsync.TargetLogin {
	return func(ctx context.Context, c *imapclient.Client, mb config.Mailbox) error {
		return Authenticate(ctx, c, src, mb.Email)
	}
}

// Authenticate is Login for one connection and mailbox address.
func Authenticate(ctx context.Context, c *imapclient.Client, src oauth2.TokenSource, email string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !c.Caps().Has(imap.AuthCap(Mechanism)) {
		return imapconn.MakePermanent(fmt.Errorf("XOAUTH2 login as %q: the server does not offer AUTH=XOAUTH2", email))
	}
	var first *AuthError
	for attempt := 1; ; attempt++ {
		tok, err := src.Token()
		if err != nil {
			if first != nil {
				return fmt.Errorf("XOAUTH2 login as %q: the server refused the token (%s) and no new one could be had: %w", email, first.short(), err)
			}
			return fmt.Errorf("XOAUTH2 login as %q: %w", email, err)
		}
		if first != nil && tok.AccessToken == first.token {
			// The source can't give another token: retrying is pointless.
			return imapconn.MakePermanent(first)
		}
		sc := NewXOAUTH2(email, tok.AccessToken)
		if _, _, err := sc.Start(); err != nil { // go-imap would return it as is
			return imapconn.MakePermanent(fmt.Errorf("XOAUTH2 login as %q: %w", email, err))
		}
		err = c.Authenticate(sc)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ae := refusal(err, sc, email, tok.AccessToken)
		if ae == nil {
			// Not a refusal of the token: the connection failed, or the
			// server is busy or throttling. The caller retries on a new
			// connection when imapconn.IsTemporary says so.
			return fmt.Errorf("XOAUTH2 login as %q: %w", email, err)
		}
		if first != nil {
			ae.Attempts = attempt
			return imapconn.MakePermanent(ae)
		}
		first = ae
		if inv, ok := src.(Invalidator); ok {
			inv.Invalidate(tok)
		}
	}
}

// refusal returns an AuthError if err is the server refusing the login, else
// nil: a tagged NO, or any tagged failure after an error challenge (go-imap
// writes the empty answer to a challenge as "=", which Dovecot 2.3 answers
// with "BAD Invalid base64 data in continued response"; the challenge has
// already said why). Throttling and "try later" codes are not refusals.
func refusal(err error, sc *XOAUTH2, email, token string) *AuthError {
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo && sc.Challenge() == nil {
		return nil
	}
	if _, throttled := imapconn.ThrottleDelay(err); throttled {
		return nil
	}
	switch ie.Code {
	case imap.ResponseCodeUnavailable, imap.ResponseCodeInUse, imap.ResponseCodeServerBug, imap.ResponseCodeLimit:
		return nil
	}
	return &AuthError{Mailbox: email, Challenge: sc.Challenge(), Err: ie, Attempts: 1, token: token}
}

// AuthError is the server refusing an XOAUTH2 login.
type AuthError struct {
	Mailbox string
	// Challenge is the server's JSON error challenge, nil if it sent none
	// (Exchange Online often answers just "NO AUTHENTICATE failed.").
	Challenge *Challenge
	// Err is the server's tagged NO.
	Err *imap.Error
	// Attempts is how many tokens were tried.
	Attempts int

	token string // to see whether a retry gets another one; never printed
}

func (e *AuthError) Unwrap() error { return e.Err }

func (e *AuthError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "XOAUTH2 login as %q refused", e.Mailbox)
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (%d tokens tried)", e.Attempts)
	}
	b.WriteString(": " + e.reason())
	if e.Challenge != nil {
		b.WriteString("; challenge: " + e.Challenge.String())
	}
	if e.Err != nil {
		if e.Challenge != nil && e.Err.Type == imap.StatusResponseTypeBad {
			// Dovecot 2.3 takes go-imap's "=" for bad base64.
			b.WriteString("; then, to the empty answer, server said: " + string(e.Err.Type))
		} else {
			b.WriteString("; server said: " + string(e.Err.Type))
		}
		if e.Err.Code != "" {
			b.WriteString(" [" + string(e.Err.Code) + "]")
		}
		b.WriteString(" " + strconv.Quote(printable(e.Err.Text, 300)))
	}
	return b.String()
}

// short is the refusal in a few words: "token rejected (status 401)".
func (e *AuthError) short() string {
	if e.Challenge != nil && e.Challenge.Status != "" {
		return "token rejected (status " + e.Challenge.Status + ")"
	}
	return "token rejected"
}

// reason says in words what the refusal most likely means.
func (e *AuthError) reason() string {
	status := ""
	if e.Challenge != nil {
		status = e.Challenge.Status
	}
	switch status {
	case "400", "invalid_request":
		return "bad request (status " + status + "): the user name or the token is malformed"
	case "403", "insufficient_scope":
		return "token rejected (status " + status + "): it lacks the required scope" + scopeHint(e.Challenge)
	}
	prefix := "token rejected"
	if status != "" {
		prefix += " (status " + status + ")"
	}
	return prefix + ": the app may lack IMAP.AccessAsApp consent, its service principal may not be registered " +
		"in Exchange Online (New-ServicePrincipal), it may lack FullAccess on this mailbox (Add-MailboxPermission), " +
		"or IMAP may be disabled for the mailbox (Set-CASMailbox -ImapEnabled)"
}

func scopeHint(c *Challenge) string {
	if c == nil || c.Scope == "" {
		return ""
	}
	return " " + strconv.Quote(c.Scope)
}
