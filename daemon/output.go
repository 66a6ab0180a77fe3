package daemon

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	mfsync "github.com/mailferry/mailferry/sync"
)

// summaryJSON is the stable --json form of a sync pass. Fields are only
// ever added.
type summaryJSON struct {
	Version int `json:"version"`
	*mfsync.Summary
	Complete bool `json:"complete"`
}

// WriteSummaryJSON prints the summary as JSON.
func WriteSummaryJSON(w io.Writer, s *mfsync.Summary) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(summaryJSON{Version: 1, Summary: s, Complete: s.Complete()})
}

// WriteSummaryTable prints one line per mailbox and a total line.
func WriteSummaryTable(w io.Writer, s *mfsync.Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tFOLDERS\tCOPIED\tSKIPPED\tFAILED\tBYTES\tTIME\tRESULT\t")
	for _, r := range s.Mailboxes {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%s\t%s\t\n", r.Mailbox, len(r.Folders), r.Copied, skipSummary(r),
			r.Failed, humanBytes(r.Bytes), r.Duration.Round(10*time.Millisecond), result(r))
	}
	fmt.Fprintf(tw, "TOTAL (%d mailboxes)\t\t%d\t%d\t%d\t%s\t%s\t%d failed\t\n", len(s.Mailboxes), s.Copied, s.Skipped, s.Failed,
		humanBytes(s.Bytes), s.Duration.Round(10*time.Millisecond), s.FailedMailboxes)
	return tw.Flush()
}

func result(r *mfsync.MailboxResult) string {
	switch {
	case r.Err != nil:
		return "failed: " + r.Error
	case r.OK():
		return "ok"
	}
	return "incomplete"
}

func skipSummary(r *mfsync.MailboxResult) string {
	by := r.SkippedBy()
	if len(by) == 0 {
		return "0"
	}
	var parts []string
	for reason, n := range by {
		short, _, _ := strings.Cut(reason, ":")
		parts = append(parts, fmt.Sprintf("%d %s", n, short))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// reportHeader is the CSV report's columns: one row per mailbox (folder
// empty), one per folder, one per skipped message.
var reportHeader = []string{"mailbox", "folder", "target_folder", "kind", "status", "copied", "skipped", "failed",
	"moved", "deleted", "flags_updated", "keywords_dropped", "bytes", "seconds", "uid", "date", "size", "subject", "reason"}

// WriteReportCSV writes the pass's report to path.
func WriteReportCSV(path string, s *mfsync.Summary) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := writeReportCSV(f, s); err != nil {
		f.Close()
		return fmt.Errorf("report %s: %w", path, err)
	}
	return f.Close()
}

func writeReportCSV(w io.Writer, s *mfsync.Summary) error {
	cw := csv.NewWriter(w)
	cw.Write(reportHeader)
	n := strconv.Itoa
	for _, r := range s.Mailboxes {
		status := "ok"
		if r.Err != nil {
			status = "failed"
		} else if !r.OK() {
			status = "incomplete"
		}
		cw.Write([]string{r.Mailbox, "", "", "mailbox", status, n(r.Copied), n(r.Skipped()), n(r.Failed), "", "", "", "",
			strconv.FormatInt(r.Bytes, 10), fmt.Sprintf("%.1f", r.Duration.Seconds()), "", "", "", "", r.Error})
		for _, f := range r.Folders {
			skipped := 0
			for _, c := range f.Skipped {
				skipped += c
			}
			status := "ok"
			if f.SkipReason != "" {
				status = "not copied"
			}
			cw.Write([]string{r.Mailbox, f.Source, f.Target, "folder", status, n(f.Copied), n(skipped), n(f.Failed), n(f.Moved),
				n(f.Deleted), n(f.FlagsUpdated), n(f.KeywordsDropped), strconv.FormatInt(f.Bytes, 10), "", "", "", "", "", f.SkipReason})
		}
		for _, it := range r.SkippedItems {
			cw.Write([]string{r.Mailbox, it.Folder, "", "skipped message", "skipped", "", "", "", "", "", "", "", "", "",
				strconv.FormatUint(uint64(it.UID), 10), it.Date.Format(time.RFC3339), strconv.FormatInt(it.Size, 10), it.Subject, it.Reason})
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeVerifyJSON(w io.Writer, results []*mfsync.VerifyResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Version   int                    `json:"version"`
		Mailboxes []*mfsync.VerifyResult `json:"mailboxes"`
	}{1, results})
}

// writeVerifyTable prints a line per folder and, below it, each missing or
// unexpected message.
func writeVerifyTable(w io.Writer, results []*mfsync.VerifyResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tFOLDER\tTARGET\tSOURCE\tON TARGET\tMISSING\tUNEXPECTED\tSKIPPED")
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\t\t\t\t\t\t\t\tfailed: %s\n", r.Mailbox, r.Error)
			continue
		}
		for _, f := range r.Folders {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", r.Mailbox, f.Source, f.Target, f.SourceCount, f.TargetCount,
				len(f.Missing), len(f.Unexpected), f.KnownSkipped)
			for _, m := range f.Missing {
				fmt.Fprintf(tw, "\t  missing\tuid %d\t%s\t%d B\t%s\n", m.UID, m.Date.Format(time.DateTime), m.Size, m.Subject)
			}
			for _, m := range f.Unexpected {
				fmt.Fprintf(tw, "\t  unexpected\tuid %d\t%s\t%d B\t%s\n", m.UID, m.Date.Format(time.DateTime), m.Size, m.Subject)
			}
		}
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writePreflightTable prints a verdict line per mailbox and its problems,
// warnings and oversized messages below it.
func writePreflightTable(w io.Writer, results []*mfsync.PreflightResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tVERDICT\tFOLDERS\tMESSAGES\tSIZE\tOVER SIZE\tTO COPY\tTO COPY SIZE")
	var blocked, warned int
	var bytes, toCopy int64
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%s\n", r.Mailbox, r.Verdict, len(r.Folders), r.Messages, humanBytes(r.Bytes),
			len(r.OverSize), r.ToCopy, humanBytes(r.ToCopyBytes))
		for _, p := range r.Problems {
			fmt.Fprintf(tw, "\t  problem: %s\n", p)
		}
		for _, x := range r.Warnings {
			fmt.Fprintf(tw, "\t  warning: %s\n", x)
		}
		for _, m := range r.OverSize {
			fmt.Fprintf(tw, "\t  too big: %s uid %d, %s, %s, %q\n", m.Folder, m.UID, m.Date.Format(time.DateOnly), humanBytes(m.Size), m.Subject)
		}
		switch r.Verdict {
		case mfsync.VerdictBlocked:
			blocked++
		case mfsync.VerdictWarnings:
			warned++
		}
		bytes += r.Bytes
		toCopy += r.ToCopyBytes
	}
	fmt.Fprintf(tw, "TOTAL %d mailboxes\t%d cannot migrate, %d with warnings\t\t\t%s\t\t\t%s\n", len(results), blocked, warned,
		humanBytes(bytes), humanBytes(toCopy))
	return tw.Flush()
}
