package o365

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
)

// Defaults for Options fields left zero.
const (
	// DefaultTokenURL is Microsoft Entra's v2.0 token endpoint (global
	// cloud); {tenant} is replaced by the tenant id.
	DefaultTokenURL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
	// DefaultScope asks for Exchange Online's application permissions
	// (IMAP.AccessAsApp among them).
	DefaultScope = "https://outlook.office365.com/.default"
	// DefaultEarlyRefresh is how long before its expiry a token is replaced.
	DefaultEarlyRefresh = 5 * time.Minute
	// DefaultHTTPTimeout bounds one request to the token endpoint.
	DefaultHTTPTimeout = 30 * time.Second
)

// failureHold is how long a failed token request is remembered: the logins
// of many mailboxes that start at once share one request, and a wrong secret
// doesn't turn into one request per mailbox.
const failureHold = 10 * time.Second

// Options configure app-only access to Exchange Online for one Entra app
// registration. Set ClientSecret or CertificateFile, not both.
type Options struct {
	// TenantID is the directory (tenant) id, a GUID, or a verified domain
	// such as contoso.onmicrosoft.com.
	TenantID string
	// ClientID is the application (client) id of the app registration.
	ClientID string
	// ClientSecret is a client secret's value (not its id).
	ClientSecret config.Secret
	// CertificateFile is a PEM file with the app's certificate (the one
	// uploaded to the app registration) and, unless KeyFile is set, its
	// unencrypted RSA private key (PKCS#8 or PKCS#1).
	CertificateFile string
	KeyFile         string
	// Algorithm signs the client assertion: "PS256" (default, what Microsoft
	// recommends now) or "RS256".
	Algorithm string
	// TokenURL overrides DefaultTokenURL, for sovereign clouds
	// (login.microsoftonline.us, login.partner.microsoftonline.cn) and tests.
	// "{tenant}" in it is replaced by TenantID. https only, except on loopback.
	TokenURL string
	// Scope overrides DefaultScope (sovereign clouds: their Exchange host
	// followed by /.default).
	Scope string
	// EarlyRefresh is how long before expiry a cached token is replaced
	// (default 5 minutes; at most half the token's lifetime is used).
	EarlyRefresh time.Duration
	// HTTPClient makes the token requests (default: 30 s timeout).
	HTTPClient *http.Client
}

// tenantRE is what a tenant id may look like: a GUID or a domain name, or
// one of the endpoint's aliases (organizations, common) that app-only tokens
// don't accept but that we leave to Entra to refuse. It has no length bound
// ({0,251} would cost every mailferry command 1.7 ms to compile): Validate
// checks the length.
var tenantRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

const maxTenantLen = 253

