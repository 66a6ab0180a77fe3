package proxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"go.uber.org/zap"
)

// idlePollInterval is how often an IDLE is turned into NOOPs upstream when
// the upstream has no IDLE.
const idlePollInterval = 30 * time.Second

func (s *session) logger() *zap.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log
}

// onExpunge runs on go-imap's reader goroutine for an EXPUNGE that belongs
// to no EXPUNGE command of ours (MOVE's, other sessions'). The tracker
// calls never block.
func (s *session) onExpunge(seq uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sel != nil {
		s.queueExpungeLocked(s.sel, seq)
	}
}

func (s *session) queueExpungeLocked(sel *selection, seq uint32) {
	if seq == 0 || seq > sel.count {
		// The tracker would panic; the upstream broke the protocol.
		go s.protocolError(fmt.Errorf("upstream sent EXPUNGE %d in a mailbox of %d messages", seq, sel.count))
		return
	}
	sel.mt.QueueExpunge(seq)
	sel.count--
	if sel.fresh > sel.count {
		sel.fresh = sel.count
	}
	sel.epoch++
	sel.pendingExpunges++
}

// onMailbox runs on go-imap's reader goroutine for EXISTS and FLAGS outside
// a SELECT.
func (s *session) onMailbox(data *imapclient.UnilateralDataMailbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sel := s.sel
	if sel == nil {
		return
	}
	if data.NumMessages != nil {
		n := *data.NumMessages
		switch {
		case n < sel.count:
			go s.protocolError(fmt.Errorf("upstream sent EXISTS %d after %d without EXPUNGE", n, sel.count))
			return
		case n > sel.count:
			sel.mt.QueueNumMessages(n)
			sel.fresh += n - sel.count
			sel.count = n
		}
	}
	if data.Flags != nil {
		sel.mt.QueueMailboxFlags(data.Flags)
	}
}

// onFetch runs in a goroutine of its own (go-imap starts one per unilateral
// FETCH), so it may race an EXPUNGE parsed after the FETCH: an update that
// saw an EXPUNGE go by while it read its items is dropped rather than
// applied to the wrong message. The client sees the flags at its next FETCH
// anyway.
func (s *session) onFetch(msg *imapclient.FetchMessageData) {
	defer func() {
		if v := recover(); v != nil {
			s.logger().Error("panic handling an upstream FETCH", zap.Any("panic", v), zap.Stack("stack"))
		}
	}()
	s.mu.Lock()
	sel := s.sel
	var epoch uint64
	if sel != nil {
		epoch = sel.epoch
	}
	s.mu.Unlock()
	var (
		flags     []imap.Flag
		haveFlags bool
		uid       imap.UID
	)
	for item := msg.Next(); item != nil; item = msg.Next() {
		switch item := item.(type) {
		case imapclient.FetchItemDataFlags:
			flags, haveFlags = item.Flags, true
		case imapclient.FetchItemDataUID:
			uid = item.UID
		}
	}
	if sel == nil || !haveFlags {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sel != sel || sel.epoch != epoch || msg.SeqNum == 0 || msg.SeqNum > sel.count {
		s.log.Debug("dropped an upstream flag update that may be stale", zap.Uint32("seq", msg.SeqNum))
		return
	}
	sel.mt.QueueMessageFlags(msg.SeqNum, uid, flags, nil)
}

// Poll is called after each command (but SELECT, LOGIN, ...): it asks the
// upstream for news when the command did not talk to it (NOOP, CHECK), then
// hands the queued updates to the client.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) (err error) {
	defer s.guard("POLL", &err)
	if !s.usedUpstream.Swap(false) {
		up := s.upstream()
		s.usedUpstream.Store(false)
		s.waitStart()
		err := up.Noop().Wait()
		s.waitEnd()
		if err != nil {
			var ie *imap.Error
			if !errors.As(err, &ie) {
				// imapserver ends the connection at once when Poll fails:
				// say BYE first.
				s.terminate("Connection to the mail server lost", err)
			}
			return s.upErr(err)
		}
	}
	return s.flush(w, allowExpunge)
}

