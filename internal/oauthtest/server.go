// Package oauthtest is a stand-in for Microsoft Entra and Exchange Online's
// token checks in tests: an OAuth2 server on 127.0.0.1 that issues app-only
// tokens with the client-credentials flow (client secret or a certificate's
// signed client assertion, checked as Entra checks them) and answers RFC 7662
// token introspection, plus a Dovecot 2.3 IMAP server (StartDovecot) whose
// oauth2 passdb asks that introspection endpoint, so that AUTHENTICATE
// XOAUTH2 runs against a real server.
//
// Tokens are opaque random strings with a configurable lifetime; they can be
// revoked one by one or per app, and an app can be disabled. Error answers
// mimic Entra's: an OAuth2 error code and an "AADSTSnnnnnnn: …" description.
package oauthtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Scope is what the token endpoint expects by default: Exchange Online's
// application permissions.
const Scope = "https://outlook.office365.com/.default"

// assertionType is RFC 7523's client_assertion_type for a JWT.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// clockSkew is how far an assertion's nbf may lie in the future.
const clockSkew = 5 * time.Second

// Options configure a Server.
type Options struct {
	// Tenant is the tenant id in the token endpoint's path (default
	// "mailferry-test-tenant"); requests for another tenant are refused.
	Tenant string
	// Domain is the tenant's mail domain (default "example.com"). The
	// introspection endpoint says a valid token belongs to "app@Domain";
	// StartDovecot accepts it for every mailbox in that domain.
	Domain string
	// Scope is the only scope granted (default Scope).
	Scope string
	// TokenLifetime is the lifetime of new tokens (default 1 hour; at least
	// 1 s, as expires_in counts seconds). SetTokenLifetime changes it.
	TokenLifetime time.Duration
}

// Server is a running test OAuth2 server.
type Server struct {
	opts Options
	hs   *httptest.Server

	mu       sync.Mutex
	lifetime time.Duration
	clients  map[string]*client
	tokens   map[string]*token
	jtis     map[string]bool
	stats    Stats
}

type client struct {
	secret   string
	cert     *x509.Certificate
	disabled bool
}

type token struct {
	client  string
	expiry  time.Time
	revoked bool
}

// Stats count what the server did.
type Stats struct {
	TokensIssued   int // successful token requests
	TokenRefusals  int // token requests answered with an error
	Introspections int // introspection requests
	Inactive       int // introspections that answered "active": false
}

// NewServer starts a server on 127.0.0.1 and closes it at test cleanup.
func NewServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Tenant == "" {
		opts.Tenant = "mailferry-test-tenant"
	}
	if opts.Domain == "" {
		opts.Domain = "example.com"
	}
	if opts.Scope == "" {
		opts.Scope = Scope
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = time.Hour
	}
	s := &Server{
		opts:     opts,
		lifetime: opts.TokenLifetime,
		clients:  map[string]*client{},
		tokens:   map[string]*token{},
		jtis:     map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.serveToken)
	mux.HandleFunc("POST /introspect", s.serveIntrospect)
	s.hs = httptest.NewServer(mux)
	tb.Cleanup(s.hs.Close)
	return s
}

// TokenURL is the token endpoint, http://127.0.0.1:port/<tenant>/oauth2/v2.0/token.
func (s *Server) TokenURL() string { return s.hs.URL + "/" + s.opts.Tenant + "/oauth2/v2.0/token" }

// TokenURLTemplate is TokenURL with "{tenant}" in place of the tenant, as
// o365.Options.TokenURL takes it.
func (s *Server) TokenURLTemplate() string { return s.hs.URL + "/{tenant}/oauth2/v2.0/token" }

// IntrospectionURL is the RFC 7662 introspection endpoint (POST token=…).
func (s *Server) IntrospectionURL() string { return s.hs.URL + "/introspect" }

// Tenant returns the tenant id.
func (s *Server) Tenant() string { return s.opts.Tenant }

