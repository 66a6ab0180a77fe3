package o365

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/oauth2"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/internal/oauthtest"
	mfsync "github.com/mailferry/mailferry/sync"
)

var _ mfsync.TargetLogin = Login(nil)

// seqSource hands out tok-1, tok-2, … : a new one after each Invalidate.
type seqSource struct {
	mu          sync.Mutex
	n           int
	invalidated int
	noNew       bool // Invalidate does nothing (a source that can't refresh)
	err         error
}

func (s *seqSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil && s.n > 0 {
		return nil, s.err
	}
	if s.n == 0 {
		s.n = 1
	}
	return &oauth2.Token{AccessToken: fmt.Sprintf("tok-%d", s.n)}, nil
}

func (s *seqSource) Invalidate(tok *oauth2.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidated++
	if !s.noNew {
		s.n++
	}
}

// fakeExchange is a scripted IMAP server that answers AUTHENTICATE XOAUTH2
// the way Exchange Online does. good says which tokens it takes; for the
// others it sends challenge (base64 of it; none if "") and then no.
type fakeExchange struct {
	good      func(user, token string) bool
	challenge string
	no        string // tagged NO text, e.g. "AUTHENTICATE failed."

	mu      sync.Mutex
	auths   []string // "user token" of each AUTHENTICATE
	answers []string // the client's lines after a challenge
}

func (f *fakeExchange) start(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(conn)
		}
	}()
	return l.Addr().String()
}

func (f *fakeExchange) serve(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	w := func(s string) { _, _ = conn.Write([]byte(s + "\r\n")) }
	w("* OK The Microsoft Exchange IMAP4 service is ready. [TQBXADIAUABSADEANgBDAEEAMAAwADAAMQAuAG4AYQBtAHAAcgBkADEANgAuAHAAcgBvAGQALgBvAHUAdABsAG8AbwBrAC4AYwBvAG0A]")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			w("* BAD Command Error. 10")
			continue
		}
		tag, cmd := fields[0], strings.ToUpper(fields[1])
		switch {
		case cmd == "CAPABILITY":
			w("* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+")
			w(tag + " OK CAPABILITY completed.")
		case cmd == "AUTHENTICATE" && len(fields) == 4 && strings.EqualFold(fields[2], "XOAUTH2"):
			ir, err := base64.StdEncoding.DecodeString(fields[3])
			user, token, ok := parseIR(string(ir))
			if err != nil || !ok {
				w(tag + " BAD Command Argument Error. 12")
				continue
			}
			f.mu.Lock()
			f.auths = append(f.auths, user+" "+token)
			f.mu.Unlock()
			if f.good(user, token) {
				w(tag + " OK AUTHENTICATE completed.")
				continue
			}
			if f.challenge != "" {
				w("+ " + base64.StdEncoding.EncodeToString([]byte(f.challenge)))
				answer, err := r.ReadString('\n')
				if err != nil {
					return
				}
				f.mu.Lock()
				f.answers = append(f.answers, answer)
				f.mu.Unlock()
			}
			w(tag + " NO " + f.no)
		case cmd == "NOOP":
			w(tag + " OK NOOP completed.")
		case cmd == "LOGOUT":
			w("* BYE Microsoft Exchange Server IMAP4 server signing off.")
			w(tag + " OK LOGOUT completed.")
			return
		default:
			w(tag + " BAD User is authenticated but not connected.")
		}
	}
}

// parseIR splits "user=U\x01auth=Bearer T\x01\x01".
func parseIR(ir string) (user, token string, ok bool) {
	parts := strings.Split(ir, "\x01")
	if len(parts) != 4 || parts[2] != "" || parts[3] != "" {
		return "", "", false
	}
	user, ok1 := strings.CutPrefix(parts[0], "user=")
	token, ok2 := strings.CutPrefix(parts[1], "auth=Bearer ")
	return user, token, ok1 && ok2
}

