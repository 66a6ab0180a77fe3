package sync

import (
	"cmp"
	"errors"
	"fmt"
	gosync "sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/imapconn"
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

	// srcStatus is the source folder's STATUS at the start of the pass.
	srcStatus *imap.StatusData
	scanned   bool // changed since the last pass, and scanned
	// partial: entries holds only the records a delta scan named.
	partial  bool
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
	// body is the whole message when the delta scan fetched it already
	// (see prefetch); nil otherwise.
	body []byte
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

func (p *pass) srcStatusOptions() *imap.StatusOptions {
	return &imap.StatusOptions{UIDValidity: true, UIDNext: true, NumMessages: true, HighestModSeq: p.condStore}
}

var tgtStatusOptions = imap.StatusOptions{UIDValidity: true, UIDNext: true}

// speculateStatus asks both servers for the status of every folder the
// last pass synced, before the plan is known.
func (p *pass) speculateStatus() {
	folders, err := p.e.store.Folders(p.mb.Email)
	if err != nil || len(folders) == 0 {
		return
	}
	p.specSrc, p.specTgt = map[string]*imapclient.StatusCommand{}, map[string]*imapclient.StatusCommand{}
	for _, f := range folders {
		p.specSrc[f.Name] = p.src.Status(f.Name, p.srcStatusOptions())
		if f.Target != "" {
			p.specTgt[f.Target] = p.tgt.Status(f.Target, &tgtStatusOptions)
		}
	}
}

// status is the STATUS of a folder on c: the speculative one when it was
// asked for and answered, else asked now.
func status(c *conn, spec map[string]*imapclient.StatusCommand, name string, opts *imap.StatusOptions) func() (*imap.StatusData, error) {
	cmd, ok := spec[name]
	if !ok {
		return c.Status(name, opts).Wait
	}
	delete(spec, name)
	return func() (*imap.StatusData, error) {
		if st, err := cmd.Wait(); err == nil {
			return st, nil
		}
		// The folder was missing then (and has been created since).
		return c.Status(name, opts).Wait()
	}
}

// scanFolders asks both servers for each folder's status in one pipelined
// round (or none: see speculateStatus), and scans the folders that changed
// since the last pass: a delta scan in one round trip each where CONDSTORE
// allows it, the UID searches for expunged messages together, then the
// folders that need a full scan.
func (p *pass) scanFolders(plans []FolderPlan) error {
	type pair struct {
		w        *folderWork
		src, tgt func() (*imap.StatusData, error)
	}
	var pairs []pair
	for _, pl := range plans {
		if pl.Skip != "" {
			continue
		}
		w := p.newWork(pl)
		pairs = append(pairs, pair{w, status(p.src, p.specSrc, pl.Source, p.srcStatusOptions()), status(p.tgt, p.specTgt, pl.Target, &tgtStatusOptions)})
	}
	var scannable, full []*folderWork
	for _, pr := range pairs {
		ss, err := pr.src()
		if err != nil {
			return fmt.Errorf("source STATUS %q: %w", pr.w.plan.Source, err)
		}
		ts, err := pr.tgt()
		if err != nil {
			return fmt.Errorf("target STATUS %q: %w", pr.w.plan.Target, err)
		}
		w := pr.w
		w.tgtUIDValidity, w.tgtUIDNext = ts.UIDValidity, uint32(ts.UIDNext)
		w.srcStatus = ss
		switch {
		case p.unchanged(w, ss):
			w.status = imap.SelectData{UIDValidity: ss.UIDValidity, UIDNext: ss.UIDNext, NumMessages: *ss.NumMessages, HighestModSeq: ss.HighestModSeq}
		case p.deltaScannable(w, ss):
			scannable = append(scannable, w)
		default:
			full = append(full, w)
		}
	}
	p.connectSpares(min(p.e.opts.ConnectionsPerMailbox, expectedChunks(p.folders)) - 1)
	outcomes, err := p.scanDeltas(scannable)
	if err != nil {
		return err
	}
	var searches []*folderWork
	for i, w := range scannable {
		switch outcomes[i] {
		case deltaNeedsSearch:
			searches = append(searches, w)
		case deltaNeedsFullScan:
			full = append(full, w)
		}
	}
	if err := p.searchExpunged(searches); err != nil {
		return err
	}
	for _, f := range full {
		if err := p.scanFolder(f); err != nil {
			return fmt.Errorf("folder %q: %w", f.plan.Source, err)
		}
	}
	return nil
}

// scanDeltas delta-scans the folders ws on the main source connection and,
// once it has logged in, on the spare pair's, which is idle until the copy
// phase: the main one takes folders from the front (the biggest, INBOX,
// comes first), the spare from the back. Each connection scans one folder
// at a time: a server may send unsolicited FETCH replies for the examined
// folder (flags changed by the user's mail client), and go-imap would hand
// one to any pending FETCH whose UID set contains its UID, another
// folder's too.
func (p *pass) scanDeltas(ws []*folderWork) ([]deltaOutcome, error) {
	outcomes := make([]deltaOutcome, len(ws))
	var mu gosync.Mutex
	front, back := 0, len(ws) // ws[front:back] are left to scan
	next := func(fromFront bool) (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case front >= back:
			return 0, false
		case fromFront:
			front++
			return front - 1, true
		default:
			back--
			return back, true
		}
	}
	scan := func(src *conn, fromFront bool) error {
		for i, ok := next(fromFront); ok; i, ok = next(fromFront) {
			o, err := p.scanDelta(src, ws[i])
			if err != nil {
				mu.Lock()
				front = back // the other connection stops too
				mu.Unlock()
				return fmt.Errorf("folder %q: %w", ws[i].plan.Source, err)
			}
			outcomes[i] = o
		}
		return nil
	}
	done := make(chan struct{})
	spareErr := make(chan error, 1)
	if p.spares == nil || len(ws) < 2 {
		spareErr <- nil
	} else {
		go func() {
			defer func() {
				if v := recover(); v != nil {
					spareErr <- fmt.Errorf("internal error in a delta scan: %v", v)
				}
			}()
			var pr copyPair
			select {
			case pr = <-p.spares:
			case <-done:
				spareErr <- nil
				return
			}
			defer func() { p.spares <- pr }() // for the copy phase
			if pr.src == nil {
				spareErr <- nil
				return
			}
			spareErr <- scan(pr.src, false)
		}()
	}
	err := scan(p.src, true)
	close(done)
	if serr := <-spareErr; err == nil {
		err = serr
	}
	return outcomes, err
}

