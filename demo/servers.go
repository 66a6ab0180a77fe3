package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	gosync "sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/store"
	mfsync "github.com/mailferry/mailferry/sync"
)

// Defaults for Options fields left zero.
const (
	DefaultUsers           = 3
	DefaultMessagesPerUser = 150
	DefaultSeed            = 1
	// DefaultAddr is where both servers listen: loopback, a free port.
	DefaultAddr = "127.0.0.1:0"
)

// TargetFolders are the folders an Exchange Online mailbox starts with
// (Outbox and the non-mail folders left out), as the demo target has them.
var TargetFolders = []string{"INBOX", "Drafts", "Sent Items", "Deleted Items", "Junk Email", "Archive"}

// Options configure the demo. Start reads the server fields, Run all of
// them.
type Options struct {
	// Users is the number of mailboxes (default 3: alice, bob and carol
	// @example.com).
	Users int
	// MessagesPerUser is the number of source messages per mailbox
	// (default 150).
	MessagesPerUser int
	// Seed makes the messages; the same seed gives the same messages
	// (default 1).
	Seed uint64
	// Now is the date of the newest messages; they are spread over the two
	// years before it (default: the current time).
	Now time.Time
	// SourceAddr and TargetAddr are where the servers listen (default
	// 127.0.0.1 on a free port). Plaintext IMAP: keep them on loopback.
	SourceAddr, TargetAddr string

	// Progress, if set, hears about the first pass (Run only).
	Progress mfsync.Progress
	// Log receives the engine's and the servers' logs (default: none).
	Log *zap.Logger
	// Store keeps the passes' state (default: a fresh in-memory store), so
	// that AfterSync can go on from it (the proxy, a cutover).
	Store store.Store
	// AfterSync, if set, is called by Run after both passes while the
	// servers still run, with Run's writer: the place to start the IMAP
	// proxy in front of them and print how to connect a mail client. An
	// error ends Run with it.
	AfterSync func(ctx context.Context, s *Servers, w io.Writer) error
	// Keep makes Run leave the servers running until ctx is done, so that
	// a mail client can look at them; Run then returns its results with a
	// nil error.
	Keep bool
}

func (o *Options) setDefaults() {
	if o.Users <= 0 {
		o.Users = DefaultUsers
	}
	if o.MessagesPerUser <= 0 {
		o.MessagesPerUser = DefaultMessagesPerUser
	}
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.SourceAddr == "" {
		o.SourceAddr = DefaultAddr
	}
	if o.TargetAddr == "" {
		o.TargetAddr = DefaultAddr
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
}

// Servers are an in-memory source and target IMAP server on loopback, both
// plaintext (imap+plain).
type Servers struct {
	// Source and Target are the servers' host:port.
	Source, Target string
	// Mailboxes is the mailbox list that migrates every source user: source
	// login in UserName/Password, target login in
	// TargetUserName/TargetPassword.
	Mailboxes []config.Mailbox
	// Messages, Bytes and Folders count what the source holds in all.
	Messages int
	Bytes    int64
	Folders  int

	accounts         []*account
	srcMem, tgtMem   *imapmemserver.Server
	srcIMAP, tgtIMAP *imapserver.Server
	serving          gosync.WaitGroup
	closeOnce        gosync.Once
	closeErr         error
}

// Start fills an in-memory source server with generated mail for
// opts.Users users, creates the same users with Exchange's default folders
// on an in-memory target server, and serves both until Close.
func Start(ctx context.Context, opts Options) (*Servers, error) {
	opts.setDefaults()
	s := &Servers{
		accounts: newCorpus(opts.Seed, opts.Users, opts.MessagesPerUser, opts.Now),
		srcMem:   imapmemserver.New(),
		tgtMem:   imapmemserver.New(),
	}
	for i, a := range s.accounts {
		if err := s.addSource(a); err != nil {
			return nil, fmt.Errorf("demo source %s: %w", a.Email, err)
		}
		if err := s.addTarget(a); err != nil {
			return nil, fmt.Errorf("demo target %s: %w", a.Email, err)
		}
		s.Mailboxes = append(s.Mailboxes, config.Mailbox{
			Email:          a.Email,
			UserName:       a.Email,
			Password:       config.Secret(a.SourcePassword),
			TargetUserName: a.Email,
			TargetPassword: config.Secret(a.TargetPassword),
			Line:           i + 2,
		})
	}

	logger := zap.NewStdLog(opts.Log.Named("demo-imap"))
	s.srcIMAP = newServer(s.srcMem, sourceCaps, dovecotFlags, logger)
	s.tgtIMAP = newServer(s.tgtMem, targetCaps, exchangeFlags, logger)
	var lc net.ListenConfig
	srcLn, err := lc.Listen(ctx, "tcp", opts.SourceAddr)
	if err != nil {
		return nil, fmt.Errorf("demo source server: %w", err)
	}
	tgtLn, err := lc.Listen(ctx, "tcp", opts.TargetAddr)
	if err != nil {
		srcLn.Close()
		return nil, fmt.Errorf("demo target server: %w", err)
	}
	s.Source, s.Target = srcLn.Addr().String(), tgtLn.Addr().String()
	s.serve(s.srcIMAP, srcLn, opts.Log)
	s.serve(s.tgtIMAP, tgtLn, opts.Log)
	return s, nil
}

func newServer(mem *imapmemserver.Server, caps imap.CapSet, flags flagPolicy, logger imapserver.Logger) *imapserver.Server {
	return imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return newSession(mem, flags), nil, nil
		},
		Caps:         caps,
		Logger:       logger,
		InsecureAuth: true, // plaintext LOGIN, on loopback
	})
}