func dialPlain(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ep, err := imapconn.ParseURL("imap+plain://"+addr, false)
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapconn.Dial(ctx, ep, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var mailbox = config.Mailbox{Email: "alice@example.com", Line: 2}

func TestLoginExchangeChallenge(t *testing.T) {
	t.Parallel()
	// The first token is refused with Exchange's challenge; the second works.
	f := &fakeExchange{
		good:      func(user, token string) bool { return user == "alice@example.com" && token == "tok-2" },
		challenge: `{"status":"401","schemes":"bearer","scope":"https://outlook.office365.com/.default"}`,
		no:        "AUTHENTICATE failed.",
	}
	c := dialPlain(t, f.start(t))
	src := &seqSource{}
	if err := Login(src)(context.Background(), c, mailbox); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Errorf("NOOP after login: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []string{"alice@example.com tok-1", "alice@example.com tok-2"}; strings.Join(f.auths, ",") != strings.Join(want, ",") {
		t.Errorf("AUTHENTICATEs %q, want %q", f.auths, want)
	}
	// The answer to the challenge is the empty response, which go-imap
	// writes as "=" (RFC 4959's form for an empty initial response).
	if len(f.answers) != 1 || f.answers[0] != "=\r\n" {
		t.Errorf("answers to the challenge %q, want one \"=\\r\\n\"", f.answers)
	}
	if src.invalidated != 1 {
		t.Errorf("%d invalidations, want 1", src.invalidated)
	}
}

func TestLoginExchangeRefusesTwice(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, challenge string
		want            []string
	}{
		{"with challenge", `{"status":"401","schemes":"bearer","scope":"https://outlook.office365.com/.default"}`,
			[]string{"(2 tokens tried)", "token rejected (status 401)", "IMAP.AccessAsApp", "FullAccess on this mailbox",
				`challenge: schemes=bearer scope=https://outlook.office365.com/.default status=401`, `server said: NO "AUTHENTICATE failed."`}},
		{"without challenge", "",
			[]string{"(2 tokens tried)", "token rejected: the app may lack IMAP.AccessAsApp", `server said: NO "AUTHENTICATE failed."`}},
		{"bad request", `{"status":"400","schemes":"bearer"}`,
			[]string{"bad request (status 400)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeExchange{good: func(string, string) bool { return false }, challenge: tc.challenge, no: "AUTHENTICATE failed."}
			c := dialPlain(t, f.start(t))
			err := Login(&seqSource{})(context.Background(), c, mailbox)
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v, want *AuthError", err, err)
			}
			if imapconn.IsTemporary(err) {
				t.Error("refused twice, but temporary")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "tok-") {
				t.Errorf("token in the error: %v", err)
			}
			if err := c.Noop().Wait(); err != nil {
				t.Errorf("connection unusable after the refusals: %v", err)
			}
		})
	}
}

func TestLoginSourceCannotRefresh(t *testing.T) {
	t.Parallel()
	f := &fakeExchange{good: func(string, string) bool { return false }, no: "AUTHENTICATE failed."}
	c := dialPlain(t, f.start(t))
	src := &seqSource{noNew: true}
	err := Login(src)(context.Background(), c, mailbox)
	if err == nil || imapconn.IsTemporary(err) {
		t.Fatalf("error %v, want permanent", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.auths) != 1 {
		t.Errorf("%d AUTHENTICATEs with the same token, want 1", len(f.auths))
	}
}

func TestLoginSourceFailsOnRefresh(t *testing.T) {
	t.Parallel()
	f := &fakeExchange{good: func(string, string) bool { return false }, no: "AUTHENTICATE failed."}
	c := dialPlain(t, f.start(t))
	src := &seqSource{err: imapconn.MakePermanent(errors.New("token endpoint says no"))}
	err := Login(src)(context.Background(), c, mailbox)
	if err == nil || imapconn.IsTemporary(err) || !strings.Contains(err.Error(), "the server refused the token") ||
		!strings.Contains(err.Error(), "no new one could be had: token endpoint says no") {
		t.Fatalf("error %v", err)
	}
}

func TestLoginNoXOAUTH2(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"))
		_, _ = bufio.NewReader(conn).ReadString('\n')
	}()
	c := dialPlain(t, l.Addr().String())
	err = Login(&seqSource{})(context.Background(), c, mailbox)
	if err == nil || imapconn.IsTemporary(err) || !strings.Contains(err.Error(), "does not offer AUTH=XOAUTH2") {
		t.Errorf("error %v", err)
	}
}

