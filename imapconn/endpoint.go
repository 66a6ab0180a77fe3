package imapconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// Security is how a connection is protected.
type Security int

const (
	// ImplicitTLS starts TLS before the IMAP greeting (imaps://, port 993).
	ImplicitTLS Security = iota
	// StartTLS upgrades with STARTTLS and refuses servers that don't offer it
	// (imap://, port 143).
	StartTLS
	// Plaintext uses no TLS at all (imap+plain://); only loopback hosts
	// unless AllowPlaintext.
	Plaintext
)

func (s Security) String() string {
	switch s {
	case ImplicitTLS:
		return "imaps"
	case StartTLS:
		return "imap"
	default:
		return "imap+plain"
	}
}

// Endpoint is one IMAP server mailferry connects to.
type Endpoint struct {
	Host     string
	Port     string
	Security Security
	// TLSConfig, when set, is used as is (tests, private CAs); otherwise the
	// system roots verify the server's name.
	TLSConfig *tls.Config
	// InsecureSkipVerify accepts any certificate; every connection logs a
	// warning about it.
	InsecureSkipVerify bool
}

// ParseURL parses imaps://host[:port], imap://host[:port] or
// imap+plain://host:port. Plaintext endpoints are refused unless the host is
// loopback or allowPlaintext is set.
func ParseURL(raw string, allowPlaintext bool) (Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("server URL %q: %w", raw, err)
	}
	if u.User != nil {
		return Endpoint{}, fmt.Errorf("server URL %q: credentials belong in the mailbox list, not in the URL", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return Endpoint{}, fmt.Errorf("server URL %q: unexpected path or query", raw)
	}
	ep := Endpoint{Host: u.Hostname(), Port: u.Port()}
	switch strings.ToLower(u.Scheme) {
	case "imaps":
		ep.Security, ep.Port = ImplicitTLS, orDefault(ep.Port, "993")
	case "imap":
		ep.Security, ep.Port = StartTLS, orDefault(ep.Port, "143")
	case "imap+plain":
		ep.Security, ep.Port = Plaintext, orDefault(ep.Port, "143")
	default:
		return Endpoint{}, fmt.Errorf("server URL %q: scheme must be imaps, imap or imap+plain", raw)
	}
	if ep.Host == "" {
		return Endpoint{}, fmt.Errorf("server URL %q: no host", raw)
	}
	if ep.Security == Plaintext && !allowPlaintext && !IsLoopback(ep.Host) {
		return Endpoint{}, fmt.Errorf("server URL %q: imap+plain sends passwords in clear; it is allowed only for loopback hosts unless --allow-plaintext is given", raw)
	}
	return ep, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// IsLoopback reports whether host names this machine only.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Address is host:port for dialing.
func (e Endpoint) Address() string { return net.JoinHostPort(e.Host, e.Port) }

// String is the endpoint as a URL, for logs and reports.
func (e Endpoint) String() string { return e.Security.String() + "://" + e.Address() }

// LoadCA makes a TLS config that trusts the PEM certificates in file in
// addition to nothing else: a private CA replaces the system roots.
func LoadCA(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("CA file " + file + ": no PEM certificate found")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