func (s *Servers) serve(srv *imapserver.Server, ln net.Listener, log *zap.Logger) {
	s.serving.Go(func() {
		if err := srv.Serve(ln); err != nil {
			log.Warn("demo IMAP server stopped", zap.Error(err))
		}
	})
}

func (s *Servers) addSource(a *account) error {
	u := imapmemserver.NewUser(a.Email, a.SourcePassword)
	s.srcMem.AddUser(u)
	for _, f := range a.Folders {
		if err := u.Create(f.Name, nil); err != nil {
			return err
		}
		if f.Subscribed {
			if err := u.Subscribe(f.Name); err != nil {
				return err
			}
		}
		s.Folders++
		for _, m := range f.Messages {
			_, err := u.Append(f.Name, bytes.NewReader(m.Raw), &imap.AppendOptions{Flags: m.Flags, Time: m.Date})
			if err != nil {
				return err
			}
			s.Messages++
			s.Bytes += int64(len(m.Raw))
		}
	}
	return nil
}

func (s *Servers) addTarget(a *account) error {
	u := imapmemserver.NewUser(a.Email, a.TargetPassword)
	s.tgtMem.AddUser(u)
	for _, name := range TargetFolders {
		if err := u.Create(name, nil); err != nil {
			return err
		}
		if err := u.Subscribe(name); err != nil {
			return err
		}
	}
	return nil
}

// SourceEndpoint is the source server for the sync engine.
func (s *Servers) SourceEndpoint() imapconn.Endpoint { return endpoint(s.Source) }

// TargetEndpoint is the target server for the sync engine.
func (s *Servers) TargetEndpoint() imapconn.Endpoint { return endpoint(s.Target) }

func endpoint(addr string) imapconn.Endpoint {
	host, port, _ := net.SplitHostPort(addr)
	return imapconn.Endpoint{Host: host, Port: port, Security: imapconn.Plaintext}
}

// SourceURL and TargetURL are the servers as mailferry's --source and
// --target take them.
func (s *Servers) SourceURL() string { return s.SourceEndpoint().String() }

// TargetURL: see SourceURL.
func (s *Servers) TargetURL() string { return s.TargetEndpoint().String() }

// Close stops both servers and drops their connections. It may be called
// more than once.
func (s *Servers) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = errors.Join(s.srcIMAP.Close(), s.tgtIMAP.Close())
		s.serving.Wait()
	})
	return s.closeErr
}