// expectedChunks estimates from the STATUS replies how many chunks the copy
// phase will have, to log in as many pairs ahead of it as it can use.
func expectedChunks(ws []*folderWork) int {
	n := 0
	for _, w := range ws {
		st, pv := w.srcStatus, w.prev
		var fresh uint32
		switch {
		case st == nil || st.NumMessages == nil:
		case w.hasPrev && pv.UIDValidity == st.UIDValidity && pv.UIDNext != 0:
			if next := uint32(st.UIDNext); next > pv.UIDNext {
				fresh = min(next-pv.UIDNext, *st.NumMessages)
			}
		default:
			fresh = *st.NumMessages
		}
		n += int((fresh + chunkMessages - 1) / chunkMessages)
	}
	return n
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

// deltaScannable reports whether a changed folder can be scanned from its
// last complete pass on with CONDSTORE: new UIDs and changed flags only.
func (p *pass) deltaScannable(w *folderWork, ss *imap.StatusData) bool {
	pv := w.prev
	return p.condStore && w.hasPrev && pv.Complete && pv.HighestModSeq != 0 && ss.NumMessages != nil &&
		pv.UIDValidity == ss.UIDValidity && uint32(ss.UIDNext) >= pv.UIDNext &&
		(pv.TargetUIDValidity == 0 || pv.TargetUIDValidity == w.tgtUIDValidity)
}

func (p *pass) loadEntries(w *folderWork, uidv uint32, fn func(m store.Message)) error {
	return p.e.store.Messages(p.mb.Email, w.plan.Source, uidv, func(m store.Message) error {
		fn(m)
		return nil
	})
}

// loadRecorded loads the folder's recorded messages under uidv (those not
// loaded yet). With targetReset (the target folder's UIDVALIDITY changed)
// every copied message becomes pending, to be found again by identity.
func (p *pass) loadRecorded(w *folderWork, uidv uint32, targetReset bool) error {
	w.partial = false
	if err := p.loadEntries(w, uidv, w.addEntry); err != nil {
		return err
	}
	if targetReset {
		p.log.Warn("UIDVALIDITY changed on the target; finding copied messages again by identity",
			zap.String("folder", w.plan.Source), zap.String("target", w.plan.Target))
		for _, m := range w.entries {
			if m.State == store.Copied {
				m.State, m.TgtUID = store.Pending, 0
				w.pendings++
			}
		}
		w.watermark = 1
	}
	return nil
}

// deltaLookups bounds the single lookups of a delta scan; past it, reading
// the folder's records whole is cheaper.
const deltaLookups = 1000

// loadNamed loads the recorded messages that a delta scan's replies name,
// so that a delta costs what changed rather than what the folder holds.
// The folder's records are then partial: what needs them all (a search for
// expunged messages) loads the rest.
func (p *pass) loadNamed(w *folderWork, uidv uint32, lists ...[]*srcMsg) error {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	if n > deltaLookups {
		return p.loadRecorded(w, uidv, false)
	}
	w.partial = true
	for _, l := range lists {
		for _, m := range l {
			e, err := p.e.store.Message(p.mb.Email, w.plan.Source, uidv, m.uid)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			w.addEntry(e)
		}
	}
	return nil
}

// addEntry adds a recorded message not loaded yet; a pending one needs a
// watermark to be looked for.
func (w *folderWork) addEntry(m store.Message) {
	if _, ok := w.entries[m.UID]; ok {
		return
	}
	w.entries[m.UID] = &m
	if m.State == store.Pending {
		w.pendings++
		if w.watermark == 0 {
			w.watermark = 1
		}
	}
}

var newItems = imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true,
	BodySection: []*imap.FetchItemBodySection{identitySection}}

