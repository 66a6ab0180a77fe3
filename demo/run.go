package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailferry/mailferry/store"
	mfsync "github.com/mailferry/mailferry/sync"
)

// Result is what the demo's two passes did.
type Result struct {
	// First is the migration; Second is the pass after it, which finds
	// nothing changed and copies nothing.
	First, Second *mfsync.Summary
	// Source and Target are the servers' addresses (stopped by the time Run
	// returns).
	Source, Target string
}

// Run starts the demo servers, migrates every mailbox once with the sync
// engine (reporting to opts.Progress), makes a second pass that should
// copy nothing, calls opts.AfterSync, waits for ctx if opts.Keep, stops the
// servers and returns both summaries. It writes one line per step to w.
//
// An error means the demo could not run (a server did not start, ctx
// ended during a pass, AfterSync failed); what the passes copied, skipped
// or failed is in the summaries.
func Run(ctx context.Context, w io.Writer, opts Options) (*Result, error) {
	opts.setDefaults()
	s, err := Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	res := &Result{Source: s.Source, Target: s.Target}

	fmt.Fprintf(w, "Source: an in-memory IMAP server like an old Dovecot host at %s: %d users, %d folders, %d messages (%s).\n",
		s.SourceURL(), len(s.Mailboxes), s.Folders, s.Messages, formatBytes(s.Bytes))
	fmt.Fprintf(w, "Target: an in-memory IMAP server like Office 365 at %s, with Exchange's folders %s.\n",
		s.TargetURL(), strings.Join(TargetFolders, ", "))

	st := opts.Store
	if st == nil {
		st = store.NewMemory()
	}
	engineOpts := mfsync.Options{Source: s.SourceEndpoint(), Target: s.TargetEndpoint(), Log: opts.Log}
	first := engineOpts
	first.Progress = opts.Progress
	fmt.Fprintf(w, "First pass: migrating %d mailboxes; Sent, Trash and Junk/Spam become Sent Items, Deleted Items and Junk Email …\n", len(s.Mailboxes))
	res.First = mfsync.New(st, first).Run(ctx, s.Mailboxes)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "First pass done in %s: %s.\n", res.First.Duration.Round(time.Millisecond), describe(res.First))
	printFailures(w, res.First)

	// The second pass, on the same store, has nothing for progress bars.
	fmt.Fprintln(w, "Second pass: nothing changed on the source, so nothing should be copied …")
	res.Second = mfsync.New(st, engineOpts).Run(ctx, s.Mailboxes)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "Second pass done in %s: %s.\n", res.Second.Duration.Round(time.Millisecond), describe(res.Second))
	printFailures(w, res.Second)
	if res.Second.Copied > 0 {
		fmt.Fprintf(w, "  The second pass should have copied nothing: that is a bug in mailferry, please report it.\n")
	}

	if opts.AfterSync != nil {
		if err := opts.AfterSync(ctx, s, w); err != nil {
			return res, err
		}
	}
	if opts.Keep {
		fmt.Fprintf(w, "The servers keep running until interrupted (Ctrl-C). Plaintext IMAP, any mail client:\n")
		for _, mb := range s.Mailboxes {
			fmt.Fprintf(w, "  %s  source %s password %s, target %s password %s\n",
				mb.Email, s.Source, mb.Password.Reveal(), s.Target, mb.TargetPassword.Reveal())
		}
		<-ctx.Done()
	}
	if err := s.Close(); err != nil {
		return res, fmt.Errorf("stopping the demo servers: %w", err)
	}
	return res, nil
}

// describe sums up a pass in words.
func describe(s *mfsync.Summary) string {
	var moved, deleted, flags, dropped int
	for _, m := range s.Mailboxes {
		for _, f := range m.Folders {
			moved += f.Moved
			deleted += f.Deleted
			flags += f.FlagsUpdated
			dropped += f.KeywordsDropped
		}
	}
	parts := []string{fmt.Sprintf("%d messages (%s) copied", s.Copied, formatBytes(s.Bytes))}
	for _, p := range []struct {
		n    int
		what string
	}{{moved, "moved"}, {deleted, "deleted"}, {flags, "with flags updated"}, {s.Skipped, "skipped"}, {s.Failed, "failed"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	if dropped > 0 {
		parts = append(parts, fmt.Sprintf("%d keywords the target does not keep left off", dropped))
	}
	if s.FailedMailboxes > 0 {
		parts = append(parts, fmt.Sprintf("%d mailboxes failed", s.FailedMailboxes))
	}
	return strings.Join(parts, ", ")
}

func printFailures(w io.Writer, s *mfsync.Summary) {
	for _, m := range s.Mailboxes {
		if m.Error != "" {
			fmt.Fprintf(w, "  %s: %s\n", m.Mailbox, m.Error)
		}
	}
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
