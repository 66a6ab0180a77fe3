package sync

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/store"
)

// Defaults for Options fields left zero.
const (
	DefaultParallel              = 4
	DefaultConnectionsPerMailbox = 2
	DefaultServerConnections     = 16
	DefaultMaxItems              = 500_000
	DefaultMaxMessageSize        = 35 << 20
)

// TargetLogin authenticates a fresh target connection as mb. The default
// logs in with the mailbox list's TargetUserName and TargetPassword;
// Office 365 plugs in XOAUTH2 here.
type TargetLogin func(ctx context.Context, c *imapclient.Client, mb config.Mailbox) error

// Options configure an Engine.
type Options struct {
	Source, Target imapconn.Endpoint
	TargetLogin    TargetLogin
	// Parallel is how many mailboxes sync at once.
	Parallel int
	// ConnectionsPerMailbox is how many source/target connection pairs copy
	// one mailbox's messages at once.
	ConnectionsPerMailbox int
	// SourceConnections and TargetConnections cap connections per server.
	SourceConnections, TargetConnections int
	Folders                              FolderRules
	// MaxItems caps messages per mailbox; the oldest beyond it are skipped.
	MaxItems int
	// MaxMessageSize skips bigger messages without reading them.
	MaxMessageSize int64
	// Since and Before, when not zero, copy only messages whose INTERNALDATE
	// is in [Since, Before).
	Since, Before time.Time
	// RecoverySettle is how long a target folder's UIDNEXT must stand still
	// before recovery declares a pending message missing (default 5 s).
	RecoverySettle time.Duration
	// Exchange turns on Exchange Online's quirks: \Flagged is set again
	// with STORE after APPEND (Outlook may not show it otherwise).
	Exchange bool
	// DropMDNSent leaves $MDNSent off copied messages, so that clients may
	// ask again about read receipts of old mail. Off by default.
	DropMDNSent bool
	// DisarmReadReceipts renames Disposition-Notification-To headers of
	// copied messages (same length, so sizes stay), so that clients don't
	// prompt for receipts of old mail. Off by default.
	DisarmReadReceipts bool
	// NoMultiAppend sends every message in an APPEND of its own, even to a
	// target that offers MULTIAPPEND (which stores a folder's messages of
	// one chunk in one transaction: much faster on a target that syncs each
	// APPEND to disk).
	NoMultiAppend bool
	// Retries is how many times a mailbox whose pass failed with a temporary
	// error is tried again within one Run (default 3).
	Retries int
	Log     *zap.Logger
	// Progress, if set, hears about every mailbox's progress.
	Progress Progress
}

// Progress receives progress events; calls come from many goroutines.
type Progress interface {
	// MailboxPlanned is called once the messages to copy are known.
	MailboxPlanned(mailbox string, messages int, bytes int64)
	// MessageCopied is called after each message reaches the target.
	MessageCopied(mailbox string, bytes int64)
	// MailboxDone is called when a mailbox's pass ends, well or not.
	MailboxDone(r *MailboxResult)
}

// Engine syncs mailboxes. One Engine may serve many Runs at once (the
// daemon's scheduler); the connection caps hold across all of them.
type Engine struct {
	opts   Options
	store  store.Store
	log    *zap.Logger
	srcSem chan struct{}
	tgtSem chan struct{}
	// prefetch bounds the message bodies all passes hold at once.
	prefetch budget
}

