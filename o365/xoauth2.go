package o365

import (
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
)

// Mechanism is the SASL mechanism name.
const Mechanism = "XOAUTH2"

// XOAUTH2 is a go-sasl client for the XOAUTH2 mechanism (Google's and
// Microsoft's): the initial response carries the user and the bearer token;
// a server that refuses the token sends one challenge, a JSON object such as
// {"status":"401","schemes":"bearer","scope":"..."}, which the client answers
// with an empty response before the server's final NO. Challenge keeps that
// challenge for the error report.
//
// A XOAUTH2 value is for one AUTHENTICATE; it is not safe for concurrent use.
// Its token never shows in what it prints.
type XOAUTH2 struct {
	user, token string
	challenge   *Challenge
}

// NewXOAUTH2 returns a client that authenticates as user (for Exchange
// Online the mailbox's address) with the bearer token.
func NewXOAUTH2(user, token string) *XOAUTH2 {
	return &XOAUTH2{user: user, token: token}
}

var _ sasl.Client = (*XOAUTH2)(nil)

// Start returns the mechanism name and the initial response
// "user=<user>\x01auth=Bearer <token>\x01\x01".
func (x *XOAUTH2) Start() (mech string, ir []byte, err error) {
	if x.user == "" || strings.ContainsAny(x.user, "\x01\r\n") {
		return "", nil, errors.New("xoauth2: empty user name or one with control characters")
	}
	if x.token == "" || strings.ContainsAny(x.token, "\x01\r\n ") {
		return "", nil, errors.New("xoauth2: empty token or one with control characters")
	}
	x.challenge = nil
	return Mechanism, []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next answers a challenge. XOAUTH2 servers send one only to say that the
// token was refused; the answer is always the empty response, after which the
// server fails the command. (Returning an error instead would leave go-imap's
// AUTHENTICATE waiting for a reply that never comes.)
func (x *XOAUTH2) Next(challenge []byte) ([]byte, error) {
	if x.challenge == nil { // keep the first one; there should be no second
		x.challenge = parseChallenge(challenge)
	}
	return []byte{}, nil
}

// Challenge returns the server's error challenge of the last exchange, or nil
// if there was none.
func (x *XOAUTH2) Challenge() *Challenge { return x.challenge }

// String never includes the token.
func (x *XOAUTH2) String() string { return "XOAUTH2 as " + strconv.Quote(x.user) }

// GoString never includes the token.
func (x *XOAUTH2) GoString() string { return x.String() }

// Challenge is the JSON error challenge of an XOAUTH2 server.
type Challenge struct {
	Status  string // "401", "400", "403" (XOAUTH2) or "invalid_token" and such (OAUTHBEARER)
	Schemes string // "bearer"
	Scope   string // the scope the server wants
	// Fields has every member of the JSON object, as compact JSON text for
	// values other than strings; Raw is the challenge as received when it is
	// not a JSON object.
	Fields map[string]string
	Raw    string
}

// parseChallenge decodes a challenge; a challenge that isn't a JSON object is
// kept as (printable) text.
func parseChallenge(b []byte) *Challenge {
	c := &Challenge{Fields: map[string]string{}}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		c.Raw = printable(string(b), 200)
		return c
	}
	for k, v := range m {
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(v)
		}
		c.Fields[k] = printable(s, 200)
	}
	c.Status = c.Fields["status"]
	c.Schemes = c.Fields["schemes"]
	c.Scope = c.Fields["scope"]
	return c
}

// String is the challenge for an error message: the JSON members in key order,
// `status=401 schemes=bearer scope="..."`.
func (c *Challenge) String() string {
	if c == nil {
		return ""
	}
	if len(c.Fields) == 0 {
		return strconv.Quote(c.Raw)
	}
	keys := make([]string, 0, len(c.Fields))
	for k := range c.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		v := c.Fields[k]
		if v == "" || strings.ContainsAny(v, " \"=") {
			v = strconv.Quote(v)
		}
		b.WriteString(printable(k, 40) + "=" + v)
	}
	return b.String()
}

// printable cuts s to max bytes and replaces control characters, so a server
// can't put line breaks or terminal escapes into our logs.
func printable(s string, max int) string {
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
