package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	gosync "sync"
	"time"

	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/proxy"
	"github.com/mailferry/mailferry/store"
	mfsync "github.com/mailferry/mailferry/sync"
)

// State is where a mailbox stands in the daemon.
type State string

// Mailbox states, as status shows them.
const (
	StateQueued      State = "queued"
	StateSyncing     State = "syncing"
	StateSynced      State = "synced"
	StateFailed      State = "failed"
	StateCuttingOver State = "cutting over"
	StateCutOver     State = "cut over"
)

// Scheduling: how long a failed mailbox waits (doubling up to the
// interval, or an hour for permanent errors) and how often the mailbox
// list is checked for changes.
const (
	firstBackoff      = 30 * time.Second
	permanentBackoff  = time.Hour
	listCheckInterval = 10 * time.Second
	stopGrace         = 10 * time.Second
)

// Daemon keeps every mailbox of the list in sync and answers status
// questions; the proxy and the status endpoints hang off it.
type Daemon struct {
	opts    config.Options
	log     *zap.Logger
	store   store.Store
	engine  *mfsync.Engine
	engOpts mfsync.Options
	metrics *Metrics
	proxy   *proxy.Server // nil without listeners
	// proxyOnly: `mailferry proxy` serves clients and cutovers, no syncing.
	proxyOnly bool

	mu        gosync.Mutex
	mailboxes map[string]*tracked
	// parallel is how many passes may run now: halved when the target
	// throttles, raised back a little after each good pass (AIMD).
	parallel float64
	listMod  time.Time
	wake     chan struct{}
	started  time.Time
}

// tracked is the daemon's view of one mailbox.
type tracked struct {
	mb       config.Mailbox
	state    State
	next     time.Time
	failures int
	running  bool
	removed  bool
	cancel   context.CancelFunc
	last     *mfsync.MailboxResult
	// active is when mail last moved (copied, or seen arriving): the IDLE
	// watchers go to the most active mailboxes.
	active time.Time
	// again: new mail arrived during the running pass; run another at once.
	again bool
	// watched: an IDLE watcher waits for new mail in its INBOX.
	watched bool
}

// New opens the store and prepares the engine; Run starts the work.
func New(o *config.Options, log *zap.Logger) (*Daemon, error) {
	if err := o.Validate(); err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: err}
	}
	d := &Daemon{opts: *o, log: log, mailboxes: map[string]*tracked{}, wake: make(chan struct{}, 1), metrics: newMetrics(),
		parallel: float64(o.Parallel), started: time.Now()}
	opts, err := engineOptions(o, log)
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: err}
	}
	opts.Progress = d.metrics
	opts.Retries = -1 // the scheduler retries, with its own backoff
	if d.store, err = OpenStore(o.Data, log); err != nil {
		return nil, Fatal(err)
	}
	d.engine, d.engOpts = mfsync.New(d.store, opts), opts
	if err := d.reloadList(); err != nil {
		d.store.Close()
		return nil, Fatal(err)
	}
	return d, nil
}

// Run syncs until ctx is done, then stops gracefully: no new passes,
// in-flight ones are cancelled (what they sent is resolved by the next
// pass's recovery), and the store is closed.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.store.Close()
	ctl, err := d.serveControl(ctx)
	if err != nil {
		return Fatal(err)
	}
	defer ctl.Close()
	if d.opts.Listen != "" || d.opts.ListenStartTLS != "" {
		if err := d.startProxy(ctx); err != nil {
			return Fatal(err)
		}
	}
	if d.opts.HTTP != "" {
		hs, err := d.serveHTTP(ctx)
		if err != nil {
			return Fatal(err)
		}
		defer hs.Close()
	}
	if !d.proxyOnly {
		go d.runWatchers(ctx)
	}
	d.log.Info("mailferry running", zap.Int("mailboxes", len(d.mailboxes)), zap.Duration("sync_interval", d.opts.SyncInterval))

	var passes gosync.WaitGroup
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	listCheck := time.NewTicker(listCheckInterval)
	defer listCheck.Stop()
	for ctx.Err() == nil {
		if !d.proxyOnly {
			d.startDue(ctx, &passes)
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		case <-d.wake:
		case <-listCheck.C:
			if err := d.reloadListIfChanged(); err != nil {
				d.log.Error("reloading the mailbox list", zap.NamedError("err", err))
			}
		}
	}
	d.log.Info("stopping: waiting for passes in flight")
	done := make(chan struct{})
	go func() { passes.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopGrace):
		d.log.Warn("passes did not stop in time; their pending copies are resolved at the next start")
	}
	return nil
}

// Reload re-reads the mailbox list now (SIGHUP).
func (d *Daemon) Reload() error { return d.reloadList() }

func (d *Daemon) reloadListIfChanged() error {
	fi, err := os.Stat(d.opts.Mailboxes)
	if err != nil {
		return err
	}
	d.mu.Lock()
	changed := !fi.ModTime().Equal(d.listMod)
	d.mu.Unlock()
	if !changed {
		return nil
	}
	return d.reloadList()
}