func TestLoginThrottledIsNotARefusal(t *testing.T) {
	t.Parallel()
	f := &fakeExchange{good: func(string, string) bool { return false },
		no: "[UNAVAILABLE] Request is throttled. Suggested Backoff Time: 1500 milliseconds"}
	c := dialPlain(t, f.start(t))
	src := &seqSource{}
	err := Login(src)(context.Background(), c, mailbox)
	if d, ok := imapconn.ThrottleDelay(err); !ok || d != 1500*time.Millisecond || !imapconn.IsTemporary(err) {
		t.Errorf("error %v: throttle %v %v, temporary %v", err, d, ok, imapconn.IsTemporary(err))
	}
	var ae *AuthError
	if errors.As(err, &ae) || src.invalidated != 0 {
		t.Errorf("throttling treated as a refused token: %v, %d invalidations", err, src.invalidated)
	}
}

// dovecotTarget starts the OAuth2 server and an XOAUTH2 Dovecot with
// alice@ and bob@example.com, bob without access for the app.
func dovecotTarget(t *testing.T, lifetime time.Duration) (*oauthtest.Server, *oauthtest.Dovecot) {
	t.Helper()
	srv := oauthtest.NewServer(t, oauthtest.Options{TokenLifetime: lifetime})
	d := oauthtest.StartDovecot(t, oauthtest.DovecotOptions{
		IntrospectionURL: srv.IntrospectionURL(),
		Mailboxes:        []string{"alice@example.com", "bob@example.com"},
		NoAccess:         []string{"bob@example.com"},
	})
	return srv, d
}

// login dials d and logs in as email, returning the client and Login's error.
func login(t *testing.T, d *oauthtest.Dovecot, src oauth2.TokenSource, email string) (*imapclient.Client, error) {
	t.Helper()
	c := dialPlain(t, d.Addr())
	return c, Login(src)(context.Background(), c, config.Mailbox{Email: email})
}

// noSecrets fails if msg holds the secret or any token srv issued.
func noSecrets(t *testing.T, srv *oauthtest.Server, msg string) {
	t.Helper()
	if strings.Contains(msg, testSecret) {
		t.Errorf("secret in %q", msg)
	}
	for _, tok := range srv.Tokens() {
		if strings.Contains(msg, tok) {
			t.Errorf("token in %q", msg)
		}
	}
}

func TestDovecotLogin(t *testing.T) {
	t.Parallel()
	srv, d := dovecotTarget(t, time.Hour)
	srv.AddSecretClient("app", testSecret)
	cert := oauthtest.NewCertificate(t)
	srv.AddCertClient("cert-app", cert.Cert)
	certFile, keyFile := cert.WriteFiles(t, t.TempDir())
	certSrc, err := NewTokenSource(Options{TenantID: srv.Tenant(), ClientID: "cert-app", CertificateFile: certFile, KeyFile: keyFile, TokenURL: srv.TokenURLTemplate()})
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]*TokenSource{"secret": newSource(t, srv, "app", testSecret), "certificate": certSrc} {
		// Several connections share the source's one token.
		for range 3 {
			c, err := login(t, d, src, "alice@example.com")
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			// SELECT proves the login: go-imap signals the command done
			// before it updates c.State, so State may still lag here.
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Errorf("%s: SELECT INBOX: %v", name, err)
			}
		}
	}
	if n := srv.Stats().TokensIssued; n != 2 {
		t.Errorf("%d tokens issued, want 2 (one per app)", n)
	}
	noSecrets(t, srv, d.Log())
}

func TestDovecotTokenExpiresMidRun(t *testing.T) {
	t.Parallel()
	srv, d := dovecotTarget(t, 2*time.Second)
	srv.AddSecretClient("app", testSecret)
	src := newSource(t, srv, "app", testSecret)
	first, err := login(t, d, src, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2500 * time.Millisecond) // past the first token's expiry
	n := 0
	for time.Now().Before(deadline) || n < 3 {
		c, err := login(t, d, src, "alice@example.com")
		if err != nil {
			t.Fatalf("login %d at %v: %v", n, time.Until(deadline), err)
		}
		c.Close()
		n++
		time.Sleep(300 * time.Millisecond)
	}
	// A session that logged in before the token expired goes on.
	if _, err := first.Select("INBOX", nil).Wait(); err != nil {
		t.Errorf("SELECT on the first connection after its token expired: %v", err)
	}
	st := srv.Stats()
	if st.TokensIssued < 2 || st.Inactive != 0 {
		t.Errorf("stats %+v: want at least 2 tokens and no login with an expired one", st)
	}
}