type deltaOutcome int

const (
	deltaDone          deltaOutcome = iota
	deltaNeedsSearch                // messages were expunged: a UID SEARCH tells which
	deltaNeedsFullScan              // the folder changed between STATUS and EXAMINE
)

// scanDelta scans a folder from its last complete pass on with CONDSTORE,
// in one round trip: EXAMINE, a FETCH of the flags changed since the last
// HIGHESTMODSEQ and one of the messages new since the last UIDNEXT (with
// their identity header fields). The two UID ranges are closed and
// disjoint, so neither FETCH can take the other's replies. The message
// count tells whether anything was expunged since the last pass.
func (p *pass) scanDelta(src *conn, w *folderWork) (deltaOutcome, error) {
	pv, ss := w.prev, w.srcStatus
	var changedCmd, addedCmd *imapclient.FetchCommand // nil: nothing to ask
	defer func() {
		for _, c := range []*imapclient.FetchCommand{changedCmd, addedCmd} {
			if c != nil {
				c.Close()
			}
		}
	}()
	waitSel := src.selectAsync(w.plan.Source, true, p.condStore)
	if ss.HighestModSeq != pv.HighestModSeq && pv.UIDNext > 1 {
		changedCmd = src.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: imap.UID(pv.UIDNext - 1)}},
			&imap.FetchOptions{UID: true, Flags: true, ChangedSince: pv.HighestModSeq})
	}
	var reserved int64 // prefetch budget taken for this folder's new messages
	defer func() { p.givePrefetch(reserved) }()
	if uint32(ss.UIDNext) > pv.UIDNext {
		items := &newItems
		if n := int64(uint32(ss.UIDNext) - pv.UIDNext); p.takePrefetch(n * prefetchSize) {
			reserved = n * prefetchSize
			items = &newItemsPrefetch
		}
		addedCmd = src.Fetch(imap.UIDSet{imap.UIDRange{Start: imap.UID(pv.UIDNext), Stop: ss.UIDNext - 1}}, items)
	}
	sel, err := waitSel()
	if err != nil {
		return 0, fmt.Errorf("source EXAMINE: %w", err)
	}
	if sel.UIDValidity != pv.UIDValidity || sel.UIDNext != ss.UIDNext {
		// Something arrived (or the folder was reset) since STATUS: the
		// FETCHes don't cover it.
		return deltaNeedsFullScan, nil
	}
	w.scanned = true
	w.status = *sel
	// A server may answer the two FETCHes interleaved (Dovecot does), and
	// go-imap's reader waits until each header literal is read: both are
	// read at once.
	var changed []*srcMsg
	changedDone := make(chan error, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				changedDone <- fmt.Errorf("internal error reading changed flags: %v", v)
			}
		}()
		if changedCmd == nil {
			changedDone <- nil
			return
		}
		changedDone <- readMeta(changedCmd, func(m *srcMsg) { changed = append(changed, m) })
	}()
	var added []*srcMsg
	var addedErr error
	if addedCmd != nil {
		addedErr = eachFetched(addedCmd, func(buf *imapclient.FetchMessageBuffer) {
			m := newSrcMsg(buf)
			m.identify(buf)
			if body := buf.FindBodySection(prefetchSection); reserved >= m.size && body != nil && int64(len(body)) == m.size {
				m.body, reserved = body, reserved-m.size
			}
			added = append(added, m)
		})
	}
	if err := <-changedDone; err != nil {
		return 0, err
	}
	if addedErr != nil {
		return 0, fmt.Errorf("source %w", addedErr)
	}
	if err := p.loadNamed(w, sel.UIDValidity, changed, added); err != nil {
		return 0, err
	}
	for _, m := range changed {
		if e := w.entries[m.uid]; e != nil && e.State == store.Copied && !equalFlags(e.Flags, m.flags) {
			w.changed = append(w.changed, &flagChange{m: e, flags: m.flags})
		}
	}
	for _, m := range added {
		p.classify(w, m)
	}
	if sel.NumMessages != pv.NumMessages+uint32(len(added)) && pv.UIDNext > 1 {
		return deltaNeedsSearch, nil
	}
	return deltaDone, nil
}

