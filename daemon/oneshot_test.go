package daemon

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/internal/dovecottest"
)

func TestSyncCommand(t *testing.T) {
	src := dovecottest.Start(t, dovecottest.Options{Separator: ".", Prefix: "INBOX.",
		Users: map[string]string{"alice@example.com": "a-src", "bob@example.com": "b-src", "carol@example.com": "c-src"}})
	tgt := dovecottest.Start(t, dovecottest.Options{
		Users: map[string]string{"alice@example.com": "a-tgt", "bob@example.com": "b-tgt", "carol@example.com": "c-tgt"}})
	for _, u := range []string{"alice@example.com", "bob@example.com"} {
		c := src.Dial(t, u)
		for i := range 3 {
			raw := fmt.Sprintf("Message-ID: <%d@%s>\r\nSubject: hello %d\r\nFrom: x@example.com\r\n\r\nbody\r\n", i, u, i)
			cmd := c.Append("INBOX", int64(len(raw)), &imap.AppendOptions{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)})
			io.WriteString(cmd, raw)
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "users.csv")
	// A bad row (line 4) and a wrong password (carol) must not stop the others.
	os.WriteFile(csvPath, []byte("EmailAddress,UserName,Password,TargetUserName,TargetPassword\r\n"+
		"alice@example.com,alice@example.com,a-src,alice@example.com,a-tgt\r\n"+
		"bob@example.com,bob@example.com,b-src,bob@example.com,b-tgt\r\n"+
		"not-an-address,x,y,,\r\n"+
		"carol@example.com,carol@example.com,WRONG,carol@example.com,c-tgt\r\n"), 0o600)

	run := func(args func(*config.Options)) (string, string, error) {
		o := config.Defaults()
		o.Source, o.Target = src.URL(), tgt.URL()
		o.Mailboxes, o.Data = csvPath, filepath.Join(dir, "data")
		o.Report = filepath.Join(dir, "report.csv")
		args(&o)
		var out, errOut bytes.Buffer
		err := Sync(context.Background(), &o, Streams{Stdout: &out, Stderr: &errOut})
		return out.String(), errOut.String(), err
	}

	stdout, stderr, err := run(func(*config.Options) {})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != ExitIncomplete {
		t.Fatalf("exit: %v, want code %d\nstderr: %s", err, ExitIncomplete, stderr)
	}
	for _, want := range []string{"alice@example.com", "bob@example.com", "carol@example.com", "failed: ", "TOTAL (3 mailboxes)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "users.csv:4") {
		t.Errorf("stderr does not name the bad row:\n%s", stderr)
	}
	for _, secret := range []string{"a-src", "b-src", "WRONG", "a-tgt"} {
		if strings.Contains(stdout+stderr, secret) {
			t.Errorf("output contains the password %q", secret)
		}
	}
	f, _ := os.Open(filepath.Join(dir, "report.csv"))
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) < 4 || rows[0][0] != "mailbox" {
		t.Fatalf("report: %v %v", rows, err)
	}

	// JSON on stdout, nothing else there; a second pass copies nothing.
	stdout, _, _ = run(func(o *config.Options) { o.JSON = true })
	var sum struct {
		Version   int `json:"version"`
		Copied    int `json:"copied"`
		Mailboxes []struct {
			Mailbox string `json:"mailbox"`
			Error   string `json:"error"`
		} `json:"mailboxes"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, stdout)
	}
	if sum.Version != 1 || sum.Copied != 0 || len(sum.Mailboxes) != 3 || sum.Mailboxes[2].Error == "" {
		t.Fatalf("second pass summary: %+v", sum)
	}

	// verify: alice and bob equal, carol can't log in.
	var out, errOut bytes.Buffer
	o := config.Defaults()
	o.Source, o.Target, o.Mailboxes, o.Data = src.URL(), tgt.URL(), csvPath, filepath.Join(dir, "data")
	err = Verify(context.Background(), &o, Streams{Stdout: &out, Stderr: &errOut})
	if !errors.As(err, &ee) || ee.Code != ExitIncomplete || !strings.Contains(out.String(), "failed: ") {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "alice@example.com" && f[1] == "INBOX" && strings.Join(f[3:], " ") != "3 3 0 0 0" {
			t.Errorf("verify line for alice: %q", line)
		}
	}

	// preflight: carol can't log in, so exit code 3 and her problem listed.
	out.Reset()
	err = Preflight(context.Background(), &o, Streams{Stdout: &out, Stderr: &errOut})
	if !errors.As(err, &ee) || ee.Code != ExitIncomplete || !strings.Contains(out.String(), "cannot migrate") ||
		!strings.Contains(out.String(), "problem: source: login") {
		t.Fatalf("preflight: %v\n%s", err, out.String())
	}

	// A bad option is a usage error.
	_, _, err = run(func(o *config.Options) { o.Source = "ftp://x" })
	if !errors.As(err, &ee) || ee.Code != ExitUsage {
		t.Fatalf("bad URL: %v", err)
	}

	// The store opens while the engine logs in; a store another process
	// holds is still a fatal error (after OpenStore's wait for the lock).
	held, err := OpenStore(filepath.Join(dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	stdout, _, err = run(func(*config.Options) {})
	if !errors.As(err, &ee) || ee.Code != ExitFatal || !strings.Contains(err.Error(), "open store") || stdout != "" {
		t.Fatalf("store held by another process: %v (stdout %q)", err, stdout)
	}
}
