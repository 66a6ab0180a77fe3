package sync

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	gosync "sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/store"
)

// A chunk is at most this many messages or bytes of one folder: one FETCH,
// two store commits.
const (
	chunkMessages = 250
	chunkBytes    = 64 << 20
	skipBatch     = 1000
)

type chunk struct {
	w    *folderWork
	msgs []*srcMsg
}

// copyNew copies the new messages of every folder, newest month first,
// through ConnectionsPerMailbox source/target connection pairs.
func (p *pass) copyNew() error {
	cands, err := p.selectCandidates()
	if err != nil || len(cands) == 0 {
		return err
	}
	var total int64
	for _, m := range cands {
		total += m.size
	}
	p.e.opts.Progress.MailboxPlanned(p.mb.Email, len(cands), total)
	if err := p.copyRound(cands, p.e.opts.ConnectionsPerMailbox); err != nil {
		return err
	}
	// A target that refused a MULTIAPPEND stored none of its messages: one
	// APPEND each tells the one it refuses from the others.
	p.mu.Lock()
	retry := p.retrySingly
	p.retrySingly = nil
	p.mu.Unlock()
	if len(retry) == 0 {
		return nil
	}
	p.log.Info("target refused a MULTIAPPEND; sending its messages one by one", zap.Int("messages", len(retry)))
	return p.copyRound(retry, 1)
}