// Validate checks the options without reading files or the network.
func (o *Options) Validate() error {
	var errs []error
	if o.TenantID == "" {
		errs = append(errs, errors.New("tenant id is empty"))
	} else if len(o.TenantID) > maxTenantLen || !tenantRE.MatchString(o.TenantID) {
		errs = append(errs, fmt.Errorf("tenant id %q: want a GUID or a domain name", o.TenantID))
	}
	if o.ClientID == "" {
		errs = append(errs, errors.New("client id is empty"))
	} else if strings.ContainsFunc(o.ClientID, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		errs = append(errs, fmt.Errorf("client id %q has spaces or control characters", o.ClientID))
	}
	switch {
	case o.ClientSecret != "" && o.CertificateFile != "":
		errs = append(errs, errors.New("set a client secret or a certificate file, not both"))
	case o.ClientSecret == "" && o.CertificateFile == "":
		errs = append(errs, errors.New("set a client secret or a certificate file"))
	case o.KeyFile != "" && o.CertificateFile == "":
		errs = append(errs, errors.New("key file without certificate file"))
	}
	switch o.Algorithm {
	case "", "PS256", "RS256":
	default:
		errs = append(errs, fmt.Errorf("algorithm %q: want PS256 or RS256", o.Algorithm))
	}
	if _, err := o.tokenURL(); err != nil {
		errs = append(errs, err)
	}
	if o.EarlyRefresh < 0 {
		errs = append(errs, errors.New("early refresh is negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("office 365 app: %w", err)
	}
	return nil
}

// tokenURL returns the token endpoint with the tenant filled in.
func (o *Options) tokenURL() (string, error) {
	raw := o.TokenURL
	if raw == "" {
		raw = DefaultTokenURL
	}
	raw = strings.ReplaceAll(raw, "{tenant}", url.PathEscape(o.TenantID))
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("token URL: %w", err)
	}
	switch {
	case u.Host == "":
		return "", fmt.Errorf("token URL %q: no host", raw)
	case u.User != nil:
		return "", fmt.Errorf("token URL %q: no credentials in the URL, please", u.Redacted())
	case u.Scheme == "https":
	case u.Scheme == "http" && imapconn.IsLoopback(u.Hostname()):
	default:
		return "", fmt.Errorf("token URL %q: must be https (http only on loopback)", raw)
	}
	return u.String(), nil
}

func (o *Options) scope() string {
	if o.Scope == "" {
		return DefaultScope
	}
	return o.Scope
}

// TokenSource issues app-only access tokens for Exchange Online with the
// client-credentials flow. It caches the token for all its users (one source
// serves every mailbox and connection), replaces it ahead of expiry, and
// forgets one on Invalidate. A failed request is remembered for a few seconds
// so that concurrent logins don't each ask again. Safe for concurrent use.
type TokenSource struct {
	cc       clientcredentials.Config // for a client secret; its fields are copied per request
	signer   *assertionSigner         // for a certificate, else nil
	tokenURL string
	clientID string
	early    time.Duration
	ctx      context.Context // carries the HTTP client
	now      func() time.Time

	mu        sync.Mutex
	tok       *oauth2.Token
	refreshAt time.Time // when tok is to be replaced (zero: never)
	err       error     // last failure, returned until errUntil
	errUntil  time.Time
}

var _ oauth2.TokenSource = (*TokenSource)(nil)

// NewTokenSource validates opts, loads the certificate if there is one, and
// returns a source. It requests nothing until the first Token call.
func NewTokenSource(opts Options) (*TokenSource, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	tokenURL, _ := opts.tokenURL()
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	early := opts.EarlyRefresh
	if early == 0 {
		early = DefaultEarlyRefresh
	}
	s := &TokenSource{
		cc: clientcredentials.Config{
			ClientID:     opts.ClientID,
			ClientSecret: opts.ClientSecret.Reveal(),
			TokenURL:     tokenURL,
			Scopes:       []string{opts.scope()},
			// Entra takes the secret in the form body, as its docs show; no
			// guessing (a wrong secret would be sent twice).
			AuthStyle: oauth2.AuthStyleInParams,
		},
		tokenURL: tokenURL,
		clientID: opts.ClientID,
		early:    early,
		ctx:      context.WithValue(context.Background(), oauth2.HTTPClient, hc),
		now:      time.Now,
	}
	if opts.CertificateFile != "" {
		cert, key, err := loadCertificate(opts.CertificateFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("office 365 app: %w", err)
		}
		s.signer = newAssertionSigner(cert, key, opts.Algorithm, opts.ClientID, tokenURL)
		s.cc.ClientSecret = ""
	}
	return s, nil
}

// Token returns the cached token while it is fresh, else requests a new one.
// Errors are *TokenError (the endpoint refused) or transport errors, marked
// permanent (imapconn.MakePermanent) when asking again can't help.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.tok != nil && (s.refreshAt.IsZero() || now.Before(s.refreshAt)) {
		return s.tok, nil
	}
	if s.err != nil && now.Before(s.errUntil) {
		return nil, s.err
	}
	tok, err := s.fetch()
	if err != nil {
		s.err, s.errUntil = err, s.now().Add(failureHold)
		return nil, err
	}
	s.err = nil
	s.tok, s.refreshAt = tok, time.Time{}
	if !tok.Expiry.IsZero() {
		margin := min(s.early, tok.Expiry.Sub(now)/2)
		s.refreshAt = tok.Expiry.Add(-margin)
	}
	return tok, nil
}

// Invalidate forgets tok if it is still the cached token, so that the next
// Token call requests a new one. Logins call it when the server refused tok;
// comparing first means that many connections refused at once cause one
// request, not one each.
func (s *TokenSource) Invalidate(tok *oauth2.Token) {
	if tok == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.AccessToken == tok.AccessToken {
		s.tok = nil
		s.err = nil // a fresh attempt, whatever happened before
	}
}

