package sync

import (
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/store"
)

// folderWork is one folder's share of a pass.
type folderWork struct {
	plan    FolderPlan
	prev    store.Folder
	hasPrev bool
	status  imap.SelectData
	res     *FolderResult

	tgtUIDValidity uint32
	tgtUIDNext     uint32
	// watermark is the target UID from which pending messages may be found
	// (0: nothing pending).
	watermark uint32

	scanned  bool // changed since the last pass, and scanned
	vanished bool // gone from the source; its messages are gone with it

	entries  map[uint32]*store.Message // recorded messages, current UIDVALIDITY
	seen     map[uint32]*srcMsg        // source messages of recorded pending entries
	newMsgs  []*srcMsg
	changed  []*flagChange
	gone     []*goneMsg
	failed   int
	pendings int
	// requeued counts messages found missing by a recovery; after the copy
	// phase they wait for the next pass, so the folder is not complete.
	requeued int
}

func (w *folderWork) hasPending() bool { return w.pendings > 0 }

// srcMsg is a source message seen by a scan.
type srcMsg struct {
	w        *folderWork
	uid      uint32
	flags    []string
	size     int64
	date     time.Time
	identity uint64
	subject  string
}

func (m *srcMsg) key() matchKey { return matchKey{m.identity, m.size, m.date.Unix()} }

// goneMsg is a recorded message whose source copy is no longer where it was.
type goneMsg struct {
	w    *folderWork
	uidv uint32
	m    store.Message
}

type flagChange struct {
	m     *store.Message
	flags []string
}

// matchKey recognises the same message elsewhere.
type matchKey struct {
	identity uint64
	size     int64
	date     int64
}

func entryKey(m *store.Message) matchKey { return matchKey{m.Identity, m.Size, m.Date.Unix()} }

func (p *pass) newWork(pl FolderPlan) *folderWork {
	w := &folderWork{plan: pl, res: p.res.folder(pl.Source, pl.Target), entries: map[uint32]*store.Message{}, seen: map[uint32]*srcMsg{}}
	if prev, err := p.e.store.Folder(p.mb.Email, pl.Source); err == nil {
		w.prev, w.hasPrev = prev, true
		w.watermark = prev.TargetUIDNext
	}
	if p.byName == nil {
		p.byName = map[string]*folderWork{}
	}
	p.folders = append(p.folders, w)
	p.byName[pl.Source] = w
	return w
}

// scanFolders asks both servers for each folder's status in one pipelined
// round, and scans the folders that changed since the last pass.
func (p *pass) scanFolders(plans []FolderPlan) error {
	srcOpts := &imap.StatusOptions{UIDValidity: true, UIDNext: true, NumMessages: true, HighestModSeq: p.condStore}
	tgtOpts := &imap.StatusOptions{UIDValidity: true, UIDNext: true}
	type pair struct {
		w        *folderWork
		src, tgt *imapclient.StatusCommand
	}
	var pairs []pair
	for _, pl := range plans {
		if pl.Skip != "" {
			continue
		}
		w := p.newWork(pl)
		pairs = append(pairs, pair{w, p.src.Status(pl.Source, srcOpts), p.tgt.Status(pl.Target, tgtOpts)})
	}
	for _, pr := range pairs {
		ss, err := pr.src.Wait()
		if err != nil {
			return fmt.Errorf("source STATUS %q: %w", pr.w.plan.Source, err)
		}
		ts, err := pr.tgt.Wait()
		if err != nil {
			return fmt.Errorf("target STATUS %q: %w", pr.w.plan.Target, err)
		}
		w := pr.w
		w.tgtUIDValidity, w.tgtUIDNext = ts.UIDValidity, uint32(ts.UIDNext)
		if p.unchanged(w, ss) {
			w.status = imap.SelectData{UIDValidity: ss.UIDValidity, UIDNext: ss.UIDNext, NumMessages: *ss.NumMessages, HighestModSeq: ss.HighestModSeq}
			continue
		}
		if err := p.scanFolder(w, ss); err != nil {
			return fmt.Errorf("folder %q: %w", w.plan.Source, err)
		}
	}
	return nil
}

