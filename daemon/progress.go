package daemon

import (
	"io"
	"strconv"
	gosync "sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	mfsync "github.com/mailferry/mailferry/sync"
)

// barProgress draws a bar per active mailbox and an overall one (messages,
// bytes, rate, ETA) with mpb, a maintained multi-bar library that also
// lets log lines print above the bars.
type barProgress struct {
	p     *mpb.Progress
	mu    gosync.Mutex
	total *mpb.Bar
	bars  map[string]*mpb.Bar
	sum   int64
}

func newBarProgress(w io.Writer, mailboxes int) *barProgress {
	p := mpb.New(mpb.WithOutput(w), mpb.WithAutoRefresh())
	b := &barProgress{p: p, bars: map[string]*mpb.Bar{}}
	b.total = p.AddBar(0,
		mpb.BarPriority(1<<30),
		mpb.PrependDecorators(decor.Name("all mailboxes ", decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
	)
	return b
}

// Write prints log lines above the bars.
func (b *barProgress) Write(p []byte) (int, error) { return b.p.Write(p) }

func (b *barProgress) MailboxPlanned(mailbox string, messages int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sum += bytes
	b.total.SetTotal(b.sum, false)
	b.bars[mailbox] = b.p.AddBar(bytes,
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(mailbox, decor.WCSyncSpaceR), decor.Name(strconv.Itoa(messages)+" msgs ", decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace)),
	)
}

func (b *barProgress) MessageCopied(mailbox string, bytes int64) {
	b.mu.Lock()
	bar := b.bars[mailbox]
	b.mu.Unlock()
	if bar != nil {
		bar.IncrInt64(bytes)
	}
	b.total.IncrInt64(bytes)
}

func (b *barProgress) MailboxDone(r *mfsync.MailboxResult) {
	b.mu.Lock()
	bar := b.bars[r.Mailbox]
	delete(b.bars, r.Mailbox)
	b.mu.Unlock()
	if bar != nil {
		bar.Abort(true)
	}
}

func (b *barProgress) finish() {
	b.total.SetTotal(-1, true)
	b.p.Wait()
}
