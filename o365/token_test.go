package o365

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/internal/oauthtest"
)

const testSecret = "s3cr3t~Value.with-Chars_0123"

func TestValidate(t *testing.T) {
	ok := Options{TenantID: "contoso.onmicrosoft.com", ClientID: "11111111-2222-3333-4444-555555555555", ClientSecret: "x"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	longest := ok
	longest.TenantID = strings.Repeat("a", maxTenantLen)
	if err := longest.Validate(); err != nil {
		t.Errorf("tenant id of %d characters: %v", maxTenantLen, err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no tenant", func(o *Options) { o.TenantID = "" }, "tenant id is empty"},
		{"bad tenant", func(o *Options) { o.TenantID = "a/b" }, "want a GUID or a domain name"},
		{"tenant too long", func(o *Options) { o.TenantID = strings.Repeat("a", maxTenantLen+1) }, "want a GUID or a domain name"},
		{"tenant ending in a dot", func(o *Options) { o.TenantID = "contoso.com." }, "want a GUID or a domain name"},
		{"no client", func(o *Options) { o.ClientID = "" }, "client id is empty"},
		{"client with space", func(o *Options) { o.ClientID = "a b" }, "spaces or control characters"},
		{"no credential", func(o *Options) { o.ClientSecret = "" }, "set a client secret or a certificate file"},
		{"both credentials", func(o *Options) { o.CertificateFile = "c.pem" }, "not both"},
		{"key without cert", func(o *Options) { o.ClientSecret, o.KeyFile = "", "k.pem" }, "set a client secret or a certificate file"},
		{"bad algorithm", func(o *Options) { o.Algorithm = "HS256" }, "want PS256 or RS256"},
		{"http token URL", func(o *Options) { o.TokenURL = "http://login.example.com/t" }, "must be https"},
		{"token URL without host", func(o *Options) { o.TokenURL = "https:///x" }, "no host"},
		{"token URL with credentials", func(o *Options) { o.TokenURL = "https://u:p@login.example.com/x" }, "no credentials"},
		{"negative refresh", func(o *Options) { o.EarlyRefresh = -time.Second }, "negative"},
	} {
		o := ok
		tc.change(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "p@") {
			t.Errorf("%s: password of the URL in the error: %v", tc.name, err)
		}
	}
	// Everything wrong at once is reported at once.
	err := (&Options{}).Validate()
	if err == nil || !strings.Contains(err.Error(), "tenant") || !strings.Contains(err.Error(), "client id") {
		t.Errorf("empty options: %v", err)
	}
}

func TestTokenURL(t *testing.T) {
	for _, tc := range []struct{ tenant, url, want string }{
		{"contoso.onmicrosoft.com", "", "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"},
		{"abc", "https://login.microsoftonline.us/{tenant}/oauth2/v2.0/token", "https://login.microsoftonline.us/abc/oauth2/v2.0/token"},
		{"abc", "https://login.example.com/fixed/token", "https://login.example.com/fixed/token"},
		{"abc", "http://127.0.0.1:8080/{tenant}/t", "http://127.0.0.1:8080/abc/t"},
		{"abc", "http://localhost:8080/t", "http://localhost:8080/t"},
	} {
		o := Options{TenantID: tc.tenant, TokenURL: tc.url}
		got, err := o.tokenURL()
		if err != nil || got != tc.want {
			t.Errorf("tokenURL(%q, %q) = %q, %v; want %q", tc.tenant, tc.url, got, err, tc.want)
		}
	}
}

// newSource returns a TokenSource for app id on srv with a client secret.
func newSource(t *testing.T, srv *oauthtest.Server, id, secret string) *TokenSource {
	t.Helper()
	src, err := NewTokenSource(Options{TenantID: srv.Tenant(), ClientID: id, ClientSecret: config.Secret(secret), TokenURL: srv.TokenURLTemplate()})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestTokenSourceCachesAndRefreshesEarly(t *testing.T) {
	t.Parallel()
	srv := oauthtest.NewServer(t, oauthtest.Options{TokenLifetime: time.Hour})
	srv.AddSecretClient("app", testSecret)
	src := newSource(t, srv, "app", testSecret)
	var offset atomic.Int64
	src.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }

	tok1, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok1.AccessToken == "" || time.Until(tok1.Expiry) < 59*time.Minute {
		t.Fatalf("token %v expires %v", tok1.AccessToken != "", tok1.Expiry)
	}
	offset.Store(int64(54 * time.Minute)) // 6 minutes left: still good
	if tok, _ := src.Token(); tok.AccessToken != tok1.AccessToken {
		t.Error("token replaced more than 5 minutes before expiry")
	}
	offset.Store(int64(56 * time.Minute)) // 4 minutes left: replace
	tok2, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.AccessToken == tok1.AccessToken {
		t.Error("token not replaced 4 minutes before expiry")
	}
	if n := srv.Stats().TokensIssued; n != 2 {
		t.Errorf("%d tokens issued, want 2", n)
	}

	// Invalidate of an old token does nothing; of the current one, replaces it.
	src.Invalidate(tok1)
	if tok, _ := src.Token(); tok.AccessToken != tok2.AccessToken {
		t.Error("Invalidate(old token) dropped the current one")
	}
	src.Invalidate(tok2)
	tok3, err := src.Token()
	if err != nil || tok3.AccessToken == tok2.AccessToken {
		t.Errorf("after Invalidate: %v, same token %v", err, tok3 != nil && tok3.AccessToken == tok2.AccessToken)
	}
	src.Invalidate(nil)
}

func TestTokenSourceShortLifetime(t *testing.T) {
	t.Parallel()
	// A token living 2 s is replaced after half its life, not fetched anew on
	// every call (the 5-minute margin is longer than the whole lifetime).
	srv := oauthtest.NewServer(t, oauthtest.Options{TokenLifetime: 2 * time.Second})
	srv.AddSecretClient("app", testSecret)
	src := newSource(t, srv, "app", testSecret)
	tok1, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok, _ := src.Token(); tok.AccessToken != tok1.AccessToken {
		t.Error("2-second token replaced at once")
	}
	time.Sleep(1100 * time.Millisecond)
	if tok, _ := src.Token(); tok.AccessToken == tok1.AccessToken {
		t.Error("2-second token not replaced after 1.1 s")
	}
}

func TestTokenSourceConcurrent(t *testing.T) {
	t.Parallel()
	srv := oauthtest.NewServer(t, oauthtest.Options{})
	srv.AddSecretClient("app", testSecret)
	src := newSource(t, srv, "app", testSecret)
	var wg sync.WaitGroup
	toks := make([]string, 16)
	for i := range toks {
		wg.Go(func() {
			tok, err := src.Token()
			if err != nil {
				t.Error(err)
				return
			}
			toks[i] = tok.AccessToken
		})
	}
	wg.Wait()
	for _, tok := range toks {
		if tok != toks[0] {
			t.Fatal("concurrent callers got different tokens")
		}
	}
	if n := srv.Stats().TokensIssued; n != 1 {
		t.Errorf("%d token requests for 16 concurrent callers, want 1", n)
	}
}

func TestTokenSourceWrongSecret(t *testing.T) {
	t.Parallel()
	srv := oauthtest.NewServer(t, oauthtest.Options{})
	srv.AddSecretClient("app", "the-right-one")
	src := newSource(t, srv, "app", testSecret)
	_, err := src.Token()
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("error %T %v, want *TokenError", err, err)
	}
	if imapconn.IsTemporary(err) {
		t.Error("wrong secret reported as temporary")
	}
	if te.StatusCode != http.StatusUnauthorized || te.Code != "invalid_client" {
		t.Errorf("TokenError %+v", te)
	}
	msg := err.Error()
	for _, want := range []string{"refused app app", "HTTP 401, invalid_client", "wrong client secret", "AADSTS7000215", srv.TokenURL()} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, testSecret) || strings.Contains(msg, "the-right-one") {
		t.Errorf("secret in the error: %s", msg)
	}
	// The failure is remembered for a while: no new request.
	for range 3 {
		if _, err2 := src.Token(); err2 == nil || err2.Error() != msg {
			t.Errorf("second Token() = %v", err2)
		}
	}
	if n := srv.Stats().TokenRefusals; n != 1 {
		t.Errorf("%d refused requests, want 1 (failures are held)", n)
	}
}