// Domain returns the tenant's mail domain.
func (s *Server) Domain() string { return s.opts.Domain }

// AddSecretClient registers an app that authenticates with a client secret.
func (s *Server) AddSecretClient(id, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[id] = &client{secret: secret}
}

// AddCertClient registers an app that authenticates with client assertions
// signed by cert's key.
func (s *Server) AddCertClient(id string, cert *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[id] = &client{cert: cert}
}

// SetDisabled disables or enables an app. A disabled app gets no tokens and
// its tokens introspect as inactive.
func (s *Server) SetDisabled(id string, disabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[id]; c != nil {
		c.disabled = disabled
	}
}

// SetTokenLifetime sets the lifetime of tokens issued from now on.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// Revoke revokes every token issued to the app so far and returns how many
// were still valid.
func (s *Server) Revoke(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	now := time.Now()
	for _, t := range s.tokens {
		if t.client == clientID && !t.revoked {
			if now.Before(t.expiry) {
				n++
			}
			t.revoked = true
		}
	}
	return n
}

// RevokeToken revokes one token.
func (s *Server) RevokeToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tokens[tok]; t != nil {
		t.revoked = true
	}
}

// Tokens returns every token issued so far, oldest first is not promised.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for tok := range s.tokens {
		out = append(out, tok)
	}
	return out
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// entraError is an error answer in Entra's shape.
type entraError struct {
	status      int
	code        string // OAuth2 error
	aadsts      int
	description string
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	tok, lifetime, e := s.issue(r)
	s.mu.Lock()
	if e != nil {
		s.stats.TokenRefusals++
	} else {
		s.stats.TokensIssued++
	}
	s.mu.Unlock()
	if e != nil {
		writeJSON(w, e.status, map[string]any{
			"error":             e.code,
			"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: 00000000-0000-0000-0000-000000000000 Timestamp: %s", e.aadsts, e.description, time.Now().UTC().Format(time.DateTime)),
			"error_codes":       []int{e.aadsts},
			"timestamp":         time.Now().UTC().Format(time.DateTime) + "Z",
		})
		return
	}
	secs := int(lifetime / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   tok,
	})
}