// searchExpunged finds which recorded messages are gone from the folders
// ws, with one EXAMINE and UID SEARCH each, all in one round trip.
func (p *pass) searchExpunged(ws []*folderWork) error {
	type search struct {
		w       *folderWork
		waitSel func() (*imap.SelectData, error)
		cmd     *imapclient.SearchCommand
	}
	var searches []search
	for _, w := range ws {
		waitSel := p.src.selectAsync(w.plan.Source, true, p.condStore)
		uids := imap.UIDSet{imap.UIDRange{Start: 1, Stop: imap.UID(w.prev.UIDNext - 1)}}
		cmd := p.src.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{uids}}, &imap.SearchOptions{ReturnAll: p.src.Caps().Has(imap.CapESearch)})
		searches = append(searches, search{w, waitSel, cmd})
	}
	var first error
	for _, s := range searches {
		w := s.w
		sel, err := s.waitSel()
		if err == nil && sel.UIDValidity != w.status.UIDValidity {
			err = imapconn.MakeTemporary(errUIDValidityChanged)
		}
		data, serr := s.cmd.Wait()
		if err == nil && serr != nil {
			err = fmt.Errorf("source UID SEARCH: %w", serr)
		}
		if err != nil {
			if first == nil {
				first = fmt.Errorf("folder %q: %w", w.plan.Source, err)
			}
			continue
		}
		if w.partial {
			if err := p.loadRecorded(w, w.status.UIDValidity, false); err != nil {
				first = cmp.Or(first, err)
				continue
			}
		}
		present := map[uint32]bool{}
		for _, uid := range data.AllUIDs() {
			present[uint32(uid)] = true
		}
		for uid, e := range w.entries {
			if uid < w.prev.UIDNext && !present[uid] {
				p.vanish(w, w.status.UIDValidity, e)
			}
		}
	}
	return first
}

// scanFolder reads one source folder whole: its messages' UIDs, flags,
// sizes and dates, against what was recorded. EXAMINE and the FETCH go in
// one round trip; when everything is new (a first pass, a UIDVALIDITY
// reset) the FETCH brings the identity header fields too.
func (p *pass) scanFolder(w *folderWork) error {
	w.scanned = true
	pv, ss := w.prev, w.srcStatus
	withIdentity := !w.hasPrev || ss.UIDValidity != pv.UIDValidity
	items := &metaItems
	if withIdentity {
		items = &newItems
	}
	var fetch *imapclient.FetchCommand
	defer func() {
		if fetch != nil {
			fetch.Close()
		}
	}()
	waitSel := p.src.selectAsync(w.plan.Source, true, p.condStore)
	if ss.NumMessages == nil || *ss.NumMessages > 0 {
		// Some servers refuse "1:*" in an empty folder.
		fetch = p.src.Fetch(allUIDs, items)
	}
	sel, err := waitSel()
	if err != nil {
		return fmt.Errorf("source EXAMINE: %w", err)
	}
	w.status = *sel
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
	targetReset := w.hasPrev && pv.TargetUIDValidity != 0 && pv.TargetUIDValidity != w.tgtUIDValidity
	if err := p.loadRecorded(w, sel.UIDValidity, targetReset); err != nil {
		return err
	}
	if fetch == nil && sel.NumMessages > 0 {
		fetch = p.src.Fetch(allUIDs, items) // arrived since STATUS
	}
	present := make(map[uint32]bool, sel.NumMessages)
	if fetch != nil {
		err := eachFetched(fetch, func(buf *imapclient.FetchMessageBuffer) {
			m := newSrcMsg(buf)
			if withIdentity {
				m.identify(buf)
			}
			present[m.uid] = true
			p.classify(w, m)
		})
		if err != nil {
			return fmt.Errorf("source %w", err)
		}
	}
	for uid, e := range w.entries {
		if !present[uid] {
			p.vanish(w, sel.UIDValidity, e)
		}
	}
	if withIdentity {
		return nil
	}
	return p.fetchIdentities(w)
}

var (
	allUIDs   = imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
	metaItems = imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true}
)

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

func newSrcMsg(buf *imapclient.FetchMessageBuffer) *srcMsg {
	return &srcMsg{uid: uint32(buf.UID), flags: normFlags(buf.Flags), size: buf.RFC822Size, date: buf.InternalDate.UTC().Truncate(time.Second)}
}

// identify reads m's identity from the header fields of newItems.
func (m *srcMsg) identify(buf *imapclient.FetchMessageBuffer) {
	h := parseIdentity(buf.FindBodySection(identitySection))
	m.identity, m.subject = h.identity, h.subject
}

// readMeta reads a metadata FETCH's replies.
func readMeta(cmd *imapclient.FetchCommand, fn func(*srcMsg)) error {
	err := eachFetched(cmd, func(buf *imapclient.FetchMessageBuffer) { fn(newSrcMsg(buf)) })
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