// reloadList applies the mailbox list: new mailboxes are queued, removed
// ones stop syncing (their map is kept), changed credentials apply from
// the next pass. A list with bad rows still applies its good rows.
func (d *Daemon) reloadList() error {
	fi, err := os.Stat(d.opts.Mailboxes)
	if err != nil {
		return fmt.Errorf("mailbox list: %w", err)
	}
	list, err := config.LoadMailboxes(d.opts.Mailboxes)
	var le *config.ListError
	if err != nil && !errors.As(err, &le) {
		return err
	}
	if err != nil {
		d.log.Error("mailbox list has errors; those rows are skipped", zap.NamedError("err", err))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.listMod = fi.ModTime()
	seen := map[string]bool{}
	added, removed := 0, 0
	for _, mb := range list {
		seen[mb.Email] = true
		t := d.mailboxes[mb.Email]
		if t == nil || t.removed {
			if t == nil {
				t = &tracked{}
				d.mailboxes[mb.Email] = t
			}
			t.state, t.next, t.removed = StateQueued, time.Now(), false
			if m, err := d.store.Mailbox(mb.Email); err == nil && m.Route == store.RouteTarget {
				t.state = StateCutOver // its users work on the target: no more syncing
			}
			added++
		}
		t.mb = mb
	}
	for email, t := range d.mailboxes {
		if !seen[email] && !t.removed {
			t.removed = true
			if t.cancel != nil {
				t.cancel()
			}
			removed++
		}
	}
	if added+removed > 0 {
		d.log.Info("mailbox list loaded", zap.Int("added", added), zap.Int("removed", removed), zap.Int("mailboxes", len(seen)))
		d.poke()
	}
	return nil
}

func (d *Daemon) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// startDue starts passes for due mailboxes, oldest due first, up to
// Parallel at once.
func (d *Daemon) startDue(ctx context.Context, passes *gosync.WaitGroup) {
	d.mu.Lock()
	defer d.mu.Unlock()
	running := 0
	var due []*tracked
	now := time.Now()
	for _, t := range d.mailboxes {
		switch {
		case t.running:
			running++
		case !t.removed && !t.next.After(now) && t.state != StateCutOver:
			due = append(due, t)
		}
	}
	slices.SortFunc(due, func(a, b *tracked) int { return a.next.Compare(b.next) })
	for _, t := range due[:min(len(due), max(int(d.parallel)-running, 0))] {
		pctx, cancel := context.WithCancel(ctx)
		t.running, t.cancel, t.state = true, cancel, StateSyncing
		mb := t.mb
		passes.Add(1)
		go func() {
			defer passes.Done()
			defer cancel()
			res := d.syncOne(pctx, mb)
			d.finished(t, res)
		}()
	}
}

func (d *Daemon) syncOne(ctx context.Context, mb config.Mailbox) (res *mfsync.MailboxResult) {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("panic in a sync pass", zap.String("mailbox", mb.Email), zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			res = &mfsync.MailboxResult{Mailbox: mb.Email, Err: fmt.Errorf("internal error: %v", p), Error: fmt.Sprint(p)}
		}
	}()
	return d.engine.SyncMailbox(ctx, mb)
}

// finished schedules a mailbox's next pass: after the interval (±20 %)
// when it went well, after a doubling backoff when it failed, after the
// server's suggestion when throttled.
func (d *Daemon) finished(t *tracked, res *mfsync.MailboxResult) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t.running, t.cancel, t.last = false, nil, res
	interval := d.opts.SyncInterval
	jitter := time.Duration(rand.Int64N(int64(interval/5)*2+1)) - interval/5
	switch {
	case res.Err == nil:
		t.failures, t.state = 0, StateSynced
		t.next = time.Now().Add(interval + jitter)
		if res.Copied > 0 {
			t.active = time.Now()
		}
		d.parallel = min(d.parallel+0.1, float64(d.opts.Parallel))
		if t.again {
			t.next, t.again = time.Now(), false
		}
	default:
		t.failures++
		t.state = StateFailed
		delay := min(firstBackoff<<min(t.failures-1, 10), max(interval, firstBackoff))
		if throttle, ok := imapconn.ThrottleDelay(res.Err); ok {
			delay = throttle + jitter/10
			d.metrics.throttled()
			d.parallel = max(d.parallel/2, 1)
			d.log.Warn("target throttles: fewer mailboxes at once", zap.Int("parallel", int(d.parallel)))
		} else if !imapconn.IsTemporary(res.Err) {
			delay = permanentBackoff
		}
		t.next = time.Now().Add(delay)
		d.log.Warn("mailbox pass failed", zap.String("mailbox", t.mb.Email), zap.NamedError("err", res.Err),
			zap.Duration("retry_in", delay.Round(time.Second)))
	}
	d.poke()
}
