package imapconn

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"
)

// Timeouts for connecting; replies are bounded by TCP keepalive (a peer that
// vanishes without FIN is noticed within about 45 s) and by the caller's
// context, which closes the connection when done.
const (
	dialTimeout      = 30 * time.Second
	greetingTimeout  = 30 * time.Second
	keepAliveIdle    = 15 * time.Second
	keepAliveProbe   = 10 * time.Second
	keepAliveRetries = 3
)

// Dial connects to ep and waits for the greeting (and STARTTLS when the
// endpoint asks for it). The connection is closed when ctx is done, which is
// how callers cancel blocking go-imap calls. opts may be nil.
func Dial(ctx context.Context, ep Endpoint, log *zap.Logger, opts *imapclient.Options) (*imapclient.Client, error) {
	if log == nil {
		log = zap.NewNop()
	}
	var o imapclient.Options
	if opts != nil {
		o = *opts
	}
	o.TLSConfig = ep.tlsConfig()
	if ep.InsecureSkipVerify {
		log.Warn("TLS certificate of the server is not verified", zap.String("server", ep.String()))
	}

	d := net.Dialer{
		Timeout:         dialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepAliveIdle, Interval: keepAliveProbe, Count: keepAliveRetries},
	}
	raw, err := d.DialContext(ctx, "tcp", ep.Address())
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", ep, err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	// Until the greeting is in, nothing in go-imap bounds the wait.
	raw.SetDeadline(time.Now().Add(greetingTimeout))

	var c *imapclient.Client
	var lp *literalPlusConn
	var tol *toleranceConn
	switch ep.Security {
	case ImplicitTLS:
		tc := tls.Client(raw, o.TLSConfig)
		if err = tc.HandshakeContext(ctx); err == nil {
			tol = tolerate(tc, log)
			lp = newLiteralPlusConn(tol)
			c = imapclient.New(lp, &o)
		}
	case StartTLS:
		// go-imap upgrades the socket itself, below where a wrapper
		// could see plain IMAP: no LITERAL+ pipelining and no tolerance
		// layer here.
		c, err = imapclient.NewStartTLS(raw, &o)
	default:
		tol = tolerate(raw, log)
		lp = newLiteralPlusConn(tol)
		c = imapclient.New(lp, &o)
	}
	if err == nil {
		err = c.WaitGreeting()
	}
	if err == nil && lp != nil && c.Caps().Has(imap.CapLiteralPlus) {
		lp.enabled.Store(true)
	}
	if err != nil {
		stop()
		raw.Close()
		return nil, fmt.Errorf("connect %s: %w", ep, err)
	}
	raw.SetDeadline(time.Time{})
	if ep.Security == StartTLS && c.State() != imap.ConnStateNotAuthenticated {
		c.Close()
		return nil, fmt.Errorf("connect %s: server skipped authentication before TLS", ep)
	}
	stop()
	if lp != nil {
		registerRaw(c, lp, tol)
	}
	context.AfterFunc(ctx, func() { c.Close() })
	return c, nil
}

func (e Endpoint) tlsConfig() *tls.Config {
	var cfg *tls.Config
	if e.TLSConfig != nil {
		cfg = e.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = e.Host
	}
	if e.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true
	}
	return cfg
}

// Login authenticates with LOGIN. Failures never mention the password.
func Login(c *imapclient.Client, user, password string) error {
	if err := c.Login(user, password).Wait(); err != nil {
		return fmt.Errorf("login as %q: %w", user, err)
	}
	return nil
}
