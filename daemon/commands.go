package daemon

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
)

// Run is `mailferry run` (and, with proxyOnly, `mailferry proxy`): the
// daemon in the foreground until ctx is done.
func Run(ctx context.Context, o *config.Options, out Streams, reload <-chan struct{}, proxyOnly bool) error {
	log, err := NewLogger(out.Stderr, o.LogLevel, out.interactive())
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	defer log.Sync()
	d, err := New(o, log)
	if err != nil {
		return err
	}
	d.proxyOnly = proxyOnly
	if proxyOnly && o.Listen == "" && o.ListenStartTLS == "" {
		return &ExitError{Code: ExitUsage, Err: errors.New("the proxy needs --listen or --listen-starttls")}
	}
	go func() {
		for range reload {
			if err := d.Reload(); err != nil {
				log.Error("reload", zap.NamedError("err", err))
			}
		}
	}()
	return d.Run(ctx)
}

// fleetStatus asks the running daemon, or reads the store when none runs.
func fleetStatus(ctx context.Context, o *config.Options, only string) (*FleetStatus, *Report, bool, error) {
	if o.Data == "" {
		return nil, nil, false, &ExitError{Code: ExitUsage, Err: errors.New("no data directory: give --data or --config")}
	}
	q := ""
	if only != "" {
		q = "?mailbox=" + url.QueryEscape(only)
	}
	if cc, err := dialControl(o.Data); err == nil {
		var st FleetStatus
		var rep Report
		if err := cc.call(ctx, "GET", "/status"+q, nil, &st); err != nil {
			return nil, nil, false, Fatal(err)
		}
		if err := cc.call(ctx, "GET", "/report"+q, nil, &rep); err != nil {
			return nil, nil, false, Fatal(err)
		}
		return &st, &rep, true, nil
	}
	st, err := OpenStore(o.Data, nil)
	if err != nil {
		return nil, nil, false, Fatal(err)
	}
	defer st.Close()
	fs, err := OfflineStatus(st, only)
	if err != nil {
		return nil, nil, false, Fatal(err)
	}
	rep, err := BuildReport(st, fs)
	if err != nil {
		return nil, nil, false, Fatal(err)
	}
	return fs, rep, false, nil
}

// Status is `mailferry status [--json] [MAILBOX]`.
func Status(ctx context.Context, o *config.Options, only string, out Streams) error {
	st, _, _, err := fleetStatus(ctx, o, only)
	if err != nil {
		return err
	}
	if only != "" && len(st.Mailboxes) == 0 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("no mailbox %q", only)}
	}
	if o.JSON {
		enc := json.NewEncoder(out.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return writeStatusTable(out.Stdout, st)
}

func writeStatusTable(w io.Writer, st *FleetStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tSTATE\tFOLDERS\tCOPIED\tSKIPPED\tFAILED\tSIZE\tLAST SYNC\tNEXT SYNC\tLAST ERROR")
	for _, m := range st.Mailboxes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", m.Email, m.State, m.Folders, m.Copied, m.Skipped, m.Failed,
			humanBytes(m.Bytes), when(m.LastSync), when(m.NextSync), m.LastError)
	}
	t := st.Totals
	fmt.Fprintf(tw, "TOTAL %d\t", t.Mailboxes)
	for _, s := range []State{StateQueued, StateSyncing, StateSynced, StateFailed, StateCuttingOver, StateCutOver} {
		if t.ByState[s] > 0 {
			fmt.Fprintf(tw, "%d %s ", t.ByState[s], s)
		}
	}
	fmt.Fprintf(tw, "\t\t%d\t%d\t%d\t%s\t\t\t", t.Copied, t.Skipped, t.Failed, humanBytes(t.Bytes))
	if t.BytesPerSecond > 0 {
		fmt.Fprintf(tw, "%s/s since start", humanBytes(int64(t.BytesPerSecond)))
	}
	fmt.Fprintln(tw)
	if !st.Running {
		fmt.Fprintln(tw, "(no daemon runs: read from the store)")
	}
	return tw.Flush()
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// ReportCmd is `mailferry report --format csv|json`.
func ReportCmd(ctx context.Context, o *config.Options, format string, out Streams) error {
	if format != "csv" && format != "json" {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--format %q: want csv or json", format)}
	}
	_, rep, _, err := fleetStatus(ctx, o, "")
	if err != nil {
		return err
	}
	if format == "json" {
		enc := json.NewEncoder(out.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	cw := csv.NewWriter(out.Stdout)
	cw.Write([]string{"mailbox", "state", "folder", "target_folder", "copied", "pending", "skipped", "uid", "date", "size", "subject", "reason", "last_error"})
	n := strconv.Itoa
	for _, m := range rep.Mailboxes {
		cw.Write([]string{m.Email, string(m.State), "", "", strconv.FormatInt(m.Copied, 10), "", strconv.FormatInt(m.Skipped, 10), "", "", "", "", "", m.LastError})
		for _, f := range m.FolderReports {
			cw.Write([]string{m.Email, "", f.Source, f.Target, n(f.Copied), n(f.Pending), n(len(f.Skipped)), "", "", "", "", "", ""})
			for _, s := range f.Skipped {
				cw.Write([]string{m.Email, "", f.Source, f.Target, "", "", "", strconv.FormatUint(uint64(s.UID), 10),
					s.Date.Format(time.RFC3339), strconv.FormatInt(s.Size, 10), s.Subject, s.Reason, ""})
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// CutoverCmd is `mailferry cutover`: through the running daemon (which
// holds the proxy), or on its own when none runs.
func CutoverCmd(ctx context.Context, o *config.Options, req CutoverRequest, out Streams) error {
	if len(req.Mailboxes) == 0 && !req.All {
		return &ExitError{Code: ExitUsage, Err: errors.New("name the mailboxes to cut over, or --all, or --mailboxes-file")}
	}
	var rep *CutoverReply
	if cc, err := dialControl(o.Data); err == nil {
		rep = &CutoverReply{}
		if err := cc.call(ctx, "POST", "/cutover", req, rep); err != nil {
			return err
		}
	} else {
		log, err := NewLogger(out.Stderr, o.LogLevel, out.interactive())
		if err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		if rep, err = offlineCutover(ctx, o, req, log); err != nil {
			var ue *usageError
			if errors.As(err, &ue) {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			return err
		}
	}
	failed := 0
	if o.JSON {
		if err := writeJSON(out.Stdout, rep); err != nil {
			return Fatal(err)
		}
	}
	tw := tabwriter.NewWriter(out.Stdout, 0, 0, 2, ' ', 0)
	if !o.JSON {
		fmt.Fprintln(tw, "MAILBOX\tROUTE\tSESSIONS ENDED\tFINAL COPY\tTOOK\tERROR")
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			failed++
		}
		if !o.JSON {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", r.Mailbox, r.Route, r.Kicked, r.Copied, r.Duration.Round(time.Millisecond), r.Error)
		}
	}
	tw.Flush()
	if failed > 0 {
		return &ExitError{Code: ExitIncomplete, Err: fmt.Errorf("%d of %d cutovers failed", failed, len(rep.Results))}
	}
	return nil
}