// unchanged reports whether a folder can be skipped: same UIDVALIDITY,
// UIDNEXT, message count and HIGHESTMODSEQ as after the last complete pass,
// and the same target folder. Without CONDSTORE flag changes are invisible
// in STATUS, so every folder is scanned.
func (p *pass) unchanged(w *folderWork, ss *imap.StatusData) bool {
	pv := w.prev
	return p.condStore && w.hasPrev && pv.Complete && ss.NumMessages != nil &&
		pv.UIDValidity == ss.UIDValidity && pv.UIDNext == uint32(ss.UIDNext) &&
		pv.NumMessages == *ss.NumMessages && pv.HighestModSeq == ss.HighestModSeq && pv.HighestModSeq != 0 &&
		pv.TargetUIDValidity == w.tgtUIDValidity && pv.Target == w.plan.Target
}

func (p *pass) loadEntries(w *folderWork, uidv uint32, fn func(m store.Message)) error {
	return p.e.store.Messages(p.mb.Email, w.plan.Source, uidv, func(m store.Message) error {
		fn(m)
		return nil
	})
}

// scanFolder finds what changed in one source folder since the last pass.
// ss is the folder's STATUS from this pass.
func (p *pass) scanFolder(w *folderWork, ss *imap.StatusData) error {
	w.scanned = true
	pv := w.prev
	targetReset := w.hasPrev && pv.TargetUIDValidity != 0 && pv.TargetUIDValidity != w.tgtUIDValidity
	fast := p.condStore && w.hasPrev && pv.Complete && pv.HighestModSeq != 0 && !targetReset && pv.UIDValidity == ss.UIDValidity
	// The delta path sends EXAMINE and its FETCHes in one round trip.
	var delta deltaFetches
	waitSel := p.src.selectAsync(w.plan.Source, true, p.condStore)
	if fast {
		p.issueDelta(&delta, pv, ss.UIDNext, ss.HighestModSeq)
	}
	sel, err := waitSel()
	if err != nil {
		delta.close()
		return fmt.Errorf("source EXAMINE: %w", err)
	}
	w.status = *sel
	if fast && sel.UIDValidity != pv.UIDValidity {
		delta.close()
		fast = false
	}
	if w.hasPrev && pv.UIDValidity != 0 && pv.UIDValidity != sel.UIDValidity {
		p.log.Warn("UIDVALIDITY changed on the source; matching messages by identity",
			zap.String("folder", w.plan.Source), zap.Uint32("old", pv.UIDValidity), zap.Uint32("new", sel.UIDValidity))
		err := p.loadEntries(w, pv.UIDValidity, func(m store.Message) {
			w.gone = append(w.gone, &goneMsg{w: w, uidv: pv.UIDValidity, m: m})
		})
		if err != nil {
			return err
		}
	}
	if err := p.loadEntries(w, sel.UIDValidity, func(m store.Message) { w.entries[m.UID] = &m }); err != nil {
		delta.close()
		return err
	}

	if targetReset {
		p.log.Warn("UIDVALIDITY changed on the target; finding copied messages again by identity",
			zap.String("folder", w.plan.Source), zap.String("target", w.plan.Target))
		for _, m := range w.entries {
			if m.State == store.Copied {
				m.State, m.TgtUID = store.Pending, 0
			}
		}
		w.watermark = 1
	}
	for _, m := range w.entries {
		if m.State == store.Pending {
			w.pendings++
		}
	}
	if w.pendings > 0 && w.watermark == 0 {
		w.watermark = 1
	}

	if fast {
		// What arrived between STATUS and EXAMINE needs asking too.
		p.issueDelta(&delta, pv, sel.UIDNext, sel.HighestModSeq)
		err = p.scanDelta(w, sel, &delta)
	} else {
		err = p.scanAll(w, sel)
	}
	if err != nil {
		return err
	}
	return p.fetchIdentities(w)
}