// flush writes the queued updates of the selected mailbox to the client.
func (s *session) flush(w *imapserver.UpdateWriter, allowExpunge bool) error {
	s.mu.Lock()
	sel := s.sel
	if sel == nil {
		s.mu.Unlock()
		return nil
	}
	pending := sel.pendingExpunges
	s.mu.Unlock()
	if err := sel.st.Poll(w, allowExpunge); err != nil {
		return err
	}
	s.mu.Lock()
	if allowExpunge {
		sel.pendingExpunges -= pending
	}
	if sel.pendingExpunges == 0 {
		// Nothing held back: every EXISTS went out too.
		sel.fresh = 0
	}
	s.mu.Unlock()
	return nil
}

// Idle idles upstream and hands the upstream's updates to the client as they
// come, until the client's DONE (stop) or the upstream's end.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) (err error) {
	defer s.guard("IDLE", &err)
	up := s.upstream()
	sel := s.selected()

	trackerStop := make(chan struct{})
	trackerDone := make(chan error, 1)
	if sel != nil {
		go func() {
			defer func() {
				if v := recover(); v != nil {
					s.logger().Error("panic writing updates while idling", zap.Any("panic", v), zap.Stack("stack"))
					trackerDone <- errInternal
				}
			}()
			trackerDone <- sel.st.Idle(w, trackerStop)
		}()
	}
	defer func() {
		close(trackerStop)
		if sel != nil {
			if terr := <-trackerDone; terr != nil && err == nil {
				err = terr
			}
		}
	}()

	if !s.upCaps.Has(imap.CapIdle) {
		return s.idleByNoop(up, stop)
	}
	s.waitStart()
	idle, err := up.Idle()
	s.waitEnd()
	if err != nil {
		return s.upErr(err)
	}
	select {
	case <-stop:
	case <-up.Closed():
	case err = <-trackerDone:
		trackerDone <- err // for the deferred receive
	}
	if err := idle.Close(); err != nil {
		return s.upErr(err)
	}
	s.waitStart()
	werr := idle.Wait()
	s.waitEnd()
	if werr != nil {
		return s.upErr(werr)
	}
	return err
}

// idleByNoop stands in for IDLE with a NOOP upstream now and then.
func (s *session) idleByNoop(up *imapclient.Client, stop <-chan struct{}) error {
	t := time.NewTicker(idlePollInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-up.Closed():
			return errUpstreamLost
		case <-t.C:
			s.waitStart()
			err := up.Noop().Wait()
			s.waitEnd()
			if err != nil {
				return s.upErr(err)
			}
		}
	}
}

// clientSeq maps an upstream sequence number in a FETCH, STORE or SEARCH
// answer to the client's, or 0 for a message the client does not know yet.
func (s *session) clientSeq(sel *selection, seq uint32) uint32 {
	s.mu.Lock()
	known := sel.count - sel.fresh
	s.mu.Unlock()
	if seq == 0 || seq > known {
		return 0
	}
	return sel.st.EncodeSeqNum(seq)
}

// upstreamNumSet maps a client's number set to the upstream's. UIDs are the
// same on both sides; sequence numbers differ only while EXPUNGEs wait in
// the tracker for the client (the upstream sent them where RFC 3501 says it
// must not), and then each range is mapped through the tracker.
// ok is false when none of the messages the client named is left.
func (s *session) upstreamNumSet(sel *selection, set imap.NumSet) (_ imap.NumSet, ok bool) {
	seqs, isSeq := set.(imap.SeqSet)
	if !isSeq {
		return set, true
	}
	s.mu.Lock()
	pending := sel.pendingExpunges
	clientMax := sel.count - sel.fresh + uint32(pending)
	s.mu.Unlock()
	if pending == 0 || len(seqs) == 0 {
		return seqs, true
	}
	var out imap.SeqSet
	for _, r := range seqs {
		lo, hi := r.Start, r.Stop
		if lo == 0 {
			lo = clientMax
		}
		if hi == 0 {
			hi = clientMax
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		hi = min(hi, clientMax)
		// Messages expunged meanwhile fall out; the rest stay contiguous.
		var ulo, uhi uint32
		for x := lo; x <= hi && x != 0; x++ {
			if u := sel.st.DecodeSeqNum(x); u != 0 {
				ulo = u
				break
			}
		}
		for x := hi; x >= lo && x != 0; x-- {
			if u := sel.st.DecodeSeqNum(x); u != 0 {
				uhi = u
				break
			}
		}
		if ulo != 0 && uhi != 0 {
			out.AddRange(ulo, uhi)
		}
	}
	return out, len(out) > 0
}
