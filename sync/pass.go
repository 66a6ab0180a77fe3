package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/store"
)

// pass is one sync pass over one mailbox.
type pass struct {
	e   *Engine
	mb  config.Mailbox
	log *zap.Logger
	res *MailboxResult
	ctx context.Context

	mu      gosync.Mutex // guards conns, closing, sparesLeft and res counters touched by copy workers
	conns   []*conn
	closing bool // closeConns has begun: no new connection joins the pass

	// STATUS commands sent before the plan was known, by folder name
	// (speculateStatus); scanFolders takes those it needs.
	specSrc, specTgt map[string]*imapclient.StatusCommand

	// Copy pairs logging in ahead of the copy phase (connectSpares).
	spares     chan copyPair
	sparesLeft int
	spareWG    gosync.WaitGroup
	stopSpares context.CancelFunc

	src, tgt  *conn
	condStore bool // the source offers CONDSTORE
	// throttled is set at the first APPEND the target refused for
	// throttling: the pass stops sending and ends with that error.
	throttled atomic.Bool
	// singleAppends is set once the target refused a MULTIAPPEND: from
	// then on the pass sends one APPEND per message, and retrySingly holds
	// the refused command's messages, to send again that way (guarded by mu).
	singleAppends atomic.Bool
	retrySingly   []*srcMsg
	// prefetched is how much of the engine's prefetch budget the pass
	// holds: message bodies kept from the delta scans for the copy phase.
	prefetched atomic.Int64
	// copied is set once every APPEND of the pass got its reply: nothing
	// of ours can still be in flight.
	copied   bool
	tgtDelim rune

	folders []*folderWork
	byName  map[string]*folderWork // by source name
	// permFlags caches each target folder's PERMANENTFLAGS.
	permFlags map[string]flagFilter
}

func (p *pass) run() error {
	if err := p.connectBoth(); err != nil {
		return err
	}
	p.condStore = p.src.Caps().Has(imap.CapCondStore)
	p.permFlags = map[string]flagFilter{}

	// What the plan needs from both servers, then the status of the
	// folders as the last pass left them, go out at once: on a pass over
	// the same folders as the last (nearly every pass) the STATUS round
	// costs no round trip of its own.
	q := p.askPlan()
	tgtFolders := p.tgt.List("", "*", nil)
	p.speculateStatus()
	plans, err := p.planFolders(q)
	if err != nil {
		tgtFolders.Close()
		return err
	}
	if err := p.prepareTargets(plans, tgtFolders); err != nil {
		return err
	}
	if err := p.scanFolders(plans); err != nil {
		return err
	}
	if err := p.loadVanishedFolders(plans); err != nil {
		return err
	}
	for _, w := range p.folders {
		if err := p.recoverPending(w); err != nil {
			return fmt.Errorf("folder %q: %w", w.plan.Source, err)
		}
	}
	if err := p.applyMoves(p.matchMoves()); err != nil {
		return err
	}
	if err := p.applyChanges(); err != nil {
		return err
	}
	if err := p.copyNew(); err != nil {
		return err
	}
	p.copied = true
	// Targets without UIDPLUS (or MOVE without COPYUID) leave pending
	// records: find those messages now rather than next pass.
	for _, w := range p.folders {
		if w.hasPending() {
			w.requeued = 0
			if err := p.recoverPending(w); err != nil {
				return fmt.Errorf("folder %q: %w", w.plan.Source, err)
			}
		} else {
			w.requeued = 0
		}
	}
	return p.finish()
}

// connectBoth opens the pass's main pair of connections.
func (p *pass) connectBoth() error {
	var err error
	p.src, p.tgt, err = p.connectPair(p.ctx, true)
	return err
}

// connectPair logs in to source and target at the same time. With wait
// false it gives up at once where a server's connection cap is reached,
// and returns no pair; a half pair is given back.
func (p *pass) connectPair(ctx context.Context, wait bool) (src, tgt *conn, err error) {
	var tgtErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		tgt, tgtErr = p.connectTarget(ctx, wait)
	}()
	src, err = p.connectSource(ctx, wait)
	<-done
	if err == nil {
		err = tgtErr
	}
	if src == nil || tgt == nil {
		for _, c := range []*conn{src, tgt} {
			if c != nil {
				p.drop(c)
			}
		}
		return nil, nil, err
	}
	return src, tgt, nil
}

// planQuery is what planFolders asks the servers, sent and not waited for.
type planQuery struct {
	ns         *imapclient.NamespaceCommand // nil without NAMESPACE
	list, lsub *imapclient.ListCommand      // lsub: nil with LIST-EXTENDED
	tgtDelim   *imapclient.ListCommand      // LIST "" "": the target's separator
}