// deltaFetches are the FETCHes of a CONDSTORE delta scan, in the order they
// were sent (and so must be read).
type deltaFetches struct {
	cmds    []*imapclient.FetchCommand
	isNew   []bool
	newSent bool
	chgSent bool
}

// issueDelta sends what the delta scan still needs: the messages from the
// last pass's UIDNEXT on, and the flags changed since its HIGHESTMODSEQ.
// Their UID ranges don't overlap, so go-imap can tell their replies apart.
func (p *pass) issueDelta(d *deltaFetches, pv store.Folder, uidNext imap.UID, modSeq uint64) {
	if !d.chgSent && modSeq != pv.HighestModSeq && pv.UIDNext > 1 {
		d.chgSent = true
		opts := &imap.FetchOptions{UID: true, Flags: true, ChangedSince: pv.HighestModSeq}
		d.cmds = append(d.cmds, p.src.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: imap.UID(pv.UIDNext - 1)}}, opts))
		d.isNew = append(d.isNew, false)
	}
	if !d.newSent && uint32(uidNext) > pv.UIDNext {
		d.newSent = true
		var set imap.UIDSet
		set.AddRange(imap.UID(pv.UIDNext), 0)
		d.cmds = append(d.cmds, p.src.Fetch(set, &metaItems))
		d.isNew = append(d.isNew, true)
	}
}

func (d *deltaFetches) close() {
	for _, c := range d.cmds {
		c.Close()
	}
	d.cmds = nil
}

var metaItems = imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true}

// scanAll lists every message's UID, flags, size and date: one command.
func (p *pass) scanAll(w *folderWork, sel *imap.SelectData) error {
	present := make(map[uint32]bool, sel.NumMessages)
	if sel.NumMessages > 0 {
		err := p.fetchMeta(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &metaItems, func(m *srcMsg) {
			present[m.uid] = true
			p.classify(w, m)
		})
		if err != nil {
			return err
		}
	}
	for uid, e := range w.entries {
		if !present[uid] {
			p.vanish(w, sel.UIDValidity, e)
		}
	}
	return nil
}

// scanDelta uses CONDSTORE: new UIDs, flags changed since the last
// HIGHESTMODSEQ, and a UID search only when the message count says that
// something was expunged.
func (p *pass) scanDelta(w *folderWork, sel *imap.SelectData, d *deltaFetches) error {
	pv := w.prev
	newCount := uint32(0)
	for i, cmd := range d.cmds {
		var fn func(*srcMsg)
		if d.isNew[i] {
			fn = func(m *srcMsg) {
				if m.uid >= pv.UIDNext { // "n:*" also returns the last message when n is past it
					newCount++
					p.classify(w, m)
				}
			}
		} else {
			fn = func(m *srcMsg) {
				if e := w.entries[m.uid]; e != nil && e.State == store.Copied && !equalFlags(e.Flags, m.flags) {
					w.changed = append(w.changed, &flagChange{m: e, flags: m.flags})
				}
			}
		}
		if err := readMeta(cmd, fn); err != nil {
			d.close()
			return err
		}
	}
	if sel.NumMessages == pv.NumMessages+newCount || pv.UIDNext <= 1 {
		return nil
	}
	data, err := p.src.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSet{imap.UIDRange{Start: 1, Stop: imap.UID(pv.UIDNext - 1)}}}},
		&imap.SearchOptions{ReturnAll: p.src.Caps().Has(imap.CapESearch)}).Wait()
	if err != nil {
		return fmt.Errorf("source UID SEARCH: %w", err)
	}
	present := map[uint32]bool{}
	for _, uid := range data.AllUIDs() {
		present[uint32(uid)] = true
	}
	for uid, e := range w.entries {
		if uid < pv.UIDNext && !present[uid] {
			p.vanish(w, sel.UIDValidity, e)
		}
	}
	return nil
}