// New returns an Engine that records its state in st.
func New(st store.Store, opts Options) *Engine {
	if opts.Parallel <= 0 {
		opts.Parallel = DefaultParallel
	}
	if opts.ConnectionsPerMailbox <= 0 {
		opts.ConnectionsPerMailbox = DefaultConnectionsPerMailbox
	}
	if opts.SourceConnections <= 0 {
		opts.SourceConnections = DefaultServerConnections
	}
	if opts.TargetConnections <= 0 {
		opts.TargetConnections = DefaultServerConnections
	}
	if opts.MaxItems <= 0 {
		opts.MaxItems = DefaultMaxItems
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	if opts.RecoverySettle <= 0 {
		opts.RecoverySettle = 5 * time.Second
	}
	if opts.Retries == 0 {
		opts.Retries = 3
	}
	if opts.TargetLogin == nil {
		opts.TargetLogin = PasswordLogin
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Progress == nil {
		opts.Progress = nopProgress{}
	}
	e := &Engine{
		opts:   opts,
		store:  st,
		log:    opts.Log,
		srcSem: make(chan struct{}, opts.SourceConnections),
		tgtSem: make(chan struct{}, opts.TargetConnections),
	}
	e.prefetch.left.Store(prefetchBudget)
	return e
}

// appendFlags are the source flags a copy carries, before the target's
// PERMANENTFLAGS have their say.
func (e *Engine) appendFlags(flags []string) []string {
	if !e.opts.DropMDNSent {
		return flags
	}
	return slices.DeleteFunc(slices.Clone(flags), func(f string) bool { return strings.EqualFold(f, "$MDNSent") })
}

// SourceSlot takes one of the source's connection slots for a connection
// opened outside a pass (the daemon's IDLE watchers), so that the cap
// holds for all connections. It fails when ctx is done, or at once when
// wait is false and no slot is free.
func (e *Engine) SourceSlot(ctx context.Context, wait bool) (release func(), ok bool) {
	if !acquire(ctx, e.srcSem, wait) {
		return nil, false
	}
	var once gosync.Once
	return func() { once.Do(func() { <-e.srcSem }) }, true
}

// Source is the source server the engine copies from.
func (e *Engine) Source() imapconn.Endpoint { return e.opts.Source }

// PasswordLogin logs in to the target with the mailbox list's target
// columns.
func PasswordLogin(_ context.Context, c *imapclient.Client, mb config.Mailbox) error {
	if mb.TargetUserName == "" {
		return imapconn.MakePermanent(fmt.Errorf("no target credentials: the mailbox list has no TargetUserName for %s", mb.Email))
	}
	return imapconn.Login(c, mb.TargetUserName, mb.TargetPassword.Reveal())
}

type nopProgress struct{}

func (nopProgress) MailboxPlanned(string, int, int64) {}
func (nopProgress) MessageCopied(string, int64)       {}
func (nopProgress) MailboxDone(*MailboxResult)        {}

// Run makes one pass over every mailbox, Parallel at a time, and returns
// what happened. A mailbox's failure is recorded in its result; the others
// go on. Run returns early only when ctx is done.
func (e *Engine) Run(ctx context.Context, mailboxes []config.Mailbox) *Summary {
	start := time.Now()
	results := make([]*MailboxResult, len(mailboxes))
	sem := make(chan struct{}, e.opts.Parallel)
	var wg gosync.WaitGroup
	for i, mb := range mailboxes {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i] = &MailboxResult{Mailbox: mb.Email, Err: ctx.Err(), Error: "not started: " + ctx.Err().Error()}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = e.SyncMailbox(ctx, mb)
		}()
	}
	wg.Wait()
	return newSummary(results, time.Since(start))
}

// SyncMailbox makes one pass over mb, retrying temporary failures with
// exponential backoff (or the server's suggested backoff when throttled).
func (e *Engine) SyncMailbox(ctx context.Context, mb config.Mailbox) *MailboxResult {
	log := e.log.With(zap.String("mailbox", mb.Email))
	var res *MailboxResult
	for attempt := 0; ; attempt++ {
		res = res.then(e.syncOnce(ctx, mb, log))
		if res.Err == nil || !imapconn.IsTemporary(res.Err) || attempt >= e.opts.Retries || ctx.Err() != nil {
			break
		}
		delay := backoff(attempt, res.Err)
		log.Warn("mailbox pass failed, retrying", zap.NamedError("err", res.Err), zap.Duration("in", delay), zap.Int("attempt", attempt+1))
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
	}
	res.Duration = time.Since(res.Started)
	e.recordResult(mb.Email, res, log)
	e.opts.Progress.MailboxDone(res)
	return res
}

// backoff is 1 s, 2 s, 4 s … with ±25 % jitter, or the server's suggestion
// plus up to 25 %: never earlier than it asked.
func backoff(attempt int, err error) time.Duration {
	if t, ok := imapconn.ThrottleDelay(err); ok {
		return t + time.Duration(rand.Int64N(int64(t/4)+1))
	}
	d := time.Second << min(attempt, 8)
	return d + time.Duration(rand.Int64N(int64(d/2))) - d/4
}

func (e *Engine) syncOnce(ctx context.Context, mb config.Mailbox, log *zap.Logger) (res *MailboxResult) {
	res = &MailboxResult{Mailbox: mb.Email, Started: time.Now()}
	defer func() {
		if p := recover(); p != nil {
			log.Error("panic during mailbox pass", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			res.Err = imapconn.MakePermanent(fmt.Errorf("internal error: %v", p))
		}
		res.Duration = time.Since(res.Started)
		if res.Err != nil {
			res.Error = res.Err.Error()
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &pass{e: e, mb: mb, log: log, res: res, ctx: ctx}
	defer func() { p.givePrefetch(p.prefetched.Load()) }()
	defer p.closeConns()
	if err := p.run(); err != nil {
		res.Err = fmt.Errorf("sync %s: %w", mb.Email, err)
	}
	return res
}

func (e *Engine) recordResult(email string, res *MailboxResult, log *zap.Logger) {
	err := e.store.Update(func(tx store.Tx) error {
		m, err := e.store.Mailbox(email)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		m.Email = email
		m.LastAttempt = res.Started
		m.LastError = res.Error
		if res.Err == nil {
			m.LastSync = res.Started
		}
		m.Copied += int64(res.Copied)
		m.Skipped += int64(res.Skipped())
		m.Bytes += res.Bytes
		return tx.PutMailbox(m)
	})
	if err != nil {
		log.Error("recording mailbox result", zap.NamedError("err", err))
	}
}
