package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap/zaptest"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/internal/dovecottest"
)

type pair struct {
	src, tgt *dovecottest.Server
	dir, csv string
}

func newPair(t *testing.T, users ...string) *pair {
	srcUsers, tgtUsers := map[string]string{}, map[string]string{}
	for _, u := range users {
		srcUsers[u], tgtUsers[u] = "s-"+u, "t-"+u
	}
	p := &pair{
		src: dovecottest.Start(t, dovecottest.Options{Separator: ".", Prefix: "INBOX.", Users: srcUsers}),
		tgt: dovecottest.Start(t, dovecottest.Options{Users: tgtUsers}),
		dir: t.TempDir(),
	}
	p.csv = filepath.Join(p.dir, "users.csv")
	p.writeList(t, users...)
	return p
}

func (p *pair) writeList(t *testing.T, users ...string) {
	var b strings.Builder
	b.WriteString("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n")
	for _, u := range users {
		fmt.Fprintf(&b, "%s,%s,s-%s,%s,t-%s\n", u, u, u, u, u)
	}
	tmp := p.csv + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Rename(tmp, p.csv)
	// The daemon notices changes by modification time.
	later := time.Now().Add(time.Duration(len(users)) * time.Second)
	os.Chtimes(p.csv, later, later)
}

func (p *pair) options() config.Options {
	o := config.Defaults()
	o.Source, o.Target, o.Mailboxes, o.Data = p.src.URL(), p.tgt.URL(), p.csv, filepath.Join(p.dir, "data")
	return o
}

func seed(t *testing.T, c *imapclient.Client, folder string, from, n, size int) {
	for i := from; i < from+n; i++ {
		raw := fmt.Sprintf("Message-ID: <%d.%s@x>\r\nSubject: m%d\r\nFrom: x@example.com\r\n\r\n%s\r\n", i, folder, i, strings.Repeat("z", size))
		cmd := c.Append(folder, int64(len(raw)), &imap.AppendOptions{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Minute)})
		io.WriteString(cmd, raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

func count(t *testing.T, c *imapclient.Client, folder string) uint32 {
	st, err := c.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return 0
	}
	return *st.NumMessages
}

// startDaemon runs a daemon on o until the test ends or stop is called.
func startDaemon(t *testing.T, o config.Options, interval time.Duration) (*Daemon, func()) {
	t.Helper()
	d, err := New(&o, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	d.opts.SyncInterval = interval // below the admin's minimum, for the test
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return d, stop
}

func waitFor(t *testing.T, what string, limit time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDaemon(t *testing.T) {
	p := newPair(t, "alice@example.com", "bob@example.com")
	alice := p.src.Dial(t, "alice@example.com")
	seed(t, alice, "INBOX", 0, 10, 2000)
	seed(t, p.src.Dial(t, "bob@example.com"), "INBOX", 0, 5, 2000)
	o := p.options()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	o.HTTP = ln.Addr().String()
	ln.Close()
	d, stop := startDaemon(t, o, time.Hour)

	synced := func(emails ...string) func() bool {
		return func() bool {
			st, err := d.Status("")
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, m := range st.Mailboxes {
				for _, e := range emails {
					if m.Email == e && m.State == StateSynced {
						n++
					}
				}
			}
			return n == len(emails)
		}
	}
	waitFor(t, "both mailboxes synced", 20*time.Second, synced("alice@example.com", "bob@example.com"))
	tgtAlice := p.tgt.Dial(t, "alice@example.com")
	if n := count(t, tgtAlice, "INBOX"); n != 10 {
		t.Fatalf("alice's target INBOX has %d messages", n)
	}

	// With an hour's interval, a new source message still arrives at once:
	// an IDLE watcher sees it.
	time.Sleep(watchReview + time.Second)
	seed(t, alice, "INBOX", 10, 1, 500)
	start := time.Now()
	waitFor(t, "the new message on the target", 5*time.Second, func() bool { return count(t, tgtAlice, "INBOX") == 11 })
	t.Logf("new message reached the target after %v", time.Since(start))

	// status and report through the control endpoint.
	var out bytes.Buffer
	o.JSON = true
	if err := Status(context.Background(), &o, "", Streams{Stdout: &out, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	var st FleetStatus
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || !st.Running || st.Version != 1 || len(st.Mailboxes) != 2 || st.Totals.Copied < 15 {
		t.Fatalf("status: %v %+v", err, st)
	}
	out.Reset()
	if err := ReportCmd(context.Background(), &o, "csv", Streams{Stdout: &out, Stderr: io.Discard}); err != nil || !strings.Contains(out.String(), "alice@example.com,,INBOX,INBOX,11,0,0") {
		t.Fatalf("report: %v\n%s", err, out.String())
	}

	// /metrics and the status page.
	for path, want := range map[string]string{"/metrics": "mailferry_messages_copied_total 16", "/": "alice@example.com", "/api/status": `"version": 1`} {
		resp, err := http.Get("http://" + o.HTTP + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("%s lacks %q:\n%.2000s", path, want, body)
		}
	}

	// The list loses bob and gains carol (who has no mailbox: she fails).
	p.writeList(t, "alice@example.com", "carol@example.com")
	waitFor(t, "the list reloaded", 20*time.Second, func() bool {
		st, _ := d.Status("")
		names := ""
		for _, m := range st.Mailboxes {
			names += m.Email + " "
		}
		return names == "alice@example.com carol@example.com "
	})
	waitFor(t, "carol failed", 20*time.Second, func() bool {
		st, _ := d.Status("carol@example.com")
		return len(st.Mailboxes) == 1 && st.Mailboxes[0].State == StateFailed
	})

	stop()
	// Without a daemon, status reads the store.
	out.Reset()
	o.JSON = false
	if err := Status(context.Background(), &o, "", Streams{Stdout: &out, Stderr: io.Discard}); err != nil || !strings.Contains(out.String(), "no daemon runs") {
		t.Fatalf("offline status: %v\n%s", err, out.String())
	}
}

// TestDaemonStopMidCopy stops the daemon while it copies and starts it
// again: nothing is lost, nothing doubled.
func TestDaemonStopMidCopy(t *testing.T) {
	p := newPair(t, "alice@example.com")
	alice := p.src.Dial(t, "alice@example.com")
	seed(t, alice, "INBOX", 0, 300, 20_000)
	o := p.options()
	tgt := p.tgt.Dial(t, "alice@example.com")
	_, stop := startDaemon(t, o, time.Minute)
	waitFor(t, "copying under way", 20*time.Second, func() bool { return count(t, tgt, "INBOX") > 20 })
	stop()
	if n := count(t, tgt, "INBOX"); n >= 300 {
		t.Skipf("the copy finished before the stop (%d)", n)
	}
	d, _ := startDaemon(t, o, time.Minute)
	waitFor(t, "synced after restart", 30*time.Second, func() bool {
		st, _ := d.Status("")
		return st.Mailboxes[0].State == StateSynced
	})
	if n := count(t, tgt, "INBOX"); n != 300 {
		t.Fatalf("target has %d messages, want 300", n)
	}
}
