package daemon

import (
	"bytes"
	"context"
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
	"github.com/mailferry/mailferry/internal/oauthtest"
)

// TestSyncOffice365 runs `mailferry sync` into a target that only takes
// XOAUTH2 (Dovecot's oauth2 passdb against a test Entra endpoint), with
// tokens that expire every two seconds during the run.
func TestSyncOffice365(t *testing.T) {
	users := []string{"alice@example.com", "bob@example.com", "carol@example.com"}
	srcUsers := map[string]string{}
	for _, u := range users {
		srcUsers[u] = "pw-" + u
	}
	src := dovecottest.Start(t, dovecottest.Options{Separator: ".", Prefix: "INBOX.", Users: srcUsers})
	for _, u := range users {
		c := src.Dial(t, u)
		for i := range 40 {
			raw := fmt.Sprintf("Message-ID: <%d.%s>\r\nSubject: m%d\r\nFrom: x@example.com\r\n\r\n%s\r\n", i, u, i, strings.Repeat("body ", 2000))
			cmd := c.Append("INBOX", int64(len(raw)), &imap.AppendOptions{Time: time.Date(2024, 1, 2, 3, 4, i, 0, time.UTC)})
			io.WriteString(cmd, raw)
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	idp := oauthtest.NewServer(t, oauthtest.Options{TokenLifetime: 2 * time.Second})
	idp.AddSecretClient("app-1", "app-secret-value")
	tgt := oauthtest.StartDovecot(t, oauthtest.DovecotOptions{IntrospectionURL: idp.IntrospectionURL(), Mailboxes: users})

	dir := t.TempDir()
	csvPath := filepath.Join(dir, "users.csv")
	var b strings.Builder
	b.WriteString("EmailAddress,UserName,Password\n")
	for _, u := range users {
		fmt.Fprintf(&b, "%s,%s,pw-%s\n", u, u, u)
	}
	os.WriteFile(csvPath, []byte(b.String()), 0o600)

	o := config.Defaults()
	o.Source, o.Target, o.Mailboxes, o.Data = src.URL(), tgt.URL(), csvPath, filepath.Join(dir, "data")
	o.Parallel = 1 // one mailbox after the other: the run outlives several tokens
	o.O365Tenant, o.O365ClientID, o.O365ClientSecret, o.O365TokenURL = idp.Tenant(), "app-1", "app-secret-value", idp.TokenURL()
	var out, errOut bytes.Buffer
	start := time.Now()
	err := Sync(context.Background(), &o, Streams{Stdout: &out, Stderr: &errOut})
	for time.Since(start) < 5*time.Second && err == nil {
		// Make sure tokens expired during the test, then sync again.
		time.Sleep(time.Second)
		err = Sync(context.Background(), &o, Streams{Stdout: &out, Stderr: &errOut})
	}
	if err != nil {
		t.Fatalf("sync: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "TOTAL (3 mailboxes)") || strings.Contains(out.String()+errOut.String(), "app-secret-value") {
		t.Fatalf("output:\n%s\n%s", out.String(), errOut.String())
	}
	if st := idp.Stats(); st.TokensIssued < 2 {
		t.Errorf("only %d tokens issued in a run longer than their lifetime", st.TokensIssued)
	}

	// A wrong secret fails every mailbox with a clear, permanent error.
	o.O365ClientSecret = "not-the-secret"
	out.Reset()
	err = Sync(context.Background(), &o, Streams{Stdout: &out, Stderr: &errOut})
	if err == nil || !strings.Contains(out.String(), "3 failed") || strings.Contains(out.String(), "not-the-secret") {
		t.Fatalf("wrong secret: %v\n%s", err, out.String())
	}
}
