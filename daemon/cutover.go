package daemon

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/proxy"
	"github.com/mailferry/mailferry/store"
)

// CutoverRequest asks the daemon to send mailboxes to the target (or back).
type CutoverRequest struct {
	Mailboxes []string `json:"mailboxes"`
	All       bool     `json:"all"`
	Rollback  bool     `json:"rollback"`
}

// CutoverResult is one mailbox's cutover.
type CutoverResult struct {
	Mailbox string `json:"mailbox"`
	Route   string `json:"route"`
	// Kicked is how many open client sessions got BYE.
	Kicked   int           `json:"kicked"`
	Copied   int           `json:"copied"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
}

// CutoverReply is the answer to a CutoverRequest.
type CutoverReply struct {
	Version int             `json:"version"`
	Results []CutoverResult `json:"results"`
}

// cutoverText is what a client's open session hears at its user's cutover.
const cutoverText = "Your mailbox is moving to its new server; reconnect in a minute"

// Cutover moves each mailbox's users to the target, in the order an admin
// expects: new logins wait (NO [UNAVAILABLE]), open sessions get BYE, a
// final delta sync runs, the route flips in the store (atomic, kept across
// restarts), logins are let through again, now to the target. A failed
// final sync leaves the mailbox on the source. Rollback flips it back.
func (d *Daemon) Cutover(ctx context.Context, req CutoverRequest) (*CutoverReply, error) {
	var mbs []config.Mailbox
	d.mu.Lock()
	for email, t := range d.mailboxes {
		if !t.removed && (req.All || contains(req.Mailboxes, email)) {
			mbs = append(mbs, t.mb)
		}
	}
	d.mu.Unlock()
	if len(mbs) != len(req.Mailboxes) && !req.All {
		return nil, &usageError{fmt.Sprintf("%d of the %d mailboxes named are not in the mailbox list", len(req.Mailboxes)-len(mbs), len(req.Mailboxes))}
	}
	reply := &CutoverReply{Version: StatusVersion}
	for _, mb := range mbs {
		reply.Results = append(reply.Results, d.cutoverOne(ctx, mb, req.Rollback))
	}
	return reply, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (d *Daemon) cutoverOne(ctx context.Context, mb config.Mailbox, rollback bool) CutoverResult {
	start := time.Now()
	res := CutoverResult{Mailbox: mb.Email}
	log := d.log.With(zap.String("mailbox", mb.Email), zap.Bool("rollback", rollback))
	t := d.claim(ctx, mb.Email)
	if t == nil {
		res.Error = "the daemon is stopping"
		return res
	}
	if d.proxy != nil {
		d.proxy.Hold(mb.Email)
		defer d.proxy.Release(mb.Email)
		log.Info("cutover: new logins wait")
		res.Kicked = d.proxy.Kick(mb.Email, cutoverText)
		log.Info("cutover: open sessions ended", zap.Int("sessions", res.Kicked))
	}
	route, err := d.flip(ctx, mb, rollback, &res, log)
	d.mu.Lock()
	t.running = false
	switch {
	case err != nil:
		res.Error = err.Error()
		t.state, t.next = StateFailed, time.Now().Add(firstBackoff)
		log.Error("cutover failed; the mailbox stays where it was", zap.NamedError("err", err))
	case route == store.RouteTarget:
		t.state = StateCutOver
	default:
		t.state, t.next = StateQueued, time.Now()
	}
	d.mu.Unlock()
	d.poke()
	res.Route = route.String()
	res.Duration = time.Since(start)
	log.Info("cutover: logins go to the "+route.String(), zap.Duration("took", res.Duration))
	return res
}

// claim waits until no pass runs for the mailbox and marks it cutting over,
// so the scheduler leaves it alone.
func (d *Daemon) claim(ctx context.Context, email string) *tracked {
	for {
		d.mu.Lock()
		t := d.mailboxes[email]
		if !t.running {
			t.running, t.state = true, StateCuttingOver
			d.mu.Unlock()
			return t
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// flip runs the final sync (for a cutover) and writes the new route.
func (d *Daemon) flip(ctx context.Context, mb config.Mailbox, rollback bool, res *CutoverResult, log *zap.Logger) (store.Route, error) {
	m, err := d.store.Mailbox(mb.Email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.RouteSource, err
	}
	m.Email = mb.Email
	want := store.RouteTarget
	if rollback {
		want = store.RouteSource
	}
	if m.Route == want {
		return m.Route, nil
	}
	if !rollback {
		log.Info("cutover: final sync")
		sr := d.engine.SyncMailbox(ctx, mb)
		d.metrics.MailboxDone(sr)
		res.Copied = sr.Copied
		if sr.Err != nil {
			return m.Route, fmt.Errorf("final sync: %w", sr.Err)
		}
		if m, err = d.store.Mailbox(mb.Email); err != nil { // the pass updated its counters
			return store.RouteSource, err
		}
	}
	floor, err := uidValidityFloor(d.store, m)
	if err != nil {
		return m.Route, err
	}
	old := m.Route
	m.Route, m.UIDValidityFloor = want, floor
	if err := d.store.Update(func(tx store.Tx) error { return tx.PutMailbox(m) }); err != nil {
		return old, err
	}
	return want, nil
}

// uidValidityFloor is the floor for the route m is about to leave: the
// largest UIDVALIDITY the proxy may have shown on it, so that every value
// shown after the flip is higher.
func uidValidityFloor(st store.Store, m store.Mailbox) (uint32, error) {
	folders, err := st.Folders(m.Email)
	if err != nil {
		return 0, err
	}
	var seen uint64
	for _, f := range folders {
		v := f.UIDValidity
		if m.Route == store.RouteTarget {
			v = f.TargetUIDValidity
		}
		seen = max(seen, uint64(v)+uint64(m.UIDValidityFloor))
	}
	return proxy.UIDValidityFloor(uint32(min(seen, math.MaxUint32))), nil
}

func (d *Daemon) handleCutover(w http.ResponseWriter, r *http.Request) {
	var req CutoverRequest
	if err := decodeJSON(r, &req); err != nil {
		reply(w, nil, &usageError{err.Error()})
		return
	}
	rep, err := d.Cutover(r.Context(), req)
	reply(w, rep, err)
}

// offlineCutover flips routes when no daemon runs: no proxy sessions to
// end, but the same final sync.
func offlineCutover(ctx context.Context, o *config.Options, req CutoverRequest, log *zap.Logger) (*CutoverReply, error) {
	d, err := New(o, log)
	if err != nil {
		return nil, err
	}
	defer d.store.Close()
	return d.Cutover(ctx, req)
}