// askPlan sends what planFolders needs: the source's NAMESPACE, LIST and
// LSUB, and the target's separator, in one round trip to each.
func (p *pass) askPlan() planQuery {
	var q planQuery
	if p.src.Caps().Has(imap.CapNamespace) {
		q.ns = p.src.Namespace()
	}
	opts := &imap.ListOptions{}
	listExt := p.src.Caps().Has(imap.CapListExtended)
	if listExt {
		opts.ReturnSubscribed = true
	}
	if p.src.Caps().Has(imap.CapSpecialUse) {
		opts.ReturnSpecialUse = true
	}
	q.list = p.src.List("", "*", opts)
	if !listExt {
		q.lsub = p.src.List("", "*", &imap.ListOptions{SelectSubscribed: true})
	}
	q.tgtDelim = p.tgt.List("", "", nil)
	return q
}

// close drops the replies not read yet.
func (q planQuery) close() {
	for _, c := range []*imapclient.ListCommand{q.list, q.lsub, q.tgtDelim} {
		if c != nil {
			c.Close()
		}
	}
}

// planFolders reads what askPlan asked and maps the source's personal
// namespace to the target.
func (p *pass) planFolders(q planQuery) ([]FolderPlan, error) {
	prefix, delim := "", rune(0)
	if q.ns != nil {
		ns, err := q.ns.Wait()
		if err != nil {
			q.close()
			return nil, fmt.Errorf("source NAMESPACE: %w", err)
		}
		if len(ns.Personal) > 0 {
			prefix, delim = ns.Personal[0].Prefix, ns.Personal[0].Delim
		}
	}
	list, err := q.list.Collect()
	if err != nil {
		q.close()
		return nil, fmt.Errorf("source LIST: %w", err)
	}
	subscribed := map[string]bool{}
	if q.lsub != nil {
		if lsub, err := q.lsub.Collect(); err == nil {
			for _, l := range lsub {
				subscribed[l.Mailbox] = true
			}
		}
	}
	var folders []SourceFolder
	for _, l := range list {
		if delim == 0 {
			delim = l.Delim
		}
		if prefix != "" && !strings.EqualFold(l.Mailbox, "INBOX") && !strings.HasPrefix(strings.ToUpper(l.Mailbox), strings.ToUpper(prefix)) {
			continue // another namespace (shared, public)
		}
		sub := subscribed[l.Mailbox] || hasAttr(l.Attrs, imap.MailboxAttrSubscribed)
		folders = append(folders, SourceFolder{Name: l.Mailbox, Delim: l.Delim, Attrs: l.Attrs, Subscribed: sub})
	}

	tl, err := q.tgtDelim.Collect()
	if err != nil {
		return nil, fmt.Errorf("target LIST: %w", err)
	}
	p.tgtDelim = '/'
	if len(tl) > 0 && tl[0].Delim != 0 {
		p.tgtDelim = tl[0].Delim
	}
	plans := PlanFolders(folders, prefix, delim, p.tgtDelim, p.e.opts.Folders)
	for _, pl := range plans {
		switch {
		case pl.Skip != "":
			p.log.Info("folder not copied", zap.String("folder", pl.Source), zap.String("reason", pl.Skip))
			p.res.folder(pl.Source, "").SkipReason = pl.Skip
		case pl.Renamed != "":
			p.log.Warn("folder renamed on the target", zap.String("folder", pl.Source), zap.String("target", pl.Target), zap.String("reason", pl.Renamed))
		}
	}
	return plans, nil
}

