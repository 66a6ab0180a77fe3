package daemon

import (
	"context"
	"fmt"
	"net"
	"strings"

	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/proxy"
)

// startProxy serves IMAP clients on the configured listeners, routing each
// login by the store.
func (d *Daemon) startProxy(ctx context.Context) error {
	tlsCfg, err := proxyTLS(d.opts.Cert, d.opts.Key, d.opts.Data, d.log)
	if err != nil {
		return err
	}
	plainOK := d.opts.AllowPlaintext
	if d.opts.ListenStartTLS != "" {
		host, _, _ := net.SplitHostPort(d.opts.ListenStartTLS)
		plainOK = plainOK || (host != "" && imapconn.IsLoopback(host))
	}
	srv, err := proxy.New(proxy.Options{
		Source:             d.engOpts.Source,
		Target:             d.engOpts.Target,
		TargetLogin:        d.engOpts.TargetLogin,
		Mailboxes:          d.lookupLogin,
		Store:              d.store,
		Verifiers:          d.store,
		TLSConfig:          tlsCfg,
		AllowPlaintextAuth: plainOK,
		Log:                d.log.Named("proxy"),
	})
	if err != nil {
		return err
	}
	d.proxy = srv
	serve := func(addr string, tlsListener bool) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("proxy listener %s: %w", addr, err)
		}
		d.log.Info("proxy listening", zap.String("addr", ln.Addr().String()), zap.Bool("implicit_tls", tlsListener))
		go func() {
			var err error
			if tlsListener {
				err = srv.ServeTLS(ln)
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && ctx.Err() == nil {
				d.log.Error("proxy listener stopped", zap.String("addr", addr), zap.NamedError("err", err))
			}
		}()
		return nil
	}
	if d.opts.Listen != "" {
		if err := serve(d.opts.Listen, true); err != nil {
			return err
		}
	}
	if d.opts.ListenStartTLS != "" {
		if err := serve(d.opts.ListenStartTLS, false); err != nil {
			return err
		}
	}
	context.AfterFunc(ctx, func() { srv.Close() })
	return nil
}

// lookupLogin finds the mailbox a client's login name belongs to: by
// UserName or EmailAddress, in any letter case. Only mailboxes of the list
// may log in.
func (d *Daemon) lookupLogin(login string) (config.Mailbox, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range d.mailboxes {
		if !t.removed && (strings.EqualFold(t.mb.UserName, login) || strings.EqualFold(t.mb.Email, login)) {
			return t.mb, true
		}
	}
	return config.Mailbox{}, false
}
