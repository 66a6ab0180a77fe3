package daemon

import (
	"context"

	"github.com/mailferry/mailferry/demo"
)

// Demo is `mailferry demo`: an in-memory source and target on loopback,
// a first pass with progress bars, a second pass that copies nothing, and
// the first pass's summary on stdout. With keep, the servers stay up until
// ctx is done, for a look with a mail client.
func Demo(ctx context.Context, out Streams, keep bool) error {
	log, err := NewLogger(out.Stderr, "warn", out.interactive())
	if err != nil {
		return Fatal(err)
	}
	opts := demo.Options{Log: log, Keep: keep}
	var bars *barProgress
	if out.interactive() {
		bars = newBarProgress(out.Stderr, 3)
		opts.Progress = bars
	}
	res, err := demo.Run(ctx, out.Stderr, opts)
	if bars != nil {
		bars.finish()
	}
	if err != nil && ctx.Err() == nil {
		return Fatal(err)
	}
	if res != nil && res.First != nil {
		return WriteSummaryTable(out.Stdout, res.First)
	}
	return nil
}
