package sync

import (
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
)

// Prefetch: a delta scan fetches the first prefetchSize bytes of every new
// message with its metadata, while the folder is examined anyway, when the
// engine's budget (prefetchBudget bytes held at once, by all passes) covers
// that for all of them. A message that fits whole is then copied from
// memory: the copy phase saves an EXAMINE and a FETCH per folder (a round
// trip each to a distant source), and on a small machine the source's work
// is done while the target is idle. Memory stays bounded by the budget,
// whatever the messages' sizes and the parallelism.
const (
	prefetchSize   = 64 << 10
	prefetchBudget = 8 << 20
)

var (
	prefetchSection  = &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: prefetchSize}}
	newItemsPrefetch = imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true,
		BodySection: []*imap.FetchItemBodySection{identitySection, prefetchSection}}
)

// budget is a number of bytes that holders take and give back.
type budget struct{ left atomic.Int64 }

func (b *budget) take(n int64) bool {
	for {
		left := b.left.Load()
		if left < n {
			return false
		}
		if b.left.CompareAndSwap(left, left-n) {
			return true
		}
	}
}

// takePrefetch takes n bytes of the engine's prefetch budget for the pass,
// if it has them.
func (p *pass) takePrefetch(n int64) bool {
	if !p.e.prefetch.take(n) {
		return false
	}
	p.prefetched.Add(n)
	return true
}

// givePrefetch gives n bytes back; the pass gives back what it still holds
// when it ends.
func (p *pass) givePrefetch(n int64) {
	p.prefetched.Add(-n)
	p.e.prefetch.left.Add(n)
}
