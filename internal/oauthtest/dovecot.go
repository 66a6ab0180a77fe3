package oauthtest

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/internal/dovecottest"
)

// DovecotOptions configure an XOAUTH2 Dovecot target.
type DovecotOptions struct {
	// IntrospectionURL is the token introspection endpoint (Server.IntrospectionURL).
	IntrospectionURL string
	// Scope is the scope a token must have (default Scope); "-" checks none.
	Scope string
	// Mailboxes are the addresses (user@domain) that have a mailbox. A token
	// is good for a mailbox when introspection calls it active and its
	// "username" has the mailbox's domain (the Server says "app@Domain"), as
	// app-only tokens are good for every mailbox of the tenant. (A login as
	// an address not listed passes the token check and then fails with
	// Dovecot's "NO [UNAVAILABLE] Internal error occurred", its answer to a
	// user missing from the userdb, and a disconnect.)
	Mailboxes []string
	// NoAccess are mailboxes that refuse every token, as Exchange does when
	// the app lacks FullAccess on one (a deny passdb).
	NoAccess []string
	// Debug logs Dovecot's authentication steps (auth_debug, oauth2 debug).
	Debug bool
}

// Dovecot is a running Dovecot 2.3 whose IMAP logins go through the oauth2
// passdb: AUTHENTICATE XOAUTH2 and OAUTHBEARER, and PLAIN with a token as the
// password. It is a dovecottest server with another auth configuration.
type Dovecot struct{ *dovecottest.Server }

// StartDovecot starts Dovecot for the test (see dovecottest.Start: loopback
// port, temporary directory, stopped at cleanup).
func StartDovecot(tb testing.TB, opts DovecotOptions) *Dovecot {
	tb.Helper()
	if err := validateDovecot(&opts); err != nil {
		tb.Fatalf("oauthtest: %v", err)
	}
	users := map[string]string{}
	for _, m := range opts.Mailboxes {
		users[m] = "tokens-only" // the userdb reads the file; no passdb does
	}
	srv := dovecottest.Start(tb, dovecottest.Options{Users: users, Separator: "/",
		Auth: func(dir, passwd string) (string, map[string]string) { return oauthAuth(opts, dir, passwd) }})
	return &Dovecot{srv}
}

// oauthAuth is the auth part of dovecot.conf and the files it reads.
func oauthAuth(o DovecotOptions, dir, passwd string) (string, map[string]string) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("auth_mechanisms = xoauth2 oauthbearer plain")
	// Addresses are the login names: keep '@' and don't lowercase them away.
	p("auth_username_format = %%u")
	// No cache: a revoked token must fail at once.
	p("auth_cache_size = 0")
	if o.Debug {
		p("auth_debug = yes")
		p("auth_verbose = yes")
	}
	// The deny passdb comes first: a listed user fails whatever the token.
	p("passdb {")
	p("  driver = passwd-file")
	p("  args = %s/no-access", dir)
	p("  deny = yes")
	p("}")
	p("passdb {")
	p("  driver = oauth2")
	p("  mechanisms = xoauth2 oauthbearer plain")
	p("  args = %s/dovecot-oauth2.conf.ext", dir)
	p("}")
	p("userdb {")
	p("  driver = passwd-file")
	p("  args = username_format=%%u %s", passwd)
	p("}")
	conf := b.String()

	b.Reset()
	p("# oauth2 passdb, written by internal/oauthtest.")
	p("introspection_url = %s", o.IntrospectionURL)
	p("introspection_mode = post")
	// Every answer names the app ("app@domain"); the token is good for the
	// mailboxes of that domain: compare the domains only.
	p("username_attribute = username")
	p("username_format = %%Ld")
	p("active_attribute = active")
	p("active_value = true")
	if o.Scope != "-" {
		p("scope = %s", o.Scope)
	}
	p("timeout_msecs = 5000")
	p("max_parallel_connections = 4")
	if o.Debug {
		p("debug = yes")
	}
	var deny strings.Builder
	for _, m := range o.NoAccess {
		fmt.Fprintf(&deny, "%s:\n", m)
	}
	return conf, map[string]string{"dovecot-oauth2.conf.ext": b.String(), "no-access": deny.String()}
}

func validateDovecot(o *DovecotOptions) error {
	u, err := url.Parse(o.IntrospectionURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("IntrospectionURL %q: want http://127.0.0.1:port/path", o.IntrospectionURL)
	}
	if o.Scope == "" {
		o.Scope = Scope
	}
	if len(o.Mailboxes) == 0 {
		return errors.New("no Mailboxes")
	}
	for _, m := range append(slices.Clone(o.Mailboxes), o.NoAccess...) {
		local, domain, ok := strings.Cut(m, "@")
		if !ok || local == "" || domain == "" || m != strings.ToLower(m) ||
			strings.ContainsFunc(m, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(":*/\\\"'%", r) }) {
			return fmt.Errorf("mailbox %q: want a lower-case user@domain without special characters", m)
		}
	}
	for _, m := range o.NoAccess {
		if !slices.Contains(o.Mailboxes, m) {
			return fmt.Errorf("NoAccess mailbox %q is not in Mailboxes", m)
		}
	}
	return nil
}
