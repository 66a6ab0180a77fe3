package sync

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/store"
)

type pendingRef struct {
	m    *store.Message
	uidv uint32
	gone bool
}

func (r pendingRef) key() matchKey { return matchKey{r.m.Identity, 0, r.m.Date.Unix()} }

// recoverPending resolves the messages that an earlier pass (or this one,
// on a target without UIDPLUS) sent without recording the result: the ones
// found on the target above the watermark, by identity, become Copied; the
// others are copied again if their source is still there.
func (p *pass) recoverPending(w *folderWork) error {
	type ref = pendingRef
	var pend []ref
	mapped := map[uint32]bool{}
	for _, e := range w.entries {
		switch e.State {
		case store.Pending:
			pend = append(pend, ref{e, w.status.UIDValidity, false})
		case store.Copied:
			mapped[e.TgtUID] = true
		}
	}
	for _, g := range w.gone {
		switch g.m.State {
		case store.Pending:
			pend = append(pend, ref{&g.m, g.uidv, true})
		case store.Copied:
			mapped[g.m.TgtUID] = true
		}
	}
	w.pendings = 0
	if len(pend) == 0 {
		return nil
	}
	found, err := p.targetIdentities(w, max(w.watermark, 1), mapped)
	if err != nil {
		return err
	}
	if !p.copied {
		if found, err = p.settle(w, pend2keys(pend), found, mapped); err != nil {
			return err
		}
	}
	recovered := 0
	err = p.e.store.Update(func(tx store.Tx) error {
		for _, r := range pend {
			key := r.key()
			if uids := found[key]; len(uids) > 0 {
				r.m.TgtUID, r.m.State = uids[0], store.Copied
				found[key] = uids[1:]
				recovered++
				if err := tx.PutMessage(p.mb.Email, w.plan.Source, r.uidv, *r.m); err != nil {
					return err
				}
				continue
			}
			// Not on the target: forget it; a message still on the source
			// is new again.
			if err := tx.DeleteMessage(p.mb.Email, w.plan.Source, r.uidv, r.m.UID); err != nil {
				return err
			}
			if !r.gone {
				delete(w.entries, r.m.UID)
				if m := w.seen[r.m.UID]; m != nil {
					w.newMsgs = append(w.newMsgs, m)
					w.requeued++
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.gone = slices.DeleteFunc(w.gone, func(g *goneMsg) bool { return g.m.State == store.Pending })
	// Recovered messages still on the source need the usual flag check.
	for uid, m := range w.seen {
		if e := w.entries[uid]; e != nil && e.State == store.Copied && !equalFlags(e.Flags, m.flags) {
			w.changed = append(w.changed, &flagChange{m: e, flags: m.flags})
		}
	}
	w.seen = map[uint32]*srcMsg{}
	p.log.Info("recovered interrupted copies", zap.String("folder", w.plan.Source),
		zap.Int("pending", len(pend)), zap.Int("found_on_target", recovered))
	return nil
}

func pend2keys[T interface{ key() matchKey }](refs []T) []matchKey {
	keys := make([]matchKey, len(refs))
	for i, r := range refs {
		keys[i] = r.key()
	}
	return keys
}

// Settling: APPENDs that a killed process or a dropped connection left in
// the target's input may still be landing when recovery looks. Before a
// pending message is declared missing (and sent again), recovery waits
// until the folder's UIDNEXT has stood still for Options.RecoverySettle.
const (
	settlePoll = 250 * time.Millisecond
	settleMax  = 2 * time.Minute
)

func (p *pass) settle(w *folderWork, want []matchKey, found map[matchKey][]uint32, mapped map[uint32]bool) (map[matchKey][]uint32, error) {
	missing := func() bool {
		need := map[matchKey]int{}
		for _, k := range want {
			need[k]++
		}
		for k, n := range need {
			if len(found[k]) < n {
				return true
			}
		}
		return false
	}
	// STATUS of the selected folder may answer from the session's old
	// view (Dovecot does); NOOP makes the server report new messages.
	next := uint32(p.tgt.sel.UIDNext)
	known := p.tgt.sel.NumMessages
	quietSince := time.Now()
	deadline := time.Now().Add(settleMax)
	for missing() && time.Since(quietSince) < p.e.opts.RecoverySettle && time.Now().Before(deadline) {
		select {
		case <-time.After(settlePoll):
		case <-p.ctx.Done():
			return nil, p.ctx.Err()
		}
		if err := p.tgt.Noop().Wait(); err != nil {
			return nil, fmt.Errorf("target NOOP: %w", err)
		}
		if mbox := p.tgt.Mailbox(); mbox == nil || mbox.NumMessages == known {
			continue
		}
		more, err := p.targetIdentities(w, next, mapped)
		if err != nil {
			return nil, err
		}
		for k, uids := range more {
			found[k] = append(found[k], uids...)
		}
		next, known, quietSince = uint32(p.tgt.sel.UIDNext), p.tgt.sel.NumMessages, time.Now()
	}
	return found, nil
}

// targetIdentities lists the target folder's messages from UID start on that
// are not in mapped, by identity and INTERNALDATE. Size is left out of the
// key: Exchange rewrites messages, so their sizes differ from the source's.
func (p *pass) targetIdentities(w *folderWork, start uint32, mapped map[uint32]bool) (map[matchKey][]uint32, error) {
	p.tgt.selected = "" // a fresh SELECT: UIDNEXT must be current
	if _, err := p.tgt.selectFolder(w.plan.Target, false, false); err != nil {
		return nil, fmt.Errorf("target SELECT %q: %w", w.plan.Target, err)
	}
	found := map[matchKey][]uint32{}
	if p.tgt.sel.NumMessages == 0 || uint32(p.tgt.sel.UIDNext) <= start {
		return found, nil
	}
	var set imap.UIDSet
	set.AddRange(imap.UID(start), 0)
	err := fetchIdentityItems(p.tgt, set, func(it identityItem) {
		if it.uid < start || mapped[it.uid] {
			return
		}
		key := matchKey{it.identity, 0, it.date.Unix()}
		found[key] = append(found[key], it.uid)
	})
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", w.plan.Target, err)
	}
	for _, uids := range found {
		slices.Sort(uids)
	}
	return found, nil
}

// move is a recorded message found again as a new message elsewhere.
type move struct {
	from *goneMsg
	to   *srcMsg
}

// matchMoves pairs gone messages with new ones of the same identity, size
// and date anywhere in the mailbox, so that moved messages are moved on the
// target and re-numbered ones (UIDVALIDITY reset) are just re-keyed. Equal
// duplicates pair off one to one.
func (p *pass) matchMoves() []move {
	pool := map[matchKey][]*goneMsg{}
	for _, w := range p.folders {
		for _, g := range w.gone {
			if g.m.State == store.Copied {
				k := entryKey(&g.m)
				pool[k] = append(pool[k], g)
			}
		}
	}
	if len(pool) == 0 {
		return nil
	}
	var moves []move
	for _, w := range p.folders {
		kept := w.newMsgs[:0]
		for _, m := range w.newMsgs {
			k := m.key()
			if gs := pool[k]; len(gs) > 0 && m.identity != 0 {
				// Prefer a match in the same folder (a UIDVALIDITY reset).
				i := slices.IndexFunc(gs, func(g *goneMsg) bool { return g.w == w })
				if i < 0 {
					i = 0
				}
				moves = append(moves, move{from: gs[i], to: m})
				pool[k] = slices.Delete(gs, i, i+1)
				continue
			}
			kept = append(kept, m)
		}
		w.newMsgs = kept
	}
	matched := map[*goneMsg]bool{}
	for _, mv := range moves {
		matched[mv.from] = true
	}
	for _, w := range p.folders {
		w.gone = slices.DeleteFunc(w.gone, func(g *goneMsg) bool { return matched[g] })
	}
	return moves
}

// applyMoves re-keys messages that stay in their target folder and moves the
// others on the target. Each destination is first recorded as pending, so a
// crash between MOVE and the record is resolved by recovery, not by a
// second upload.
func (p *pass) applyMoves(moves []move) error {
	type route struct{ from, to string }
	groups := map[route][]move{}
	var order []route
	var rekeys []move
	for _, mv := range moves {
		if mv.from.w.plan.Target == mv.to.w.plan.Target && mv.from.w.tgtUIDValidity == mv.to.w.tgtUIDValidity {
			rekeys = append(rekeys, mv)
			continue
		}
		r := route{mv.from.w.plan.Target, mv.to.w.plan.Target}
		if groups[r] == nil {
			order = append(order, r)
		}
		groups[r] = append(groups[r], mv)
	}
	if len(rekeys) > 0 {
		err := p.e.store.Update(func(tx store.Tx) error {
			for _, mv := range rekeys {
				if err := p.recordArrival(tx, mv, mv.from.m.TgtUID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, r := range order {
		if err := p.moveGroup(r.from, r.to, groups[r]); err != nil {
			return err
		}
	}
	return nil
}

// recordArrival records mv's destination as Copied at tgtUID (0: still
// pending) and forgets its origin.
func (p *pass) recordArrival(tx store.Tx, mv move, tgtUID uint32) error {
	to, from := mv.to, mv.from
	e := store.Message{UID: to.uid, TgtUID: tgtUID, State: store.Copied, Flags: from.m.Flags,
		Identity: to.identity, Size: to.size, Date: to.date}
	if tgtUID == 0 {
		e.State = store.Pending
		to.w.pendings++
	}
	if err := tx.PutMessage(p.mb.Email, to.w.plan.Source, to.w.status.UIDValidity, e); err != nil {
		return err
	}
	if err := tx.DeleteMessage(p.mb.Email, from.w.plan.Source, from.uidv, from.m.UID); err != nil {
		return err
	}
	stored := e
	to.w.entries[to.uid] = &stored
	if e.State == store.Copied && !equalFlags(e.Flags, to.flags) {
		to.w.changed = append(to.w.changed, &flagChange{m: &stored, flags: to.flags})
	}
	return nil
}

func (p *pass) moveGroup(from, to string, moves []move) error {
	dst := moves[0].to.w
	if err := p.ensureWatermark(dst); err != nil {
		return err
	}
	// Intent first: the destinations are pending until MOVE's COPYUID says
	// where they landed.
	err := p.e.store.Update(func(tx store.Tx) error {
		for _, mv := range moves {
			e := store.Message{UID: mv.to.uid, State: store.Pending, Flags: mv.from.m.Flags,
				Identity: mv.to.identity, Size: mv.to.size, Date: mv.to.date}
			if err := tx.PutMessage(p.mb.Email, dst.plan.Source, dst.status.UIDValidity, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := p.tgt.selectFolder(from, false, false); err != nil {
		return fmt.Errorf("target SELECT %q: %w", from, err)
	}
	var set imap.UIDSet
	byTgt := map[uint32]move{}
	for _, mv := range moves {
		set.AddNum(imap.UID(mv.from.m.TgtUID))
		byTgt[mv.from.m.TgtUID] = mv
	}
	data, err := p.tgt.Move(set, to).Wait()
	if err != nil {
		return fmt.Errorf("target MOVE %q to %q: %w", from, to, err)
	}
	p.tgt.sel = nil // the folder changed under the cached SELECT data
	dest := map[uint32]uint32{}
	if data != nil && data.UIDValidity != 0 {
		srcUIDs, ok1 := data.SourceUIDs.(imap.UIDSet)
		dstUIDs, ok2 := data.DestUIDs.(imap.UIDSet)
		if ok1 && ok2 {
			s, _ := srcUIDs.Nums()
			d, _ := dstUIDs.Nums()
			for i := range min(len(s), len(d)) {
				dest[uint32(s[i])] = uint32(d[i])
			}
		}
	}
	err = p.e.store.Update(func(tx store.Tx) error {
		for _, mv := range moves {
			if err := p.recordArrival(tx, mv, dest[mv.from.m.TgtUID]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	moved := len(moves)
	dst.res.Moved += moved
	p.log.Info("moved messages on the target", zap.String("from", from), zap.String("to", to), zap.Int("count", moved))
	return nil
}

// ensureWatermark records, before anything is sent to w's target folder,
// a UID at or below which nothing pending can be: the target's UIDNEXT.
func (p *pass) ensureWatermark(w *folderWork) error { return p.ensureWatermarks([]*folderWork{w}) }

// ensureWatermarks does ensureWatermark for many folders in one store
// commit, reusing the UIDNEXT read by this pass's status round (any value
// read before the first APPEND is low enough).
func (p *pass) ensureWatermarks(ws []*folderWork) error {
	type pending struct {
		w   *folderWork
		cmd *imapclient.StatusCommand
	}
	var need []pending
	for _, w := range ws {
		if w.watermark == 0 && w.tgtUIDNext == 0 {
			need = append(need, pending{w, p.tgt.Status(w.plan.Target, &imap.StatusOptions{UIDNext: true, UIDValidity: true})})
		}
	}
	for _, n := range need {
		st, err := n.cmd.Wait()
		if err != nil {
			return fmt.Errorf("target STATUS %q: %w", n.w.plan.Target, err)
		}
		n.w.tgtUIDNext, n.w.tgtUIDValidity = uint32(st.UIDNext), st.UIDValidity
	}
	return p.e.store.Update(func(tx store.Tx) error {
		for _, w := range ws {
			if w.watermark != 0 {
				continue
			}
			w.watermark = w.tgtUIDNext
			// Keep the old source UIDVALIDITY until the pass completes, so
			// that entries still filed under it are found by the next pass.
			f := w.prev
			f.Mailbox, f.Name, f.Target = p.mb.Email, w.plan.Source, w.plan.Target
			if !w.hasPrev || f.UIDValidity == 0 {
				f.UIDValidity = w.status.UIDValidity
			}
			f.TargetUIDValidity, f.TargetUIDNext, f.Complete = w.tgtUIDValidity, w.watermark, false
			if err := tx.PutFolder(f); err != nil {
				return err
			}
		}
		return nil
	})
}

// applyChanges mirrors onto the target what changed on the source: the
// messages mailferry copied whose source is gone are deleted (only UIDs
// recorded as ours are touched), and flag changes are stored, one STORE
// per distinct change. The commands of all folders go out pipelined
// (SELECT, STOREs, UID EXPUNGE, the next folder's SELECT, …) once the
// first folder's SELECT has said which flags the target keeps: a round
// trip per folder would add up on a distant target. A folder whose
// commands failed keeps its records for the next pass; the others are
// recorded, and the first failure is returned.
func (p *pass) applyChanges() error {
	type folderOps struct {
		w       *folderWork
		waitSel func() (*imap.SelectData, error)
		stores  []*imapclient.FetchCommand
		expunge *imapclient.ExpungeCommand
	}
	var ops []*folderOps
	defer func() {
		// Every command sent is read to its end, also on an early return.
		for _, o := range ops {
			for _, c := range o.stores {
				c.Close()
			}
			if o.expunge != nil {
				o.expunge.Close()
			}
		}
	}()
	// The flags the target keeps, from the first folder with flag changes,
	// before anything else is sent: servers keep the same everywhere.
	var filter flagFilter
	for _, w := range p.folders {
		if len(w.changed) > 0 {
			f, err := p.targetFlags(w.plan.Target)
			if err != nil {
				return fmt.Errorf("folder %q: %w", w.plan.Source, err)
			}
			filter = f
			break
		}
	}
	for _, w := range p.folders {
		var del imap.UIDSet
		for _, g := range w.gone {
			if g.m.State == store.Copied {
				del.AddNum(imap.UID(g.m.TgtUID))
			}
		}
		o := &folderOps{w: w}
		if len(del) == 0 && len(w.changed) == 0 {
			if len(w.gone) > 0 {
				ops = append(ops, o) // records to forget, nothing on the target
			}
			continue
		}
		ops = append(ops, o)
		o.waitSel = p.tgt.selectAsync(w.plan.Target, false, false)
		if len(del) > 0 {
			o.stores = append(o.stores, p.tgt.Store(del, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil))
			if p.tgt.Caps().Has(imap.CapUIDPlus) {
				o.expunge = p.tgt.UIDExpunge(del)
			} else {
				p.log.Warn("target lacks UIDPLUS: deleted messages stay flagged \\Deleted until the user expunges", zap.String("folder", w.plan.Target))
			}
		}
		o.stores = append(o.stores, p.flagStores(w, filter)...)
	}

	var first error
	var flagged []flagRecord
	var gone []*goneMsg
	for _, o := range ops {
		w := o.w
		var err error
		if o.waitSel != nil {
			if _, serr := o.waitSel(); serr != nil {
				err = fmt.Errorf("target SELECT %q: %w", w.plan.Target, serr)
			}
		}
		for _, c := range o.stores {
			if cerr := c.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("target STORE in %q: %w", w.plan.Target, cerr)
			}
		}
		if o.expunge != nil {
			if cerr := o.expunge.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("target UID EXPUNGE in %q: %w", w.plan.Target, cerr)
			}
		}
		o.stores, o.expunge = nil, nil
		if err != nil {
			first = cmp.Or(first, fmt.Errorf("folder %q: %w", w.plan.Source, err))
			continue
		}
		gone = append(gone, w.gone...)
		for _, g := range w.gone {
			if g.m.State == store.Copied {
				w.res.Deleted++
			}
		}
		w.gone = nil
		for _, c := range w.changed {
			c.m.Flags = c.flags
			flagged = append(flagged, flagRecord{w, c.m})
		}
		w.res.FlagsUpdated += len(w.changed)
		w.changed = nil
	}
	// The expunges made the cached SELECT data stale.
	p.tgt.sel = nil
	err := p.e.store.Update(func(tx store.Tx) error {
		for _, g := range gone {
			if err := tx.DeleteMessage(p.mb.Email, g.w.plan.Source, g.uidv, g.m.UID); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = p.recordFlags(flagged)
	}
	return cmp.Or(first, err)
}

// flagStore is a STORE that adds or removes one flag.
type flagStore struct {
	add  bool
	flag string
}

// flagStores sends the STOREs that mirror w's flag changes, one per
// distinct change, as filter says the target keeps them.
func (p *pass) flagStores(w *folderWork, filter flagFilter) []*imapclient.FetchCommand {
	groups := map[flagStore]*imap.UIDSet{}
	for _, c := range w.changed {
		old, _ := filter.apply(c.m.Flags)
		cur, _ := filter.apply(c.flags)
		for _, f := range cur {
			if !slices.Contains(old, f) {
				addToGroup(groups, flagStore{true, string(f)}, c.m.TgtUID)
			}
		}
		for _, f := range old {
			if !slices.Contains(cur, f) {
				addToGroup(groups, flagStore{false, string(f)}, c.m.TgtUID)
			}
		}
	}
	keys := make([]flagStore, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b flagStore) int { return strings.Compare(a.flag, b.flag) })
	cmds := make([]*imapclient.FetchCommand, 0, len(keys))
	for _, k := range keys {
		sf := &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.Flag(k.flag)}}
		if k.add {
			sf.Op = imap.StoreFlagsAdd
		}
		cmds = append(cmds, p.tgt.Store(*groups[k], sf, nil))
	}
	return cmds
}

// flagRecord is a message whose new flags are on the target, to record.
type flagRecord struct {
	w *folderWork
	m *store.Message
}

// recordFlags records flags applied by applyChanges. A crash before it only
// makes the next pass apply the same flags again.
func (p *pass) recordFlags(recs []flagRecord) error {
	for start := 0; start < len(recs); start += commitBatch {
		err := p.e.store.Update(func(tx store.Tx) error {
			for _, r := range recs[start:min(start+commitBatch, len(recs))] {
				if err := tx.PutMessage(p.mb.Email, r.w.plan.Source, r.w.status.UIDValidity, *r.m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// commitBatch bounds the records of one store commit (Badger limits a
// transaction's size).
const commitBatch = 5000

func addToGroup[K comparable](groups map[K]*imap.UIDSet, k K, uid uint32) {
	s := groups[k]
	if s == nil {
		s = &imap.UIDSet{}
		groups[k] = s
	}
	s.AddNum(imap.UID(uid))
}