// issue checks a token request and issues a token.
func (s *Server) issue(r *http.Request) (string, time.Duration, *entraError) {
	if tenant := r.PathValue("tenant"); tenant != s.opts.Tenant {
		return "", 0, &entraError{http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found.", tenant)}
	}
	if err := r.ParseForm(); err != nil {
		return "", 0, &entraError{http.StatusBadRequest, "invalid_request", 900144, "The request body is malformed."}
	}
	f := r.PostForm
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		return "", 0, &entraError{http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt)}
	}
	id, secret := f.Get("client_id"), f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, secret = u, p
	}
	if sc := f.Get("scope"); sc != s.opts.Scope {
		return "", 0, &entraError{http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", sc)}
	}
	s.mu.Lock()
	c := s.clients[id]
	var cp client
	if c != nil {
		cp = *c
	}
	s.mu.Unlock()
	switch {
	case c == nil:
		return "", 0, &entraError{http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", id, s.opts.Tenant)}
	case cp.disabled:
		return "", 0, &entraError{http.StatusBadRequest, "unauthorized_client", 7000112, fmt.Sprintf("Application '%s' is disabled.", id)}
	}
	switch {
	case f.Get("client_assertion") != "" || f.Get("client_assertion_type") != "":
		if f.Get("client_assertion_type") != assertionType {
			return "", 0, &entraError{http.StatusBadRequest, "invalid_request", 700026, "Client assertion type is invalid."}
		}
		if cp.cert == nil {
			return "", 0, &entraError{http.StatusUnauthorized, "invalid_client", 700027, "The application has no certificate credential."}
		}
		if e := s.checkAssertion(f.Get("client_assertion"), id, cp.cert); e != nil {
			return "", 0, e
		}
	case secret != "":
		if cp.secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(cp.secret)) != 1 {
			return "", 0, &entraError{http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", id)}
		}
	default:
		return "", 0, &entraError{http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."}
	}

	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	tok := "mftest." + base64.RawURLEncoding.EncodeToString(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	lifetime := s.lifetime
	s.tokens[tok] = &token{client: id, expiry: time.Now().Add(lifetime)}
	return tok, lifetime, nil
}

// checkAssertion verifies a client assertion as Entra does: a JWS signed
// (PS256 or RS256) by the registered certificate's key, named by its
// thumbprint (x5t, SHA-1, or x5t#S256, SHA-256; each one given must match),
// with aud = the token endpoint, iss = sub = the client id, a time window
// around now and a jti not seen before.
func (s *Server) checkAssertion(jwt, clientID string, cert *x509.Certificate) *entraError {
	bad := func(aadsts int, msg string) *entraError {
		return &entraError{http.StatusUnauthorized, "invalid_client", aadsts, msg}
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return bad(50027, "JWT token is invalid or malformed.")
	}
	var header struct {
		Alg     string `json:"alg"`
		Typ     string `json:"typ"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
	}
	var claims struct {
		Aud string `json:"aud"`
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Jti string `json:"jti"`
		Nbf int64  `json:"nbf"`
		Exp int64  `json:"exp"`
	}
	if decodePart(parts[0], &header) != nil || decodePart(parts[1], &claims) != nil {
		return bad(50027, "JWT token is invalid or malformed.")
	}
	sha1Sum, sha256Sum := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
	if header.X5t == "" && header.X5tS256 == "" ||
		header.X5t != "" && header.X5t != base64.RawURLEncoding.EncodeToString(sha1Sum[:]) ||
		header.X5tS256 != "" && header.X5tS256 != base64.RawURLEncoding.EncodeToString(sha256Sum[:]) {
		return bad(700027, "Client assertion failed signature validation: the key was not found (thumbprint mismatch).")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return bad(50027, "JWT token is invalid or malformed.")
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return bad(700027, "The certificate has no RSA key.")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch header.Alg {
	case "PS256":
		err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "RS256":
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
	default:
		return bad(5002738, fmt.Sprintf("Unsupported signing algorithm '%s'.", header.Alg))
	}
	if err != nil {
		return bad(700027, "Client assertion failed signature validation.")
	}
	now := time.Now()
	switch {
	case header.Typ != "" && header.Typ != "JWT":
		return bad(50027, "JWT token has an unexpected typ.")
	case claims.Aud != s.TokenURL():
		return bad(700023, fmt.Sprintf("Invalid audience '%s' in the client assertion.", claims.Aud))
	case claims.Iss != clientID || claims.Sub != clientID:
		return bad(700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
	case claims.Exp == 0 || !now.Before(time.Unix(claims.Exp, 0)) || time.Unix(claims.Nbf, 0).After(now.Add(clockSkew)):
		return bad(700024, "Client assertion is not within its valid time range.")
	case claims.Jti == "":
		return bad(50027, "JWT token has no jti.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jtis[claims.Jti] {
		return bad(700025, "Client assertion has been used before (jti replay).")
	}
	s.jtis[claims.Jti] = true
	return nil
}

func decodePart(part string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// serveIntrospect answers RFC 7662 introspection: {"active": false} for a
// token that is unknown, expired or revoked, or whose app is disabled; else
// "active", "username" ("app@Domain", which Dovecot's oauth2 passdb compares
// with the login's domain), "scope" and the rest.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Introspections++
	resp := map[string]any{"active": false}
	t := s.tokens[r.PostForm.Get("token")]
	if t != nil && !t.revoked && time.Now().Before(t.expiry) && !s.clients[t.client].disabled {
		resp["active"] = true
		resp["username"] = "app@" + s.opts.Domain
		resp["client_id"] = t.client
		resp["scope"] = s.opts.Scope
		resp["token_type"] = "Bearer"
		resp["exp"] = t.expiry.Unix()
	} else {
		s.stats.Inactive++
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