func TestDovecotRevokedToken(t *testing.T) {
	t.Parallel()
	srv, d := dovecotTarget(t, time.Hour)
	srv.AddSecretClient("app", testSecret)
	src := newSource(t, srv, "app", testSecret)
	if _, err := login(t, d, src, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if srv.Revoke("app") != 1 {
		t.Fatal("nothing revoked")
	}
	// The cached token is refused with Dovecot's challenge; Login takes a
	// new one and tries again on the same connection.
	c, err := login(t, d, src, "alice@example.com")
	if err != nil {
		t.Fatalf("login after revocation: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Errorf("SELECT: %v", err)
	}
	if st := srv.Stats(); st.TokensIssued != 2 || st.Inactive != 1 {
		t.Errorf("stats %+v, want 2 tokens and 1 refused introspection", st)
	}

	// Now the app is disabled: its token is refused and no new one comes.
	srv.SetDisabled("app", true)
	_, err = login(t, d, src, "alice@example.com")
	if err == nil || imapconn.IsTemporary(err) {
		t.Fatalf("disabled app: %v, want a permanent error", err)
	}
	var te *TokenError
	if !errors.As(err, &te) {
		t.Errorf("disabled app: %T %v, want a *TokenError inside", err, err)
	}
	for _, want := range []string{`XOAUTH2 login as "alice@example.com"`, "the server refused the token (token rejected (status 401)) and no new one could be had",
		"the application is disabled in Entra", "AADSTS7000112"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("disabled app: %q lacks %q", err, want)
		}
	}
	noSecrets(t, srv, err.Error())
}

func TestDovecotNoAccess(t *testing.T) {
	t.Parallel()
	srv, d := dovecotTarget(t, time.Hour)
	srv.AddSecretClient("app", testSecret)
	src := newSource(t, srv, "app", testSecret)
	c, err := login(t, d, src, "bob@example.com")
	var ae *AuthError
	if !errors.As(err, &ae) || imapconn.IsTemporary(err) {
		t.Fatalf("bob: %T %v, want a permanent *AuthError", err, err)
	}
	if ae.Challenge == nil || ae.Challenge.Status != "401" || ae.Attempts != 2 {
		t.Errorf("AuthError %+v, challenge %+v", ae, ae.Challenge)
	}
	for _, want := range []string{`XOAUTH2 login as "bob@example.com" refused (2 tokens tried)`, "token rejected (status 401)",
		"FullAccess on this mailbox", "status=401"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	noSecrets(t, srv, err.Error())
	// The connection still works, and other mailboxes aren't affected.
	if err := c.Noop().Wait(); err != nil {
		t.Errorf("NOOP after the refusal: %v", err)
	}
	if _, err := login(t, d, src, "alice@example.com"); err != nil {
		t.Errorf("alice: %v", err)
	}
	// Tokens are good for the tenant's domain only.
	if _, err := login(t, d, src, "alice@other.example"); !errors.As(err, &ae) {
		t.Errorf("other domain: %v", err)
	}
}

func TestDovecotWrongSecret(t *testing.T) {
	t.Parallel()
	srv, d := dovecotTarget(t, time.Hour)
	srv.AddSecretClient("app", "the-right-one")
	src := newSource(t, srv, "app", testSecret)
	var errs []error
	for range 3 {
		_, err := login(t, d, src, "alice@example.com")
		errs = append(errs, err)
	}
	for _, err := range errs {
		if err == nil || imapconn.IsTemporary(err) || !strings.Contains(err.Error(), "wrong client secret") {
			t.Errorf("error %v, want a permanent wrong-secret error", err)
			continue
		}
		if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "the-right-one") {
			t.Errorf("secret in %q", err)
		}
	}
	if st := srv.Stats(); st.TokenRefusals != 1 || st.Introspections != 0 {
		t.Errorf("stats %+v: want 1 refused token request (held) and no login attempt", st)
	}
}

func TestLoginBadAddress(t *testing.T) {
	t.Parallel()
	f := &fakeExchange{good: func(string, string) bool { return true }}
	c := dialPlain(t, f.start(t))
	err := Login(&seqSource{})(context.Background(), c, config.Mailbox{Email: ""})
	if err == nil || imapconn.IsTemporary(err) {
		t.Errorf("empty address: %v, want a permanent error", err)
	}
}