// copyRound copies cands through at most pairs source/target connection
// pairs.
func (p *pass) copyRound(cands []*srcMsg, pairs int) error {
	chunks := makeChunks(cands, p.folders)

	// Everything workers share is prepared here on the main connections.
	var dests []*folderWork
	for _, c := range chunks {
		if !slices.Contains(dests, c.w) {
			dests = append(dests, c.w)
		}
	}
	if err := p.ensureWatermarks(dests); err != nil {
		return err
	}
	// Every message is recorded as pending before the first APPEND, in as
	// few synced commits as possible.
	if err := p.recordPending(cands); err != nil {
		return err
	}
	filter, err := p.targetFlags(dests[0].plan.Target)
	if err != nil {
		return err
	}
	p.tgt.unselect()

	jobs := make(chan chunk)
	var wg gosync.WaitGroup
	errs := make(chan error, 2*pairs)
	worker := func(src, tgt *conn) {
		defer wg.Done()
		rec := p.newRecorder()
		defer func() {
			if err := rec.finish(); err != nil {
				errs <- err
			}
		}()
		for c := range jobs {
			for len(c.msgs) > 0 && rec.err() == nil && !p.throttled.Load() {
				b, rest, err := p.sendChunk(src, tgt, c, filter)
				if b != nil {
					rec.add(b)
				}
				if errors.Is(err, errTargetClosed) {
					// go-imap drops the connection after a refused
					// synchronizing literal: carry on with a new one.
					if tgt, err = p.reconnectTarget(tgt); err == nil {
						c.msgs = rest
						continue
					}
				}
				if err != nil {
					errs <- err
					// Drain so the feeder is not stuck; other workers go on.
					for range jobs {
					}
					return
				}
				break
			}
		}
	}
	wg.Add(1)
	go worker(p.src, p.tgt)
	// More pairs join as they log in; the first starts at once.
	for range min(pairs, len(chunks)) - 1 {
		wg.Go(func() {
			src, tgt, err := p.extraPair()
			if err != nil {
				p.log.Warn("copying with fewer connections", zap.NamedError("err", err))
			}
			if src != nil && tgt != nil {
				wg.Add(1)
				worker(src, tgt)
			}
		})
	}
feed:
	for _, c := range chunks {
		select {
		case jobs <- c:
		case <-p.ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return p.ctx.Err()
}

// makeChunks cuts each folder's new messages, newest first, into chunks
// (one FETCH each), and orders the chunks newest first across folders: mail
// arrives newest first at chunk granularity while a FETCH stays long.
func makeChunks(cands []*srcMsg, folders []*folderWork) []chunk {
	order := map[*folderWork]int{}
	for i, w := range folders {
		order[w] = i
	}
	slices.SortStableFunc(cands, func(a, b *srcMsg) int {
		return cmp.Or(cmp.Compare(order[a.w], order[b.w]), b.date.Compare(a.date), cmp.Compare(b.uid, a.uid))
	})
	var chunks []chunk
	for _, m := range cands {
		last := len(chunks) - 1
		if last < 0 || chunks[last].w != m.w || len(chunks[last].msgs) >= chunkMessages || chunkSize(chunks[last]) >= chunkBytes {
			chunks = append(chunks, chunk{w: m.w})
			last++
		}
		chunks[last].msgs = append(chunks[last].msgs, m)
	}
	slices.SortStableFunc(chunks, func(a, b chunk) int {
		return cmp.Or(b.msgs[0].date.Compare(a.msgs[0].date), cmp.Compare(order[a.w], order[b.w]))
	})
	return chunks
}

// recordPending records messages as pending: sent, or about to be, with
// the result not yet known.
func (p *pass) recordPending(msgs []*srcMsg) error {
	for start := 0; start < len(msgs); start += commitBatch {
		batch := msgs[start:min(start+commitBatch, len(msgs))]
		err := p.e.store.Update(func(tx store.Tx) error {
			for _, m := range batch {
				e := store.Message{UID: m.uid, State: store.Pending, Flags: m.flags, Identity: m.identity, Size: m.size, Date: m.date}
				if err := tx.PutMessage(p.mb.Email, m.w.plan.Source, m.w.status.UIDValidity, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		p.mu.Lock()
		for _, m := range batch {
			m.w.pendings++
		}
		p.mu.Unlock()
	}
	return nil
}

func chunkSize(c chunk) (n int64) {
	for _, m := range c.msgs {
		n += m.size
	}
	return n
}

// selectCandidates applies date filters and limits to the new messages,
// records the skipped ones, and returns the ones to copy.
func (p *pass) selectCandidates() ([]*srcMsg, error) {
	var cands []*srcMsg
	var skips []*srcMsg
	reasons := map[*srcMsg]string{}
	existing := 0
	opts := p.e.opts
	for _, w := range p.folders {
		if w.vanished {
			continue
		}
		switch {
		case w.scanned && !w.partial:
			existing += len(w.entries)
		case w.scanned:
			existing += int(w.status.NumMessages) - len(w.newMsgs)
		default:
			existing += int(w.status.NumMessages)
		}
		for _, m := range w.newMsgs {
			switch {
			case !p.inDateRange(m.date):
				w.res.Filtered++
			case m.size > opts.MaxMessageSize:
				skips = append(skips, m)
				reasons[m] = fmt.Sprintf("%s: %d bytes, limit %d", ReasonTooBig, m.size, opts.MaxMessageSize)
			default:
				cands = append(cands, m)
			}
		}
	}
	if room := max(opts.MaxItems-existing, 0); len(cands) > room {
		slices.SortStableFunc(cands, func(a, b *srcMsg) int { return b.date.Compare(a.date) })
		for _, m := range cands[room:] {
			skips = append(skips, m)
			reasons[m] = fmt.Sprintf("%s: %d items per mailbox", ReasonItemLimit, opts.MaxItems)
		}
		cands = cands[:room]
	}
	for start := 0; start < len(skips); start += skipBatch {
		batch := skips[start:min(start+skipBatch, len(skips))]
		err := p.e.store.Update(func(tx store.Tx) error {
			for _, m := range batch {
				e := store.Message{UID: m.uid, State: store.Skipped, Identity: m.identity, Size: m.size, Date: m.date,
					Flags: m.flags, Reason: reasons[m], Subject: m.subject}
				if err := tx.PutMessage(p.mb.Email, m.w.plan.Source, m.w.status.UIDValidity, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, m := range skips {
		p.skipped(m, reasons[m])
	}
	return cands, nil
}

func (p *pass) skipped(m *srcMsg, reason string) {
	short, _, _ := strings.Cut(reason, ":")
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.w.res.Skipped == nil {
		m.w.res.Skipped = map[string]int{}
	}
	m.w.res.Skipped[short]++
	p.res.SkippedItems = append(p.res.SkippedItems, SkippedItem{Folder: m.w.plan.Source, UID: m.uid, Date: m.date,
		Subject: m.subject, Size: m.size, Reason: reason})
	p.log.Info("message skipped", zap.String("folder", m.w.plan.Source), zap.Uint32("uid", m.uid),
		zap.Int64("size", m.size), zap.String("reason", reason))
}

// appended is the outcome of one APPEND.
type appended struct {
	m    *srcMsg
	data *imap.AppendData
	err  error
}

// batch is a chunk on its way: APPENDs sent, replies outstanding.
type batch struct {
	w       *folderWork
	tgt     *conn
	msgs    []*srcMsg
	waits   gosync.WaitGroup
	results chan appended
	// multi is the MULTIAPPEND being written; nil when the chunk goes in
	// one APPEND per message.
	multi *multiSend
}

// multiSend is a chunk's MULTIAPPEND under way.
type multiSend struct {
	cmd   *imapconn.MultiAppend // nil between two commands
	msgs  []*srcMsg
	bytes int64
}

// A MULTIAPPEND holds at most this many messages or bytes: one transaction
// on the target, and what a broken connection makes it forget at once.
const (
	multiAppendMessages = 100
	multiAppendBytes    = 16 << 20
)

// batchRefused is a message's outcome when the target refused the
// MULTIAPPEND it was in, and so stored none of that command's messages.
type batchRefused struct{ err error }

func (e *batchRefused) Error() string { return "MULTIAPPEND refused: " + e.err.Error() }
func (e *batchRefused) Unwrap() error { return e.err }

func isBatchRefused(err error) bool {
	var br *batchRefused
	return errors.As(err, &br)
}

// sendChunk streams one chunk from a source FETCH into target APPENDs (its
// messages are recorded as pending already); the replies are left to the
// worker's recorder, so the next chunk goes out without waiting for them.
// When the target connection closed after refusing a message, sendChunk
// returns errTargetClosed and the messages it did not get to.
func (p *pass) sendChunk(src, tgt *conn, c chunk, filter flagFilter) (*batch, []*srcMsg, error) {
	w := c.w
	byUID := make(map[uint32]*srcMsg, len(c.msgs))
	var set imap.UIDSet
	for _, m := range c.msgs {
		byUID[m.uid] = m
		if m.body == nil {
			set.AddNum(imap.UID(m.uid))
		}
	}
	// From here on the batch goes to the recorder, which settles every
	// pending record of the chunk, sent or not.
	b := &batch{w: w, tgt: tgt, msgs: c.msgs, results: make(chan appended, len(c.msgs))}
	if !p.e.opts.NoMultiAppend && !p.singleAppends.Load() && imapconn.CanMultiAppend(tgt.Client) {
		b.multi = &multiSend{}
		defer p.endMulti(b)
	}

	// Messages the scan fetched whole go first, from memory.
	sent := map[uint32]bool{}
	var copyErr error
	for _, m := range c.msgs {
		if m.body == nil || copyErr != nil || p.throttled.Load() {
			continue
		}
		body := m.body
		m.body = nil
		sent[m.uid] = true
		copyErr = p.startAppend(tgt, w, m, bytes.NewReader(body), int64(len(body)), filter, b)
		p.givePrefetch(int64(len(body)))
	}
	if copyErr != nil || len(set) == 0 {
		return p.chunkSent(c, b, sent, copyErr, nil)
	}

	// EXAMINE and FETCH in one round trip.
	waitSel := src.selectAsync(w.plan.Source, true, false)
	section := &imap.FetchItemBodySection{Peek: true}
	fetch := src.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
	sel, err := waitSel()
	if err != nil {
		fetch.Close()
		return b, nil, fmt.Errorf("folder %q: source EXAMINE: %w", w.plan.Source, err)
	}
	if sel.UIDValidity != w.status.UIDValidity {
		fetch.Close()
		return b, nil, imapconn.MakeTemporary(fmt.Errorf("folder %q: %w", w.plan.Source, errUIDValidityChanged))
	}

	for copyErr == nil && !p.throttled.Load() {
		msg := fetch.Next()
		if msg == nil {
			break
		}
		copyErr = p.appendOne(tgt, w, msg, byUID, filter, b, sent)
	}
	return p.chunkSent(c, b, sent, copyErr, fetch.Close())
}

// chunkSent is sendChunk's outcome: with errTargetClosed, the messages not
// sent yet, to go on with on a new connection.
func (p *pass) chunkSent(c chunk, b *batch, sent map[uint32]bool, copyErr, fetchErr error) (*batch, []*srcMsg, error) {
	switch {
	case errors.Is(copyErr, errTargetClosed):
		var rest []*srcMsg
		for _, m := range c.msgs {
			if !sent[m.uid] {
				rest = append(rest, m)
			}
		}
		return b, rest, copyErr
	case copyErr != nil:
		return b, nil, fmt.Errorf("folder %q: %w", c.w.plan.Source, copyErr)
	case fetchErr != nil:
		return b, nil, fmt.Errorf("folder %q: source FETCH: %w", c.w.plan.Source, fetchErr)
	}
	return b, nil, nil
}

// recorder settles a worker's batches in order, while the worker sends
// the next ones.
type recorder struct {
	p     *pass
	ch    chan *batch
	done  chan struct{}
	mu    gosync.Mutex
	first error
}

func (p *pass) newRecorder() *recorder {
	r := &recorder{p: p, ch: make(chan *batch, 16), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for b := range r.ch {
			if err := r.record(b); err != nil {
				r.mu.Lock()
				if r.first == nil {
					r.first = err
				}
				r.mu.Unlock()
			}
		}
	}()
	return r
}

func (r *recorder) add(b *batch) { r.ch <- b }

// err is the first error met so far: the worker stops sending.
func (r *recorder) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first
}

// finish waits for every batch to be settled.
func (r *recorder) finish() error {
	close(r.ch)
	<-r.done
	return r.err()
}

func (r *recorder) record(b *batch) error {
	p := r.p
	b.waits.Wait()
	close(b.results)
	var outcomes []appended
	for o := range b.results {
		outcomes = append(outcomes, o)
	}
	if err := p.recordOutcomes(b.w, b.msgs, outcomes); err != nil {
		return err
	}
	for _, o := range outcomes {
		if o.err != nil && !isBatchRefused(o.err) && imapconn.IsTemporary(o.err) {
			// The connection broke with replies outstanding: what arrived
			// is resolved by the recovery of the retried pass.
			return fmt.Errorf("folder %q: append uid %d: %w", b.w.plan.Source, o.m.uid, o.err)
		}
	}
	if p.e.opts.Exchange {
		return p.flagAfterAppend(b.tgt, b.w, outcomes)
	}
	return nil
}

var errTargetClosed = errors.New("target closed the connection after refusing a message")

// drop closes a connection of the pass and gives its slot back, unless
// closeConns has taken it already (a spare pair whose other half was still
// logging in when the pass ended).
func (p *pass) drop(c *conn) {
	p.mu.Lock()
	i := slices.Index(p.conns, c)
	if i >= 0 {
		p.conns = slices.Delete(p.conns, i, i+1)
	}
	p.mu.Unlock()
	if i < 0 {
		return
	}
	c.Close()
	c.release()
}

// reconnectTarget replaces a target connection that the server or the
// client library closed.
func (p *pass) reconnectTarget(old *conn) (*conn, error) {
	p.drop(old)
	c, err := p.connectTarget(p.ctx, true)
	if err != nil {
		return nil, err
	}
	if old == p.tgt {
		p.tgt = c
	}
	return c, nil
}

// appendOne streams one fetched message into an APPEND. The tagged reply is
// awaited later, so the next message's FETCH data flows meanwhile.
func (p *pass) appendOne(tgt *conn, w *folderWork, msg *imapclient.FetchMessageData, byUID map[uint32]*srcMsg, filter flagFilter, b *batch, sent map[uint32]bool) error {
	var uid uint32
	var spool *os.File
	defer func() {
		if spool != nil {
			spool.Close()
			os.Remove(spool.Name())
		}
	}()
	var body io.Reader
	var size int64
	for {
		item := msg.Next()
		if item == nil {
			break
		}
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			uid = uint32(it.UID)
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil {
				continue
			}
			size = it.Literal.Size()
			if uid != 0 {
				m := byUID[uid]
				if m == nil {
					continue
				}
				sent[m.uid] = true
				return p.startAppend(tgt, w, m, it.Literal, size, filter, b)
			}
			// The body came before the UID: park it on disk, not in memory.
			f, err := os.CreateTemp("", "mailferry-*.eml")
			if err != nil {
				return err
			}
			spool = f
			if _, err := io.Copy(f, it.Literal); err != nil {
				return fmt.Errorf("source FETCH body: %w", err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			body = f
		}
	}
	if m := byUID[uid]; m != nil && body != nil {
		sent[m.uid] = true
		return p.startAppend(tgt, w, m, body, size, filter, b)
	}
	return nil
}

func (p *pass) startAppend(tgt *conn, w *folderWork, m *srcMsg, body io.Reader, size int64, filter flagFilter, b *batch) error {
	flags, dropped := filter.apply(p.e.appendFlags(m.flags))
	if dropped > 0 {
		p.mu.Lock()
		w.res.KeywordsDropped += dropped
		p.mu.Unlock()
	}
	if p.e.opts.DisarmReadReceipts {
		body = disarmReceipts(body)
	}
	if b.multi != nil {
		return p.multiAppend(tgt, m, body, size, &imap.AppendOptions{Flags: flags, Time: m.date}, b)
	}
	cmd := tgt.Append(w.plan.Target, size, &imap.AppendOptions{Flags: flags, Time: m.date})
	_, err := io.Copy(cmd, body)
	if cerr := cmd.Close(); err == nil {
		err = cerr
	}
	var refused *imap.Error
	if errors.As(err, &refused) {
		// The server answered NO instead of "+": this message only.
		b.results <- appended{m: m, err: err}
		select {
		case <-tgt.Closed():
			return errTargetClosed
		default:
			return nil
		}
	}
	if err != nil {
		// Some or all of the message may have reached the server, which
		// may still store it: it stays pending, for recovery to look for.
		b.results <- appended{m: m, err: err}
		return fmt.Errorf("append uid %d: %w", m.uid, err)
	}
	m.size = size
	// Waiting for the tagged reply must not hold up the next message.
	b.waits.Go(func() {
		data, err := cmd.Wait()
		if _, ok := imapconn.ThrottleDelay(err); ok {
			p.throttled.Store(true) // no point sending more: stop at once
		}
		b.results <- appended{m: m, data: data, err: err}
	})
	return nil
}

// multiAppend adds a message to the chunk's MULTIAPPEND, starting one
// where none is under way or the last is full.
func (p *pass) multiAppend(tgt *conn, m *srcMsg, body io.Reader, size int64, opts *imap.AppendOptions, b *batch) error {
	ms := b.multi
	if ms.cmd != nil && (len(ms.msgs) >= multiAppendMessages || ms.bytes+size > multiAppendBytes) {
		p.endMulti(b)
	}
	if ms.cmd == nil {
		cmd, err := imapconn.StartMultiAppend(tgt.Client, b.w.plan.Target)
		if err != nil {
			b.results <- appended{m: m, err: err}
			return fmt.Errorf("append uid %d: %w", m.uid, err)
		}
		ms.cmd = cmd
	}
	if err := ms.cmd.Append(body, size, opts); err != nil {
		// The command is cut off with the connection: the server stores
		// none of it, and the messages stay pending for recovery.
		b.results <- appended{m: m, err: err}
		p.endMulti(b)
		return fmt.Errorf("append uid %d: %w", m.uid, err)
	}
	m.size = size
	ms.msgs = append(ms.msgs, m)
	ms.bytes += size
	return nil
}

// endMulti ends the chunk's MULTIAPPEND under way, if any; its reply is
// awaited like an APPEND's, without holding up the next command.
func (p *pass) endMulti(b *batch) {
	ms := b.multi
	if ms.cmd == nil {
		return
	}
	cmd, msgs := ms.cmd, ms.msgs
	ms.cmd, ms.msgs, ms.bytes = nil, nil, 0
	cmd.Close() // a failure comes again from Wait
	b.waits.Go(func() {
		data, err := cmd.Wait()
		_, throttled := imapconn.ThrottleDelay(err)
		if throttled {
			p.throttled.Store(true)
		}
		for i, m := range msgs {
			switch {
			case err != nil && isRefusal(err) && !throttled:
				b.results <- appended{m: m, err: &batchRefused{err}}
			case err != nil:
				b.results <- appended{m: m, err: err}
			case len(data.UIDs) == len(msgs):
				b.results <- appended{m: m, data: &imap.AppendData{UID: data.UIDs[i], UIDValidity: data.UIDValidity}}
			default:
				b.results <- appended{m: m} // no APPENDUID: recovery finds it
			}
		}
	})
}

// flagAfterAppend sets \Flagged with STORE on the messages just appended
// with it: Outlook may not show a flag given at APPEND.
func (p *pass) flagAfterAppend(tgt *conn, w *folderWork, outcomes []appended) error {
	var set imap.UIDSet
	for _, o := range outcomes {
		if o.err == nil && o.data != nil && o.data.UID != 0 && slices.ContainsFunc(o.m.flags, func(f string) bool {
			return strings.EqualFold(f, string(imap.FlagFlagged))
		}) {
			set.AddNum(o.data.UID)
		}
	}
	if len(set) == 0 {
		return nil
	}
	if _, err := tgt.selectFolder(w.plan.Target, false, false); err != nil {
		return fmt.Errorf("target SELECT %q: %w", w.plan.Target, err)
	}
	err := tgt.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	if err != nil {
		return fmt.Errorf("target STORE \\Flagged in %q: %w", w.plan.Target, err)
	}
	tgt.unselect() // the worker appends on this connection
	return nil
}

// recordOutcomes turns a chunk's APPEND replies into records.
func (p *pass) recordOutcomes(w *folderWork, msgs []*srcMsg, outcomes []appended) error {
	done := map[uint32]appended{}
	for _, o := range outcomes {
		done[o.m.uid] = o
	}
	var copied, failed int
	var bytes int64
	var refused []appended
	var pending []store.Message // for the recovery after the copy phase
	var retry []*srcMsg
	err := p.e.store.Update(func(tx store.Tx) error {
		for _, m := range msgs {
			o, ok := done[m.uid]
			e := store.Message{UID: m.uid, State: store.Pending, Flags: m.flags, Identity: m.identity, Size: m.size, Date: m.date}
			switch {
			case !ok:
				// Never sent: expunged from the source meanwhile, or the
				// chunk broke off. The message is new again next pass.
				if err := tx.DeleteMessage(p.mb.Email, w.plan.Source, w.status.UIDValidity, m.uid); err != nil {
					return err
				}
				continue
			case isBatchRefused(o.err):
				// Not stored: it goes again, alone, later in the pass.
				if err := tx.DeleteMessage(p.mb.Email, w.plan.Source, w.status.UIDValidity, m.uid); err != nil {
					return err
				}
				retry = append(retry, m)
				continue
			case o.err != nil && isSizeRefusal(o.err):
				e.State, e.Reason, e.Subject = store.Skipped, ReasonTargetLimit+": "+o.err.Error(), m.subject
				refused = append(refused, o)
			case o.err != nil && isRefusal(o.err) && !imapconn.IsTemporary(o.err):
				p.log.Error("target refused message", zap.String("folder", w.plan.Source), zap.Uint32("uid", m.uid), zap.NamedError("err", o.err))
				failed++
				if err := tx.DeleteMessage(p.mb.Email, w.plan.Source, w.status.UIDValidity, m.uid); err != nil {
					return err
				}
				continue
			case o.err != nil:
				// The connection broke: the message may or may not be there.
				pending = append(pending, e)
				continue
			case o.data != nil && o.data.UID != 0 && (o.data.UIDValidity == 0 || o.data.UIDValidity == w.tgtUIDValidity):
				e.State, e.TgtUID = store.Copied, uint32(o.data.UID)
				copied++
				bytes += m.size
			default:
				// No APPENDUID: recovery finds it after the copy phase.
				pending = append(pending, e)
				copied++
				bytes += m.size
				continue
			}
			if err := tx.PutMessage(p.mb.Email, w.plan.Source, w.status.UIDValidity, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(retry) > 0 {
		p.singleAppends.Store(true)
	}
	p.mu.Lock()
	p.retrySingly = append(p.retrySingly, retry...)
	w.pendings += len(pending) - len(msgs)
	for _, e := range pending {
		w.entries[e.UID] = &e
	}
	w.res.Copied += copied
	w.res.Bytes += bytes
	w.res.Failed += failed
	w.failed += failed
	p.res.Copied += copied
	p.res.Bytes += bytes
	p.res.Failed += failed
	p.mu.Unlock()
	for _, o := range refused {
		p.skipped(o.m, ReasonTargetLimit+": "+o.err.Error())
	}
	for _, o := range outcomes {
		if o.err == nil {
			p.e.opts.Progress.MessageCopied(p.mb.Email, o.m.size)
		}
	}
	return nil
}

// isRefusal reports a tagged NO or BAD: the server answered, and did not
// store the message. Anything else (a broken connection, a cancelled
// pass) leaves it unknown.
func isRefusal(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && (ie.Type == imap.StatusResponseTypeNo || ie.Type == imap.StatusResponseTypeBad)
}

// isSizeRefusal reports a target refusing a message for its size.
func isSizeRefusal(err error) bool {
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo {
		return false
	}
	if ie.Code == imap.ResponseCodeTooBig || ie.Code == imap.ResponseCodeLimit {
		return true
	}
	t := strings.ToLower(ie.Text)
	return strings.Contains(t, "too large") || strings.Contains(t, "too big") || strings.Contains(t, "exceeds")
}