func TestTokenSourceErrors(t *testing.T) {
	t.Parallel()
	srv := oauthtest.NewServer(t, oauthtest.Options{})
	srv.AddSecretClient("app", testSecret)
	srv.AddSecretClient("off", testSecret)
	srv.SetDisabled("off", true)
	for _, tc := range []struct {
		name string
		opts Options
		want []string
	}{
		{"unknown app", Options{TenantID: srv.Tenant(), ClientID: "nope", ClientSecret: testSecret, TokenURL: srv.TokenURLTemplate()},
			[]string{"unauthorized_client", "no such application in this tenant", "AADSTS700016"}},
		{"disabled app", Options{TenantID: srv.Tenant(), ClientID: "off", ClientSecret: testSecret, TokenURL: srv.TokenURLTemplate()},
			[]string{"the application is disabled", "AADSTS7000112"}},
		{"wrong tenant", Options{TenantID: "other", ClientID: "app", ClientSecret: testSecret, TokenURL: srv.TokenURLTemplate()},
			[]string{"no such tenant", "AADSTS90002"}},
		{"wrong scope", Options{TenantID: srv.Tenant(), ClientID: "app", ClientSecret: testSecret, TokenURL: srv.TokenURLTemplate(), Scope: "https://graph.microsoft.com/.default"},
			[]string{"invalid_scope", "AADSTS1002012"}},
	} {
		src, err := NewTokenSource(tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, err = src.Token()
		if err == nil || imapconn.IsTemporary(err) {
			t.Errorf("%s: %v, want a permanent error", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), testSecret) {
			t.Errorf("%s: secret in the error", tc.name)
		}
	}
}

func TestTokenSourceTemporaryErrors(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte("<html>busy</html>"))
	}))
	defer hs.Close()
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway} {
		status.Store(int32(code))
		src, err := NewTokenSource(Options{TenantID: "t", ClientID: "app", ClientSecret: testSecret, TokenURL: hs.URL + "/{tenant}/token"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = src.Token()
		if err == nil || !imapconn.IsTemporary(err) {
			t.Errorf("HTTP %d: %v, want a temporary error", code, err)
		}
	}
	// Nobody listening: a transport error, temporary.
	hs.Close()
	src, _ := NewTokenSource(Options{TenantID: "t", ClientID: "app", ClientSecret: testSecret, TokenURL: hs.URL + "/{tenant}/token"})
	if _, err := src.Token(); err == nil || !imapconn.IsTemporary(err) || strings.Contains(err.Error(), testSecret) {
		t.Errorf("connection refused: %v, want a temporary error", err)
	}
}

func TestCertificateFlow(t *testing.T) {
	t.Parallel()
	srv := oauthtest.NewServer(t, oauthtest.Options{})
	cert := oauthtest.NewCertificate(t)
	srv.AddCertClient("cert-app", cert.Cert)
	dir := t.TempDir()
	certFile, keyFile := cert.WriteFiles(t, dir)
	both := filepath.Join(dir, "both.pem")
	if err := os.WriteFile(both, append(append([]byte{}, cert.CertPEM...), cert.KeyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, alg, certFile, keyFile string
	}{
		{"PS256 separate files", "", certFile, keyFile},
		{"RS256 separate files", "RS256", certFile, keyFile},
		{"PS256 one file", "PS256", both, ""},
	} {
		src, err := NewTokenSource(Options{
			TenantID: srv.Tenant(), ClientID: "cert-app", CertificateFile: tc.certFile, KeyFile: tc.keyFile,
			Algorithm: tc.alg, TokenURL: srv.TokenURLTemplate(),
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for range 2 { // a new assertion (new jti) for each request
			tok, err := src.Token()
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			src.Invalidate(tok)
		}
	}
	if n := srv.Stats().TokensIssued; n != 6 {
		t.Errorf("%d tokens issued, want 6", n)
	}

	// Another certificate than the registered one: refused, permanently.
	other := oauthtest.NewCertificate(t)
	oc, ok := other.WriteFiles(t, t.TempDir())
	src, err := NewTokenSource(Options{TenantID: srv.Tenant(), ClientID: "cert-app", CertificateFile: oc, KeyFile: ok, TokenURL: srv.TokenURLTemplate()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Token()
	if err == nil || imapconn.IsTemporary(err) || !strings.Contains(err.Error(), "AADSTS700027") ||
		!strings.Contains(err.Error(), "is this certificate uploaded to the app registration?") {
		t.Errorf("unregistered certificate: %v", err)
	}
}

func TestLoadCertificateErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert := oauthtest.NewCertificate(t)
	other := oauthtest.NewCertificate(t)
	write := func(name string, data ...[]byte) string {
		p := filepath.Join(dir, name)
		var all []byte
		for _, d := range data {
			all = append(all, d...)
		}
		if err := os.WriteFile(p, all, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})
	encPEM := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing file", filepath.Join(dir, "nope"), "", "no such file"},
		{"no certificate", write("k-only", cert.KeyPEM), "", "no PEM CERTIFICATE block"},
		{"no key", write("c-only", cert.CertPEM), "", "no PEM PRIVATE KEY block"},
		{"key of another certificate", write("c1", cert.CertPEM), write("k2", other.KeyPEM), "does not belong to the certificate"},
		{"EC key", write("c3", cert.CertPEM), write("ec", ecPEM), "Entra needs RSA"},
		{"encrypted key", write("c4", cert.CertPEM), write("enc", encPEM), "encrypted"},
	} {
		_, err := NewTokenSource(Options{TenantID: "t", ClientID: "c", CertificateFile: tc.cert, KeyFile: tc.key})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY-----") {
			t.Errorf("%s: key material in the error", tc.name)
		}
	}
}

func TestCheckSecretFilePermissions(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		if err := CheckSecretFilePermissions(`C:\nope`); err != nil {
			t.Errorf("Windows: %v", err)
		}
		return
	}
	p := filepath.Join(t.TempDir(), "mailferry.toml")
	if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckSecretFilePermissions(p); err != nil {
		t.Errorf("mode 0600: %v", err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		who  string
	}{{0o640, "its group"}, {0o604, "others"}, {0o644, "its group and others"}} {
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		err := CheckSecretFilePermissions(p)
		if err == nil || !strings.Contains(err.Error(), "readable by "+tc.who+" (mode") || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v", tc.mode, err)
		}
	}
	if err := CheckSecretFilePermissions(p + ".missing"); err == nil {
		t.Error("missing file: no error")
	}
}
