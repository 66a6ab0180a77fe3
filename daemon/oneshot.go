package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	mfsync "github.com/mailferry/mailferry/sync"
)

// Streams are where a command writes: results to Stdout, progress and
// diagnostics to Stderr.
type Streams struct {
	Stdout, Stderr io.Writer
}

// interactive reports whether stderr is a terminal worth drawing bars on.
func (s Streams) interactive() bool {
	f, ok := s.Stderr.(*os.File)
	return ok && isTerminal(f)
}

// Sync is `mailferry sync`: one pass over every mailbox of the list, then a
// summary on stdout (a table, or JSON with --json) and the CSV report.
func Sync(ctx context.Context, o *config.Options, out Streams) error {
	if err := o.Validate(); err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	mailboxes, listErr := config.LoadMailboxes(o.Mailboxes)
	var le *config.ListError
	if listErr != nil && !errors.As(listErr, &le) {
		return Fatal(listErr)
	}

	var bars *barProgress
	logOut := out.Stderr
	if out.interactive() {
		bars = newBarProgress(out.Stderr, len(mailboxes))
		logOut = bars
	}
	log, err := NewLogger(logOut, o.LogLevel, out.interactive())
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	defer log.Sync()
	if listErr != nil {
		// Bad rows are reported and left out; the rest still runs.
		log.Error("mailbox list has errors; those rows are skipped", zap.NamedError("err", listErr))
	}

	st, err := OpenStore(o.Data, log)
	if err != nil {
		return Fatal(err)
	}
	defer st.Close()
	opts, err := engineOptions(o, log)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	if bars != nil {
		opts.Progress = bars
	}
	sum := mfsync.New(st, opts).Run(ctx, mailboxes)
	if bars != nil {
		bars.finish()
	}

	if o.Report != "" {
		if err := WriteReportCSV(o.Report, sum); err != nil {
			return Fatal(err)
		}
	}
	if o.JSON {
		err = WriteSummaryJSON(out.Stdout, sum)
	} else {
		err = WriteSummaryTable(out.Stdout, sum)
	}
	if err != nil {
		return Fatal(err)
	}
	if ctx.Err() != nil {
		return Fatal(fmt.Errorf("interrupted: %w", ctx.Err()))
	}
	if !sum.Complete() || listErr != nil {
		return &ExitError{Code: ExitIncomplete, Err: fmt.Errorf("pass finished with %d skipped, %d failed messages and %d failed mailboxes",
			sum.Skipped, sum.Failed, sum.FailedMailboxes)}
	}
	return nil
}
