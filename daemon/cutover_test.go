package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/store"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func proxyLogin(t *testing.T, addr, user, pass string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("login through the proxy: %v", err)
	}
	return c
}

// TestCutover: a user connected through the proxy sees the source; at the
// cutover the idle session gets BYE, the next login (same password) sees
// the target with a higher UIDVALIDITY, and a rollback sends it back.
func TestCutover(t *testing.T) {
	p := newPair(t, "alice@example.com", "bob@example.com")
	seed(t, p.src.Dial(t, "alice@example.com"), "INBOX", 0, 5, 1000)
	o := p.options()
	o.ListenStartTLS = freeAddr(t)
	d, _ := startDaemon(t, o, time.Hour)
	waitFor(t, "alice synced", 20*time.Second, func() bool {
		st, _ := d.Status("alice@example.com")
		return st.Mailboxes[0].State == StateSynced
	})

	before := proxyLogin(t, o.ListenStartTLS, "alice@example.com", "s-alice@example.com", nil)
	sel, err := before.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 5 {
		t.Fatalf("before cutover: %v %+v", err, sel)
	}
	oldUIDValidity := sel.UIDValidity
	idle, err := before.Idle()
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// A new message before the cutover: the final sync must carry it.
	seed(t, p.src.Dial(t, "alice@example.com"), "INBOX", 5, 1, 1000)

	var out bytes.Buffer
	err = CutoverCmd(context.Background(), &o, CutoverRequest{Mailboxes: []string{"alice@example.com"}}, Streams{Stdout: &out, Stderr: io.Discard})
	if err != nil {
		t.Fatalf("cutover: %v\n%s", err, out.String())
	}
	if f := strings.Fields(strings.Split(out.String(), "\n")[1]); len(f) < 4 || f[1] != "target" || f[2] != "1" || f[3] != "1" {
		t.Fatalf("cutover result: %q", out.String())
	}
	select {
	case <-before.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("the idle session was not ended at cutover")
	}

	after := proxyLogin(t, o.ListenStartTLS, "alice@example.com", "s-alice@example.com", nil)
	sel, err = after.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 6 || sel.UIDValidity <= oldUIDValidity {
		t.Fatalf("after cutover: %v %+v (UIDVALIDITY before %d)", err, sel, oldUIDValidity)
	}
	raw := "Subject: written after the cutover\r\n\r\nhi\r\n"
	cmd := after.Append("INBOX", int64(len(raw)), nil)
	cmd.Write([]byte(raw))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, p.tgt.Dial(t, "alice@example.com"), "INBOX"); n != 7 {
		t.Fatalf("a message saved after the cutover is not on the target (%d)", n)
	}
	st, _ := d.Status("alice@example.com")
	if st.Mailboxes[0].State != StateCutOver || st.Mailboxes[0].Route != store.RouteTarget.String() {
		t.Fatalf("status after cutover: %+v", st.Mailboxes[0])
	}

	// bob is untouched: still on the source.
	bob := proxyLogin(t, o.ListenStartTLS, "bob@example.com", "s-bob@example.com", nil)
	if _, err := bob.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	// Unknown mailboxes are a usage error; rollback sends alice back.
	err = CutoverCmd(context.Background(), &o, CutoverRequest{Mailboxes: []string{"nobody@example.com"}}, Streams{Stdout: io.Discard, Stderr: io.Discard})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != ExitUsage {
		t.Fatalf("unknown mailbox: %v", err)
	}
	if err := CutoverCmd(context.Background(), &o, CutoverRequest{Mailboxes: []string{"alice@example.com"}, Rollback: true}, Streams{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-after.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("rollback did not end the session")
	}
	back := proxyLogin(t, o.ListenStartTLS, "alice@example.com", "s-alice@example.com", nil)
	sel2, err := back.Select("INBOX", nil).Wait()
	if err != nil || sel2.NumMessages != 6 || sel2.UIDValidity <= sel.UIDValidity {
		t.Fatalf("after rollback the user should see the source, with UIDVALIDITY still higher (%d before): %v %+v", sel.UIDValidity, err, sel2)
	}
}
