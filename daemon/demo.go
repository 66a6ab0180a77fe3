package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/demo"
	"github.com/mailferry/mailferry/proxy"
	"github.com/mailferry/mailferry/store"
	mfsync "github.com/mailferry/mailferry/sync"
)

// Demo is `mailferry demo`: an in-memory source and target on loopback,
// a first pass with progress bars, a second pass that copies nothing, then
// the IMAP proxy with one user's cutover, and the first pass's summary on
// stdout. With keep, the servers and the proxy stay up until ctx is done,
// for a look with a mail client.
func Demo(ctx context.Context, out Streams, keep bool) error {
	log, err := NewLogger(out.Stderr, "warn", out.interactive())
	if err != nil {
		return Fatal(err)
	}
	st := store.NewMemory()
	opts := demo.Options{Log: log, Keep: keep, Store: st}
	opts.AfterSync = func(ctx context.Context, s *demo.Servers, w io.Writer) error {
		return demoProxy(ctx, s, st, log, w, keep)
	}
	var bars *barProgress
	if out.interactive() {
		bars = newBarProgress(out.Stderr, 3)
		opts.Progress = bars
	}
	res, err := demo.Run(ctx, out.Stderr, opts)
	if bars != nil {
		bars.finish()
	}
	if err != nil && ctx.Err() == nil {
		return Fatal(err)
	}
	if res != nil && res.First != nil {
		return WriteSummaryTable(out.Stdout, res.First)
	}
	return nil
}

// demoProxy starts the proxy in front of the demo servers and shows a user
// before and after a cutover. With keep it stays up until ctx is done.
func demoProxy(ctx context.Context, s *demo.Servers, st store.Store, log *zap.Logger, w io.Writer, keep bool) error {
	engOpts := mfsync.Options{Source: s.SourceEndpoint(), Target: s.TargetEndpoint(), Log: log}
	d := &Daemon{log: log, store: st, engine: mfsync.New(st, engOpts), engOpts: engOpts, metrics: newMetrics(),
		mailboxes: map[string]*tracked{}, wake: make(chan struct{}, 1)}
	for _, mb := range s.Mailboxes {
		d.mailboxes[mb.Email] = &tracked{mb: mb, state: StateSynced}
	}
	srv, err := proxy.New(proxy.Options{Source: engOpts.Source, Target: engOpts.Target, Mailboxes: d.lookupLogin,
		Store: st, Verifiers: st, AllowPlaintextAuth: true, Log: log.Named("proxy"), FailureDelay: -1})
	if err != nil {
		return err
	}
	defer srv.Close()
	d.proxy = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go srv.Serve(ln)
	addr := ln.Addr().String()
	alice := s.Mailboxes[0]
	fmt.Fprintf(w, "Proxy: mail clients connect to %s (plain IMAP, loopback only) with their old login.\n", addr)

	look := func(when string) (uint32, error) {
		c, err := imapclient.DialInsecure(addr, nil)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		defer func() { c.Logout().Wait() }()
		if err := c.Login(alice.UserName, alice.Password.Reveal()).Wait(); err != nil {
			return 0, err
		}
		sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return 0, err
		}
		fmt.Fprintf(w, "  %s: %s logs in through the proxy and sees %d messages in INBOX (UIDVALIDITY %d).\n",
			when, alice.Email, sel.NumMessages, sel.UIDValidity)
		return sel.UIDValidity, nil
	}
	if _, err := look("before the cutover, on the old server"); err != nil {
		return fmt.Errorf("demo proxy: %w", err)
	}
	rep, err := d.Cutover(ctx, CutoverRequest{Mailboxes: []string{alice.Email}})
	if err != nil {
		return err
	}
	r := rep.Results[0]
	if r.Error != "" {
		return fmt.Errorf("demo cutover: %s", r.Error)
	}
	fmt.Fprintf(w, "  Cutover of %s: logins held, open sessions ended, final sync copied %d, route now %s (took %s).\n",
		alice.Email, r.Copied, r.Route, r.Duration.Round(time.Millisecond))
	if _, err := look("after the cutover, on the target"); err != nil {
		return fmt.Errorf("demo proxy: %w", err)
	}
	if keep {
		fmt.Fprintf(w, "Proxy: %s is cut over; the others still see the old server. Connect a client to %s:\n", alice.Email, addr)
		for _, mb := range s.Mailboxes {
			fmt.Fprintf(w, "  user %s password %s\n", mb.UserName, mb.Password.Reveal())
		}
		<-ctx.Done()
	}
	return nil
}
