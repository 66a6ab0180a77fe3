package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/store"
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

// oneShot is what sync and verify share: validated options, the mailbox
// list, a logger, the store and an engine.
type oneShot struct {
	log   *zap.Logger
	store store.Store
	// storeReady waits for the store, which opens while the engine logs
	// in, and returns the error that kept it from opening.
	storeReady func() error
	engine     *mfsync.Engine
	mailboxes  []config.Mailbox
	listErr    error // bad rows of the mailbox list, already logged
	bars       *barProgress
}

func setup(o *config.Options, out Streams, withBars bool) (*oneShot, error) {
	if err := o.Validate(); err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: err}
	}
	s := &oneShot{}
	var le *config.ListError
	s.mailboxes, s.listErr = config.LoadMailboxes(o.Mailboxes)
	if s.listErr != nil && !errors.As(s.listErr, &le) {
		return nil, Fatal(s.listErr)
	}
	logOut := out.Stderr
	if withBars && out.interactive() {
		s.bars = newBarProgress(out.Stderr, len(s.mailboxes))
		logOut = s.bars
	}
	var err error
	if s.log, err = NewLogger(logOut, o.LogLevel, out.interactive()); err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: err}
	}
	if s.listErr != nil {
		// Bad rows are reported and left out; the rest still runs.
		s.log.Error("mailbox list has errors; those rows are skipped", zap.NamedError("err", s.listErr))
	}
	opts, err := engineOptions(o, s.log)
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: err}
	}
	if err := dataDir(o.Data); err != nil {
		return nil, Fatal(err)
	}
	s.store, s.storeReady = store.Async(func() (store.Store, error) { return openStore(o.Data, s.log) })
	if s.bars != nil {
		opts.Progress = s.bars
	}
	s.engine = mfsync.New(s.store, opts)
	return s, nil
}

func (s *oneShot) close() {
	s.store.Close()
	s.log.Sync()
}

// Sync is `mailferry sync`: one pass over every mailbox of the list, then a
// summary on stdout (a table, or JSON with --json) and the CSV report.
func Sync(ctx context.Context, o *config.Options, out Streams) error {
	s, err := setup(o, out, true)
	if err != nil {
		return err
	}
	defer s.close()
	sum := s.engine.Run(ctx, s.mailboxes)
	if s.bars != nil {
		s.bars.finish()
	}
	if err := s.storeReady(); err != nil {
		return Fatal(err)
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
	if !sum.Complete() || s.listErr != nil {
		return &ExitError{Code: ExitIncomplete, Err: fmt.Errorf("pass finished with %d skipped, %d failed messages and %d failed mailboxes",
			sum.Skipped, sum.Failed, sum.FailedMailboxes)}
	}
	return nil
}

// Verify is `mailferry verify`: compares every mailbox's folders on source
// and target and lists missing and unexpected messages, changing nothing.
func Verify(ctx context.Context, o *config.Options, out Streams) error {
	s, err := setup(o, out, false)
	if err != nil {
		return err
	}
	defer s.close()
	var results []*mfsync.VerifyResult
	equal := s.listErr == nil
	for _, mb := range s.mailboxes {
		r := s.engine.Verify(ctx, mb)
		if r.Err != nil {
			s.log.Error("verify failed", zap.String("mailbox", mb.Email), zap.NamedError("err", r.Err))
		}
		equal = equal && r.Equal()
		results = append(results, r)
	}
	if err := s.storeReady(); err != nil {
		return Fatal(err)
	}
	if o.JSON {
		err = writeVerifyJSON(out.Stdout, results)
	} else {
		err = writeVerifyTable(out.Stdout, results)
	}
	if err != nil {
		return Fatal(err)
	}
	if !equal {
		return &ExitError{Code: ExitIncomplete, Err: errors.New("source and target differ")}
	}
	return nil
}

// Preflight is `mailferry preflight`: every mailbox is checked, nothing is
// copied; a table (or JSON) with one verdict per mailbox. Exit code 3 when
// a mailbox cannot be migrated.
func Preflight(ctx context.Context, o *config.Options, out Streams) error {
	s, err := setup(o, out, false)
	if err != nil {
		return err
	}
	defer s.close()
	var results []*mfsync.PreflightResult
	blocked := 0
	for _, mb := range s.mailboxes {
		r := s.engine.Preflight(ctx, mb)
		if r.Verdict == mfsync.VerdictBlocked {
			blocked++
		}
		results = append(results, r)
	}
	if err := s.storeReady(); err != nil {
		return Fatal(err)
	}
	if o.JSON {
		err = writeJSON(out.Stdout, struct {
			Version   int                       `json:"version"`
			Mailboxes []*mfsync.PreflightResult `json:"mailboxes"`
		}{1, results})
	} else {
		err = writePreflightTable(out.Stdout, results)
	}
	if err != nil {
		return Fatal(err)
	}
	if blocked > 0 || s.listErr != nil {
		return &ExitError{Code: ExitIncomplete, Err: fmt.Errorf("%d of %d mailboxes cannot be migrated", blocked, len(results))}
	}
	return nil
}