// prepareTargets creates missing target folders and subscribes them. A name
// the target already has in another letter case is used as the target
// spells it (Exchange compares names case-insensitively).
func (p *pass) prepareTargets(plans []FolderPlan, tgtFolders *imapclient.ListCommand) error {
	existing, err := tgtFolders.Collect()
	if err != nil {
		return fmt.Errorf("target LIST: %w", err)
	}
	have := map[string]string{}
	for _, l := range existing {
		have[strings.ToLower(l.Mailbox)] = l.Mailbox
	}
	for i := range plans {
		pl := &plans[i]
		if pl.Skip != "" {
			continue
		}
		if prev, err := p.e.store.Folder(p.mb.Email, pl.Source); err == nil && prev.Target != "" {
			pl.Target = prev.Target // a mapping, once used, stays
		}
		if name, ok := have[strings.ToLower(pl.Target)]; ok {
			pl.Target = name
			continue
		}
		err := p.tgt.Create(pl.Target, nil).Wait()
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Code == imap.ResponseCodeAlreadyExists {
			continue
		}
		if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
			// A name the target refuses: try the predictable safe form.
			safe := safeFolderName(pl.Target, p.tgtDelim)
			if _, taken := have[strings.ToLower(safe)]; !taken {
				if err2 := p.tgt.Create(safe, nil).Wait(); err2 == nil {
					p.log.Warn("target refused a folder name; renamed", zap.String("folder", pl.Source),
						zap.String("refused", pl.Target), zap.String("target", safe), zap.NamedError("err", err))
					pl.Target, err = safe, nil
				}
			}
		}
		if err != nil {
			p.log.Error("creating target folder", zap.String("folder", pl.Source), zap.String("target", pl.Target), zap.NamedError("err", err))
			pl.Skip = "target refused to create " + quote(pl.Target) + ": " + err.Error()
			p.res.folder(pl.Source, pl.Target).SkipReason = pl.Skip
			p.res.FolderErrors++
			continue
		}
		have[strings.ToLower(pl.Target)] = pl.Target
		if pl.Subscribed {
			if err := p.tgt.Subscribe(pl.Target).Wait(); err != nil {
				p.log.Warn("subscribing target folder", zap.String("target", pl.Target), zap.NamedError("err", err))
			}
		}
	}
	return nil
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// flagFilter says which flags a target folder keeps.
type flagFilter struct {
	keywords bool // \* in PERMANENTFLAGS
	allowed  map[string]bool
}

func newFlagFilter(perm []imap.Flag) flagFilter {
	f := flagFilter{allowed: map[string]bool{}}
	if perm == nil {
		// No PERMANENTFLAGS: RFC 3501 says all FLAGS are permanent; be
		// conservative and keep system flags only.
		perm = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDraft}
	}
	for _, fl := range perm {
		if fl == imap.FlagWildcard {
			f.keywords = true
		}
		f.allowed[strings.ToLower(string(fl))] = true
	}
	return f
}

// apply returns the flags the target keeps and how many keywords it drops.
func (f flagFilter) apply(flags []string) ([]imap.Flag, int) {
	out := make([]imap.Flag, 0, len(flags))
	dropped := 0
	for _, fl := range flags {
		if f.allowed[strings.ToLower(fl)] || (f.keywords && !strings.HasPrefix(fl, `\`)) {
			out = append(out, imap.Flag(fl))
		} else {
			dropped++
		}
	}
	return out, dropped
}

// targetFlags returns the flag filter of a target folder, selecting it once.
// The copy phase asks for one folder's and uses it for all: servers keep
// the same PERMANENTFLAGS everywhere, and a SELECT per folder costs a round
// trip each over a WAN link.
func (p *pass) targetFlags(target string) (flagFilter, error) {
	if f, ok := p.permFlags[target]; ok {
		return f, nil
	}
	sel, err := p.tgt.selectFolder(target, false, false)
	if err != nil {
		return flagFilter{}, fmt.Errorf("target SELECT %q: %w", target, err)
	}
	f := newFlagFilter(sel.PermanentFlags)
	p.permFlags[target] = f
	return f, nil
}

// normFlags keeps the flags worth mirroring, sorted: \Recent is per
// session and \Deleted marks mail on its way out.
func normFlags(flags []imap.Flag) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		switch strings.ToLower(string(f)) {
		case `\recent`, `\deleted`:
			continue
		}
		out = append(out, string(f))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// finish records each fully processed folder's watermarks so the next pass
// can skip it when nothing changed, and forgets folders that vanished.
func (p *pass) finish() error {
	var states []store.Folder
	for _, w := range p.folders {
		if w.vanished {
			if w.failed == 0 && !w.hasPending() {
				if err := p.e.store.DeleteFolder(p.mb.Email, w.plan.Source); err != nil {
					return err
				}
			}
			continue
		}
		st := store.Folder{
			Mailbox:           p.mb.Email,
			Name:              w.plan.Source,
			Target:            w.plan.Target,
			UIDValidity:       w.status.UIDValidity,
			TargetUIDValidity: w.tgtUIDValidity,
			TargetUIDNext:     w.watermark,
		}
		if w.failed == 0 && w.requeued == 0 {
			st.UIDNext = uint32(w.status.UIDNext)
			st.HighestModSeq = w.status.HighestModSeq
			st.NumMessages = w.status.NumMessages
			st.Complete = !w.hasPending()
			if st.Complete {
				st.TargetUIDNext = 0
			}
		}
		if w.scanned {
			states = append(states, st)
		}
		if w.failed > 0 && p.res.Err == nil {
			p.res.FolderErrors++
		}
	}
	// One commit for all folders: each is a synced write.
	return p.e.store.Update(func(tx store.Tx) error {
		for _, st := range states {
			if err := tx.PutFolder(st); err != nil {
				return err
			}
		}
		return nil
	})
}