// classify sorts one scanned source message: new, flags changed, pending.
func (p *pass) classify(w *folderWork, m *srcMsg) {
	m.w = w
	e := w.entries[m.uid]
	switch {
	case e == nil:
		w.newMsgs = append(w.newMsgs, m)
	case e.State == store.Pending:
		// Recorded before it was sent: if recovery doesn't find it on the
		// target it is copied again, under the identity already recorded.
		m.identity = e.Identity
		w.seen[m.uid] = m
	case e.State == store.Copied && !equalFlags(e.Flags, m.flags):
		w.changed = append(w.changed, &flagChange{m: e, flags: m.flags})
	}
}

// vanish handles a recorded message that is no longer in its source folder.
func (p *pass) vanish(w *folderWork, uidv uint32, e *store.Message) {
	delete(w.entries, e.UID)
	w.gone = append(w.gone, &goneMsg{w: w, uidv: uidv, m: *e})
}

func equalFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fetchMeta streams FETCH results of the selected source folder without
// keeping them all.
func (p *pass) fetchMeta(set imap.UIDSet, opts *imap.FetchOptions, fn func(*srcMsg)) error {
	return readMeta(p.src.Fetch(set, opts), fn)
}

// readMeta reads a metadata FETCH's replies.
func readMeta(cmd *imapclient.FetchCommand, fn func(*srcMsg)) error {
	err := eachFetched(cmd, func(buf *imapclient.FetchMessageBuffer) {
		fn(&srcMsg{uid: uint32(buf.UID), flags: normFlags(buf.Flags), size: buf.RFC822Size, date: buf.InternalDate.UTC().Truncate(time.Second)})
	})
	if err != nil {
		return fmt.Errorf("source %w", err)
	}
	return nil
}

// identityBatch bounds the UID set of one header FETCH.
const identityBatch = 2000

// fetchIdentities reads the identity header fields of new messages.
func (p *pass) fetchIdentities(w *folderWork) error {
	byUID := make(map[uint32]*srcMsg, len(w.newMsgs))
	for _, m := range w.newMsgs {
		byUID[m.uid] = m
	}
	for start := 0; start < len(w.newMsgs); start += identityBatch {
		var set imap.UIDSet
		for _, m := range w.newMsgs[start:min(start+identityBatch, len(w.newMsgs))] {
			set.AddNum(imap.UID(m.uid))
		}
		err := fetchIdentityItems(p.src, set, func(it identityItem) {
			if m := byUID[it.uid]; m != nil {
				m.identity, m.subject = it.identity, it.subject
			}
		})
		if err != nil {
			return fmt.Errorf("source %w", err)
		}
	}
	return nil
}

// loadVanishedFolders treats folders recorded earlier but gone from the
// source (deleted or renamed there) as gone messages: a rename becomes moves
// on the target, a deletion deletes what mailferry copied.
func (p *pass) loadVanishedFolders(plans []FolderPlan) error {
	listed := map[string]bool{}
	for _, pl := range plans {
		listed[pl.Source] = true // excluded folders are left alone
	}
	recorded, err := p.e.store.Folders(p.mb.Email)
	if err != nil {
		return err
	}
	for _, f := range recorded {
		if listed[f.Name] {
			continue
		}
		w := p.newWork(FolderPlan{Source: f.Name, Target: f.Target})
		w.vanished = true
		w.tgtUIDValidity = f.TargetUIDValidity
		p.log.Info("folder gone from the source", zap.String("folder", f.Name))
		err := p.loadEntries(w, f.UIDValidity, func(m store.Message) {
			w.gone = append(w.gone, &goneMsg{w: w, uidv: f.UIDValidity, m: m})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

var errUIDValidityChanged = errors.New("source UIDVALIDITY changed during the pass")
