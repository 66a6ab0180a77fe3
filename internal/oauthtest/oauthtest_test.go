package oauthtest_test

import (
	"bufio"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/internal/oauthtest"
)

type tokenResponse struct {
	status           int
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// requestToken posts form to the token endpoint, with basic auth if user != "".
func requestToken(t *testing.T, tokenURL string, form url.Values, user, pass string) tokenResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	tr.status = resp.StatusCode
	return tr
}

func secretForm(id, secret string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "scope": {oauthtest.Scope}}
}

func introspect(t *testing.T, s *oauthtest.Server, tok string) map[string]any {
	t.Helper()
	resp, err := http.PostForm(s.IntrospectionURL(), url.Values{"token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSecretClient(t *testing.T) {
	t.Parallel()
	s := oauthtest.NewServer(t, oauthtest.Options{TokenLifetime: 90 * time.Second})
	s.AddSecretClient("app", "pw")
	s.AddSecretClient("off", "pw")
	s.SetDisabled("off", true)

	tr := requestToken(t, s.TokenURL(), secretForm("app", "pw"), "", "")
	if tr.status != 200 || tr.AccessToken == "" || tr.TokenType != "Bearer" || tr.ExpiresIn != 90 {
		t.Fatalf("token response %+v", tr)
	}
	basic := url.Values{"grant_type": {"client_credentials"}, "scope": {oauthtest.Scope}}
	if tr := requestToken(t, s.TokenURL(), basic, "app", "pw"); tr.status != 200 {
		t.Errorf("basic auth: %+v", tr)
	}

	for _, tc := range []struct {
		name   string
		url    string
		form   url.Values
		status int
		code   string
		aadsts string
	}{
		{"wrong secret", s.TokenURL(), secretForm("app", "nope"), 401, "invalid_client", "AADSTS7000215"},
		{"no credential", s.TokenURL(), secretForm("app", ""), 401, "invalid_client", "AADSTS7000218"},
		{"unknown app", s.TokenURL(), secretForm("who", "pw"), 400, "unauthorized_client", "AADSTS700016"},
		{"disabled app", s.TokenURL(), secretForm("off", "pw"), 400, "unauthorized_client", "AADSTS7000112"},
		{"wrong tenant", strings.Replace(s.TokenURL(), s.Tenant(), "other", 1), secretForm("app", "pw"), 400, "invalid_request", "AADSTS90002"},
		{"wrong scope", s.TokenURL(), func() url.Values { f := secretForm("app", "pw"); f.Set("scope", "mail"); return f }(), 400, "invalid_scope", "AADSTS1002012"},
		{"wrong grant", s.TokenURL(), func() url.Values { f := secretForm("app", "pw"); f.Set("grant_type", "password"); return f }(), 400, "unsupported_grant_type", "AADSTS70003"},
	} {
		tr := requestToken(t, tc.url, tc.form, "", "")
		if tr.status != tc.status || tr.Error != tc.code || !strings.HasPrefix(tr.ErrorDescription, tc.aadsts+":") || tr.AccessToken != "" {
			t.Errorf("%s: %+v, want %d %s %s", tc.name, tr, tc.status, tc.code, tc.aadsts)
		}
		if strings.Contains(tr.ErrorDescription, "nope") {
			t.Errorf("%s: the secret comes back in %q", tc.name, tr.ErrorDescription)
		}
	}
	if st := s.Stats(); st.TokensIssued != 2 || st.TokenRefusals != 7 {
		t.Errorf("stats %+v", st)
	}
}

func TestIntrospection(t *testing.T) {
	t.Parallel()
	s := oauthtest.NewServer(t, oauthtest.Options{Domain: "contoso.test", TokenLifetime: time.Second})
	s.AddSecretClient("app", "pw")
	s.AddSecretClient("app2", "pw")
	tok := func(id string) string { return requestToken(t, s.TokenURL(), secretForm(id, "pw"), "", "").AccessToken }

	a, b, c := tok("app"), tok("app"), tok("app2")
	m := introspect(t, s, a)
	if m["active"] != true || m["username"] != "app@contoso.test" || m["client_id"] != "app" || m["scope"] != oauthtest.Scope {
		t.Errorf("valid token: %v", m)
	}
	if m := introspect(t, s, "no-such-token"); m["active"] != false || len(m) != 1 {
		t.Errorf("unknown token: %v", m)
	}
	s.RevokeToken(a)
	if m := introspect(t, s, a); m["active"] != false {
		t.Errorf("revoked token: %v", m)
	}
	if m := introspect(t, s, b); m["active"] != true {
		t.Errorf("other token after RevokeToken: %v", m)
	}
	s.SetDisabled("app2", true)
	if m := introspect(t, s, c); m["active"] != false {
		t.Errorf("token of a disabled app: %v", m)
	}
	s.SetDisabled("app2", false)
	if n := s.Revoke("app"); n != 1 {
		t.Errorf("Revoke = %d, want 1", n)
	}
	if m := introspect(t, s, b); m["active"] != false {
		t.Errorf("token after Revoke: %v", m)
	}
	d := tok("app2")
	time.Sleep(1100 * time.Millisecond)
	if m := introspect(t, s, d); m["active"] != false {
		t.Errorf("expired token: %v", m)
	}
	if st := s.Stats(); st.Introspections != 7 || st.Inactive != 5 {
		t.Errorf("stats %+v", st)
	}
	if len(s.Tokens()) != 4 {
		t.Errorf("Tokens() = %d tokens, want 4", len(s.Tokens()))
	}
}

// assertion signs a client assertion like o365 does, with changes applied.
func assertion(t *testing.T, key *rsa.PrivateKey, certDER []byte, header, claims map[string]any) string {
	t.Helper()
	s1, s256 := sha1.Sum(certDER), sha256.Sum256(certDER)
	h := map[string]any{"alg": "PS256", "typ": "JWT", "x5t": base64.RawURLEncoding.EncodeToString(s1[:]), "x5t#S256": base64.RawURLEncoding.EncodeToString(s256[:])}
	for k, v := range header {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	jti := make([]byte, 8)
	_, _ = rand.Read(jti)
	now := time.Now().Unix()
	c := map[string]any{"aud": "", "iss": "cert-app", "sub": "cert-app", "jti": fmt.Sprintf("%x", jti), "nbf": now, "iat": now, "exp": now + 600}
	for k, v := range claims {
		c[k] = v
	}
	hj, _ := json.Marshal(h)
	cj, _ := json.Marshal(c)
	input := base64.RawURLEncoding.EncodeToString(hj) + "." + base64.RawURLEncoding.EncodeToString(cj)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	if h["alg"] == "RS256" {
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	} else {
		sig, err = rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestCertClient(t *testing.T) {
	t.Parallel()
	s := oauthtest.NewServer(t, oauthtest.Options{})
	cert := oauthtest.NewCertificate(t)
	other := oauthtest.NewCertificate(t)
	s.AddCertClient("cert-app", cert.Cert)
	key, otherKey := cert.Key, other.Key
	aud := s.TokenURL()
	form := func(jwt string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {"cert-app"}, "scope": {oauthtest.Scope},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {jwt}}
	}
	replayed := assertion(t, key, cert.Cert.Raw, nil, map[string]any{"aud": aud})
	for _, tc := range []struct {
		name   string
		jwt    string
		aadsts string // "" = accepted
	}{
		{"PS256", replayed, ""},
		{"RS256", assertion(t, key, cert.Cert.Raw, map[string]any{"alg": "RS256"}, map[string]any{"aud": aud}), ""},
		{"only x5t", assertion(t, key, cert.Cert.Raw, map[string]any{"x5t#S256": nil}, map[string]any{"aud": aud}), ""},
		{"only x5t#S256", assertion(t, key, cert.Cert.Raw, map[string]any{"x5t": nil}, map[string]any{"aud": aud}), ""},
		{"replayed jti", replayed, "AADSTS700025"},
		{"no thumbprint", assertion(t, key, cert.Cert.Raw, map[string]any{"x5t": nil, "x5t#S256": nil}, map[string]any{"aud": aud}), "AADSTS700027"},
		{"other certificate", assertion(t, otherKey, other.Cert.Raw, nil, map[string]any{"aud": aud}), "AADSTS700027"},
		{"signed by another key", assertion(t, otherKey, cert.Cert.Raw, nil, map[string]any{"aud": aud}), "AADSTS700027"},
		{"HS256", assertion(t, key, cert.Cert.Raw, map[string]any{"alg": "HS256"}, map[string]any{"aud": aud}), "AADSTS5002738"},
		{"wrong audience", assertion(t, key, cert.Cert.Raw, nil, map[string]any{"aud": "https://login.microsoftonline.com/x/oauth2/v2.0/token"}), "AADSTS700023"},
		{"wrong issuer", assertion(t, key, cert.Cert.Raw, nil, map[string]any{"aud": aud, "iss": "other"}), "AADSTS700021"},
		{"expired", assertion(t, key, cert.Cert.Raw, nil, map[string]any{"aud": aud, "exp": time.Now().Add(-time.Minute).Unix()}), "AADSTS700024"},
		{"not yet valid", assertion(t, key, cert.Cert.Raw, nil, map[string]any{"aud": aud, "nbf": time.Now().Add(time.Hour).Unix()}), "AADSTS700024"},
		{"no jti", assertion(t, key, cert.Cert.Raw, nil, map[string]any{"aud": aud, "jti": ""}), "AADSTS50027"},
		{"garbage", "a.b", "AADSTS50027"},
	} {
		tr := requestToken(t, s.TokenURL(), form(tc.jwt), "", "")
		if tc.aadsts == "" {
			if tr.status != 200 || tr.AccessToken == "" {
				t.Errorf("%s: %+v", tc.name, tr)
			}
			continue
		}
		if tr.status != 401 || tr.Error != "invalid_client" || !strings.HasPrefix(tr.ErrorDescription, tc.aadsts+":") {
			t.Errorf("%s: %+v, want 401 invalid_client %s", tc.name, tr, tc.aadsts)
		}
	}
	// A certificate app doesn't take a secret, and vice versa.
	if tr := requestToken(t, s.TokenURL(), secretForm("cert-app", "x"), "", ""); tr.status != 401 {
		t.Errorf("secret for a certificate app: %+v", tr)
	}
	s.AddSecretClient("secret-app", "pw")
	f := form(assertion(t, key, cert.Cert.Raw, nil, map[string]any{"aud": aud, "iss": "secret-app", "sub": "secret-app"}))
	f.Set("client_id", "secret-app")
	if tr := requestToken(t, s.TokenURL(), f, "", ""); tr.status != 401 {
		t.Errorf("assertion for a secret app: %+v", tr)
	}
}

// imapSession is a raw IMAP connection.
type imapSession struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *imapSession {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	s := &imapSession{t: t, conn: conn, r: bufio.NewReader(conn)}
	if g := s.line(); !strings.Contains(g, "AUTH=XOAUTH2") {
		t.Fatalf("greeting %q lacks AUTH=XOAUTH2", g)
	}
	return s
}

func (s *imapSession) line() string {
	s.t.Helper()
	l, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.TrimRight(l, "\r\n")
}

func (s *imapSession) send(format string, args ...any) {
	fmt.Fprintf(s.conn, format+"\r\n", args...)
}

// xoauth2 runs AUTHENTICATE XOAUTH2 (SASL-IR); on a challenge it answers
// with an empty line. It returns the decoded challenge ("" if none) and the
// tagged reply.
func (s *imapSession) xoauth2(tag, user, token string) (challenge, reply string) {
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
	s.send("%s AUTHENTICATE XOAUTH2 %s", tag, ir)
	for {
		l := s.line()
		if c, ok := strings.CutPrefix(l, "+ "); ok {
			b, err := base64.StdEncoding.DecodeString(c)
			if err != nil {
				s.t.Fatalf("challenge %q: %v", c, err)
			}
			challenge = string(b)
			s.send("")
			continue
		}
		if strings.HasPrefix(l, tag+" ") {
			return challenge, l
		}
	}
}

func TestDovecot(t *testing.T) {
	t.Parallel()
	s := oauthtest.NewServer(t, oauthtest.Options{})
	s.AddSecretClient("app", "pw")
	d := oauthtest.StartDovecot(t, oauthtest.DovecotOptions{
		IntrospectionURL: s.IntrospectionURL(),
		Mailboxes:        []string{"alice@example.com", "bob@example.com"},
		NoAccess:         []string{"bob@example.com"},
	})
	if !strings.HasPrefix(d.URL(), "imap+plain://127.0.0.1:") || d.Dir() == "" {
		t.Errorf("URL %q, Dir %q", d.URL(), d.Dir())
	}
	tok := requestToken(t, s.TokenURL(), secretForm("app", "pw"), "", "").AccessToken

	t.Run("xoauth2", func(t *testing.T) {
		t.Parallel()
		c := dial(t, d.Addr())
		if ch, reply := c.xoauth2("a1", "alice@example.com", tok); ch != "" || !strings.HasPrefix(reply, "a1 OK") {
			t.Fatalf("challenge %q, reply %q", ch, reply)
		}
		c.send("a2 SELECT INBOX")
		for l := c.line(); !strings.HasPrefix(l, "a2 "); l = c.line() {
		}
	})
	t.Run("plain with token", func(t *testing.T) {
		t.Parallel()
		c := dial(t, d.Addr())
		c.send("a1 LOGIN alice@example.com %s", tok)
		if l := c.line(); !strings.HasPrefix(l, "a1 OK") {
			t.Errorf("LOGIN with the token: %q", l)
		}
	})
	for _, tc := range []struct{ name, user, token string }{
		{"unknown token", "alice@example.com", "nope"},
		{"no access", "bob@example.com", tok},
		{"other domain", "alice@other.test", tok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, d.Addr())
			ch, reply := c.xoauth2("a1", tc.user, tc.token)
			if ch != `{"status":"401","schemes":"bearer","scope":"mail"}` {
				t.Errorf("challenge %q", ch)
			}
			if reply != "a1 NO [AUTHENTICATIONFAILED] Authentication failed." {
				t.Errorf("reply %q", reply)
			}
			// A failed AUTHENTICATE may be followed by another.
			if _, reply := c.xoauth2("a2", "alice@example.com", tok); !strings.HasPrefix(reply, "a2 OK") {
				t.Errorf("second AUTHENTICATE: %q", reply)
			}
		})
	}
}
