package daemon

// BenchmarkFleet measures the daemon on a fleet (issue 4's benchmark), with
// the mailferry binary as a subprocess against a Dovecot pair on loopback:
// time until every mailbox is synced, steady-state CPU and RSS when nothing
// changes, and the time from a new source message to its arrival in the
// target for a mailbox with an IDLE watcher. Never run in CI:
//
//	go test -run '^$' -bench Fleet -benchtime 1x -timeout 30m ./daemon/
//
// MAILFERRY_BENCH_MAILBOXES (default 1000) and MAILFERRY_BENCH_MESSAGES
// (default 50 per mailbox) size the fleet; MAILFERRY_BENCH_IDLE the idle
// measurement window (default 60s).

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/internal/dovecottest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func BenchmarkFleet(b *testing.B) {
	n := envInt("MAILFERRY_BENCH_MAILBOXES", 1000)
	perBox := envInt("MAILFERRY_BENCH_MESSAGES", 50)
	idleWindow, err := time.ParseDuration(os.Getenv("MAILFERRY_BENCH_IDLE"))
	if err != nil {
		idleWindow = time.Minute
	}
	users := map[string]string{}
	var emails []string
	for i := range n {
		e := fmt.Sprintf("user%04d@example.com", i)
		users[e], emails = "pw", append(emails, e)
	}
	src := dovecottest.Start(b, dovecottest.Options{Separator: ".", Prefix: "INBOX.", Users: users, Fsync: true})
	tgt := dovecottest.Start(b, dovecottest.Options{Users: users, Fsync: true})

	seedStart := time.Now()
	var wg gosync.WaitGroup
	work := make(chan string)
	for range 8 {
		wg.Go(func() {
			for e := range work {
				seedPipelined(b, src.Addr(), e, 0, perBox)
			}
		})
	}
	for _, e := range emails {
		work <- e
	}
	close(work)
	wg.Wait()
	b.Logf("seeded %d mailboxes × %d messages in %v", n, perBox, time.Since(seedStart).Round(time.Second))

	dir := b.TempDir()
	var csv strings.Builder
	csv.WriteString("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n")
	for _, e := range emails {
		fmt.Fprintf(&csv, "%s,%s,pw,%s,pw\n", e, e, e)
	}
	os.WriteFile(filepath.Join(dir, "users.csv"), []byte(csv.String()), 0o600)
	conf := fmt.Sprintf("source = %q\ntarget = %q\nmailboxes = \"users.csv\"\ndata = \"data\"\nsync_interval = \"10m\"\n", src.URL(), tgt.URL())
	os.WriteFile(filepath.Join(dir, "mailferry.conf"), []byte(conf), 0o600)
	bin := filepath.Join(dir, "mailferry")
	build := exec.Command("go", "build", "-o", bin, "github.com/mailferry/mailferry/cmd/mailferry")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "run", "--config", filepath.Join(dir, "mailferry.conf"), "--log-level", "warn")
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()

	o := config.Defaults()
	o.Data = filepath.Join(dir, "data")
	status := func() *FleetStatus {
		if _, err := dialControl(o.Data); err != nil {
			return nil // not up yet; reading the store would take its lock
		}
		st, _, _, err := fleetStatus(context.Background(), &o, "")
		if err != nil {
			return nil
		}
		return st
	}
	for {
		st := status()
		if st != nil && st.Totals.ByState[StateSynced] == n {
			break
		}
		if time.Since(start) > 20*time.Minute {
			b.Fatalf("not all synced after 20 min: %+v", st)
		}
		time.Sleep(500 * time.Millisecond)
	}
	syncAll := time.Since(start)
	b.ReportMetric(syncAll.Seconds(), "s-until-all-synced")

	// Steady state: nothing changes for idleWindow.
	time.Sleep(10 * time.Second) // let the IDLE watchers settle
	cpu0, wall0 := procCPU(b, cmd.Process.Pid), time.Now()
	time.Sleep(idleWindow)
	cpu := (procCPU(b, cmd.Process.Pid) - cpu0).Seconds() / time.Since(wall0).Seconds()
	rss := procRSS(b, cmd.Process.Pid)
	b.ReportMetric(cpu*100, "%CPU-idle")
	b.ReportMetric(float64(rss)/(1<<20), "MB-RSS-idle")

	// A new message in a watched mailbox's INBOX.
	var watched string
	for _, m := range status().Mailboxes {
		if m.Watched {
			watched = m.Email
			break
		}
	}
	latency := time.Duration(-1)
	if watched != "" {
		tc := tgt.Dial(b, watched)
		before := countMessages(b, tc)
		t0 := time.Now()
		seedPipelined(b, src.Addr(), watched, perBox, 1)
		for countMessages(b, tc) == before {
			if time.Since(t0) > time.Minute {
				b.Fatal("the new message did not arrive within a minute")
			}
			time.Sleep(20 * time.Millisecond)
		}
		latency = time.Since(t0)
		b.ReportMetric(latency.Seconds(), "s-new-message")
	}
	fmt.Printf("\nfleet of %d mailboxes × %d messages (%s, %d CPUs)\n", n, perBox, runtime.GOOS, runtime.NumCPU())
	fmt.Printf("  until all synced       %v\n", syncAll.Round(100*time.Millisecond))
	fmt.Printf("  idle CPU               %.2f %% (over %v)\n", cpu*100, idleWindow)
	fmt.Printf("  idle RSS               %.1f MB\n", float64(rss)/(1<<20))
	fmt.Printf("  new message → target  %v (IDLE-watched %s)\n", latency.Round(10*time.Millisecond), watched)
}

func countMessages(tb testing.TB, c *imapclient.Client) uint32 {
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		tb.Fatal(err)
	}
	return *st.NumMessages
}

// seedPipelined appends n small messages to a user's INBOX over one
// LITERAL+ connection.
func seedPipelined(tb testing.TB, addr, user string, from, n int) {
	ep, _ := imapconn.ParseURL("imap+plain://"+addr, false)
	c, err := imapconn.Dial(context.Background(), ep, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := imapconn.Login(c, user, "pw"); err != nil {
		tb.Fatal(err)
	}
	var cmds []*imapclient.AppendCommand
	for i := from; i < from+n; i++ {
		raw := fmt.Sprintf("Message-ID: <%d.%s>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nFrom: x@example.com\r\nSubject: message %d\r\n\r\n%s\r\n",
			i, user, i, strings.Repeat("Lorem ipsum dolor sit amet. ", 60))
		cmd := c.Append("INBOX", int64(len(raw)), &imap.AppendOptions{Time: time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)})
		io.WriteString(cmd, raw)
		cmd.Close()
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if _, err := cmd.Wait(); err != nil {
			tb.Fatal(err)
		}
	}
}

// procCPU is the user+system CPU time of a process (Linux /proc).
func procCPU(tb testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// procRSS is a process's resident set in bytes.
func procRSS(tb testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