// fetch requests a token.
func (s *TokenSource) fetch() (*oauth2.Token, error) {
	cc := clientcredentials.Config{
		ClientID:     s.cc.ClientID,
		ClientSecret: s.cc.ClientSecret,
		TokenURL:     s.cc.TokenURL,
		Scopes:       s.cc.Scopes,
		AuthStyle:    s.cc.AuthStyle,
	}
	if s.signer != nil {
		assertion, err := s.signer.sign(s.now())
		if err != nil {
			return nil, imapconn.MakePermanent(fmt.Errorf("office 365 app %s: signing the client assertion: %w", s.clientID, err))
		}
		cc.EndpointParams = url.Values{
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {assertion},
		}
	}
	tok, err := cc.Token(s.ctx)
	if err != nil {
		return nil, s.tokenError(err)
	}
	if tok.AccessToken == "" {
		return nil, imapconn.MakeTemporary(fmt.Errorf("token endpoint %s: answer without access_token", s.tokenURL))
	}
	return tok, nil
}

// tokenError turns an error of x/oauth2 into a TokenError, or a transport
// error, marked temporary or permanent.
func (s *TokenSource) tokenError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		// Transport: x/oauth2 wraps *url.Error, whose text names the URL
		// (never the secret, which is in the body).
		return imapconn.MakeTemporary(fmt.Errorf("token endpoint %s: %w", s.tokenURL, err))
	}
	te := &TokenError{
		Endpoint:    s.tokenURL,
		ClientID:    s.clientID,
		Code:        printable(re.ErrorCode, 100),
		Description: printable(re.ErrorDescription, 400),
	}
	if re.Response != nil {
		te.StatusCode = re.Response.StatusCode
	}
	if te.Temporary() {
		return imapconn.MakeTemporary(te)
	}
	return imapconn.MakePermanent(te)
}

// TokenError is the token endpoint refusing to issue a token.
type TokenError struct {
	Endpoint   string // token URL
	ClientID   string
	StatusCode int    // HTTP status
	Code       string // OAuth2 "error": invalid_client, unauthorized_client, invalid_scope, …
	// Description is the "error_description", for Entra "AADSTSnnnnnnn: …"
	// with trace and correlation ids.
	Description string
}

// aadstsRE finds Entra's error number in a description.
var aadstsRE = regexp.MustCompile(`AADSTS(\d+)`)

// aadstsHints explain Entra's most common refusals of the client-credentials flow.
var aadstsHints = map[string]string{
	"7000215": "wrong client secret: use the secret's value, not its id",
	"7000222": "the client secret has expired: create a new one in the app registration",
	"700016":  "no such application in this tenant: check the client id and the tenant id",
	"90002":   "no such tenant: check the tenant id",
	"900023":  "malformed tenant id",
	"7000112": "the application is disabled in Entra",
	"700027":  "the client assertion's signature doesn't verify: is this certificate uploaded to the app registration?",
	"700024":  "the client assertion is outside its validity: check this machine's clock",
	"700023":  "the client assertion's audience is not this token endpoint",
	"50027":   "malformed client assertion",
	"70011":   "invalid scope: app-only IMAP needs https://outlook.office365.com/.default",
	"1002012": "invalid scope: app-only IMAP needs https://outlook.office365.com/.default",
	"500011":  "Exchange Online is not a resource of this tenant (no Exchange licence?) or the scope is wrong",
	"7000218": "the request has neither a client secret nor a client assertion",
}

// Hint explains the refusal in a few words, or returns "".
func (e *TokenError) Hint() string {
	if m := aadstsRE.FindStringSubmatch(e.Description); m != nil {
		if h, ok := aadstsHints[m[1]]; ok {
			return h
		}
	}
	switch e.Code {
	case "invalid_client":
		return "the app's credentials were refused: check the client id, the secret or the certificate"
	case "unauthorized_client":
		return "the app may not use the client-credentials flow here (missing, disabled, or in another tenant)"
	case "invalid_scope":
		return "invalid scope"
	}
	return ""
}

// Temporary reports whether asking again later may work: throttling (429),
// timeouts (408) and server errors (5xx), or answers without an OAuth2 error
// code. Refusals of the app's credentials or request are not.
func (e *TokenError) Temporary() bool {
	switch {
	case e.StatusCode == http.StatusTooManyRequests, e.StatusCode == http.StatusRequestTimeout, e.StatusCode >= 500:
		return true
	case e.Code == "temporarily_unavailable", e.Code == "server_error":
		return true
	}
	return e.Code == ""
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token endpoint %s refused app %s", e.Endpoint, e.ClientID)
	switch {
	case e.StatusCode != 0 && e.Code != "":
		fmt.Fprintf(&b, " (HTTP %d, %s)", e.StatusCode, e.Code)
	case e.StatusCode != 0:
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	case e.Code != "":
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if h := e.Hint(); h != "" {
		b.WriteString(": " + h)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, "; it said: %s", e.Description)
	}
	return b.String()
}
