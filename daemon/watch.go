package daemon

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
)

// IDLE watchers: the most recently active mailboxes keep an IDLE on their
// source INBOX, and new mail there makes the mailbox due at once instead of
// at its next interval. They use a quarter of the source's connection slots
// at most, taken from the engine's cap.
const (
	watchReview  = 5 * time.Second
	watchBackoff = time.Minute
)

func (d *Daemon) maxWatchers() int { return max(d.opts.SourceConnections/4, 1) }

// runWatchers keeps IDLE watchers on the mailboxes that deserve them.
func (d *Daemon) runWatchers(ctx context.Context) {
	watching := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range watching {
			cancel()
		}
	}()
	review := time.NewTicker(watchReview)
	defer review.Stop()
	for {
		want := d.watchCandidates()
		for email, cancel := range watching {
			if !slices.ContainsFunc(want, func(mb config.Mailbox) bool { return mb.Email == email }) {
				cancel()
				delete(watching, email)
				d.setWatched(email, false)
			}
		}
		for _, mb := range want {
			if watching[mb.Email] == nil {
				wctx, cancel := context.WithCancel(ctx)
				watching[mb.Email] = cancel
				d.setWatched(mb.Email, true)
				go d.watch(wctx, mb)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-review.C:
		}
	}
}

// watchCandidates are the synced mailboxes with the most recent activity
// (mail copied, or new mail seen), up to maxWatchers.
func (d *Daemon) watchCandidates() []config.Mailbox {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ts []*tracked
	for _, t := range d.mailboxes {
		if !t.removed && t.state != StateCutOver && t.state != StateQueued && t.last != nil && t.last.Err == nil {
			ts = append(ts, t)
		}
	}
	slices.SortFunc(ts, func(a, b *tracked) int {
		if c := b.active.Compare(a.active); c != 0 {
			return c
		}
		return compareStrings(a.mb.Email, b.mb.Email)
	})
	var out []config.Mailbox
	for _, t := range ts[:min(len(ts), d.maxWatchers())] {
		out = append(out, t.mb)
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// watch idles on mb's source INBOX until ctx is done, reconnecting after
// failures.
func (d *Daemon) watch(ctx context.Context, mb config.Mailbox) {
	log := d.log.With(zap.String("mailbox", mb.Email))
	for ctx.Err() == nil {
		err := d.idleOnce(ctx, mb)
		if ctx.Err() != nil {
			return
		}
		log.Debug("IDLE watcher stopped; retrying later", zap.NamedError("err", err))
		select {
		case <-ctx.Done():
		case <-time.After(watchBackoff):
		}
	}
}

func (d *Daemon) idleOnce(ctx context.Context, mb config.Mailbox) error {
	release, ok := d.engine.SourceSlot(ctx, false)
	if !ok {
		return fmt.Errorf("no free source connection")
	}
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	news := make(chan struct{}, 1)
	var known uint32
	handler := &imapclient.UnilateralDataHandler{
		Mailbox: func(data *imapclient.UnilateralDataMailbox) {
			// Runs on the client's reader: hand the news on, never block.
			if data.NumMessages != nil {
				select {
				case news <- struct{}{}:
				default:
				}
			}
		},
	}
	c, err := imapconn.Dial(ctx, d.engine.Source(), d.log, &imapclient.Options{UnilateralDataHandler: handler})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := imapconn.Login(c, mb.UserName, mb.Password.Reveal()); err != nil {
		return err
	}
	if !c.Caps().Has(imap.CapIdle) {
		<-ctx.Done()
		return nil
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return err
	}
	known = sel.NumMessages
	idle, err := c.Idle()
	if err != nil {
		return err
	}
	defer idle.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.Closed():
			return fmt.Errorf("source closed the IDLE connection")
		case <-news:
			if mbox := c.Mailbox(); mbox != nil && mbox.NumMessages > known {
				d.due(mb.Email)
			}
			if mbox := c.Mailbox(); mbox != nil {
				known = mbox.NumMessages
			}
		}
	}
}

func (d *Daemon) setWatched(email string, on bool) {
	d.mu.Lock()
	if t := d.mailboxes[email]; t != nil {
		t.watched = on
	}
	d.mu.Unlock()
}

// due makes a mailbox's next pass start now (or right after the running one).
func (d *Daemon) due(email string) {
	d.mu.Lock()
	if t := d.mailboxes[email]; t != nil && !t.removed {
		t.next = time.Now()
		t.active = time.Now()
		if t.running {
			t.again = true
		}
	}
	d.mu.Unlock()
	d.poke()
}
