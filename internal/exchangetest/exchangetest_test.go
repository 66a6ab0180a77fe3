package exchangetest

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/internal/dovecottest"
)

const (
	alice, alicePass = "alice@example.com", "a-pass"
	bob, bobPass     = "bob@example.com", "b-pass"
)

func start(t *testing.T, opts Options, dopts dovecottest.Options) (*dovecottest.Server, *Filter) {
	t.Helper()
	dopts.Users = map[string]string{alice: alicePass, bob: bobPass}
	srv := dovecottest.Start(t, dopts)
	opts.Log = t.Logf
	f, err := New(srv.Addr(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return srv, f
}

// dial connects through the filter with mailferry's own stack (tolerance
// layer, LITERAL+) and logs in.
func dial(t *testing.T, f *Filter, user, pass string) (*imapclient.Client, error) {
	t.Helper()
	ep, err := imapconn.ParseURL("imap+plain://"+f.Addr(), false)
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapconn.Dial(context.Background(), ep, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, imapconn.Login(c, user, pass)
}

func mustDial(t *testing.T, f *Filter, user, pass string) *imapclient.Client {
	t.Helper()
	c, err := dial(t, f, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func appendMsg(c *imapclient.Client, folder, subject string) error {
	raw := "Subject: " + subject + "\r\n\r\n" + strings.Repeat("body line\r\n", 600)
	cmd := c.Append(folder, int64(len(raw)), nil)
	io.WriteString(cmd, raw)
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// TestCapsAndLoginCode: capabilities look like Exchange's, and the login
// reply carries Exchange's code, which go-imap alone can't parse but
// mailferry's connection can.
func TestCapsAndLoginCode(t *testing.T) {
	_, f := start(t, Exchange(), dovecottest.Options{})

	raw, err := imapclient.DialInsecure(f.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	caps := raw.Caps()
	if !caps.Has(imap.CapLiteralPlus) || caps.Has(imap.CapEnable) || caps.Has("LOGIN-REFERRALS") {
		t.Errorf("greeting capabilities %v", caps)
	}
	if err := raw.Login(alice, alicePass).Wait(); err == nil {
		t.Fatal("go-imap parsed Exchange's login code: the filter doesn't send it")
	} else {
		t.Logf("plain go-imap on Exchange's login reply: %v", err)
	}

	c := mustDial(t, f, alice, alicePass)
	// go-imap forgets the pre-login capabilities only after it completed
	// the LOGIN command: one more round trip makes sure it has.
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	caps = c.Caps()
	for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapLiteralPlus, imap.CapUIDPlus, imap.CapMove, imap.CapIdle, imap.CapNamespace} {
		if !caps.Has(want) {
			t.Errorf("capability %s missing: %v", want, caps)
		}
	}
	for _, not := range []imap.Cap{imap.CapCondStore, imap.CapQResync, imap.CapSpecialUse, imap.CapESearch, imap.CapMultiAppend, imap.CapListStatus, imap.CapListExtended} {
		if caps.Has(not) {
			t.Errorf("capability %s advertised: %v", not, caps)
		}
	}
}

// TestNames: case-only collisions and the reserved Files folder are refused
// like Exchange refuses them; non-mail folders are plain Dovecot folders.
func TestNames(t *testing.T) {
	srv, f := start(t, Exchange(), dovecottest.Options{})
	if err := CreateNonMailFolders(srv.Dial(t, alice)); err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, f, alice, alicePass)
	if err := c.Create("Projects", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{"Projects/2024", "files (migrated)", "Müller"} {
		if err := c.Create(ok, nil).Wait(); err != nil {
			t.Errorf("CREATE %q: %v", ok, err)
		}
	}
	var ie *imap.Error
	for name, want := range map[string]string{
		"projects": "ALREADYEXISTS", "CALENDAR": "ALREADYEXISTS", "müller": "ALREADYEXISTS", "Files": "reserved", "files/x": "reserved",
	} {
		err := c.Create(name, nil).Wait()
		if !errors.As(err, &ie) || !(string(ie.Code) == want || strings.Contains(ie.Text, want)) {
			t.Errorf("CREATE %q: %v, want %s", name, err, want)
		}
	}
	if err := c.Rename("Projects", "PROJECTS/2024", nil).Wait(); err == nil {
		t.Error("RENAME to a case variant accepted")
	}
	// Names are looked up case-insensitively, part by part.
	if err := c.Create("projects/2025", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := appendMsg(c, "PROJECTS/2025", "x"); err != nil {
		t.Fatal(err)
	}
	if sel, err := c.Select("projects/2025", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT through a case variant: %v %+v", err, sel)
	}
	if err := c.Rename("pROJECTS/2025", "Projects/2026", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	all := "|" + strings.Join(names, "|") + "|"
	for _, want := range append(NonMailFolders, "Projects/2026") {
		if !strings.Contains(all, "|"+want+"|") {
			t.Errorf("%q not listed: %v", want, names)
		}
	}
	if strings.Contains(all, "|projects") {
		t.Errorf("a case variant was created: %v", names)
	}
	if s := f.Stats(); s.Collisions != 4 || s.Reserved != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestConnectionCap: the LOGIN over the cap is refused; a slot frees when a
// connection ends.
func TestConnectionCap(t *testing.T) {
	for _, bye := range []bool{false, true} {
		_, f := start(t, Options{MaxConnections: 2, CapBye: bye}, dovecottest.Options{})
		a1 := mustDial(t, f, alice, alicePass)
		mustDial(t, f, alice, alicePass)
		mustDial(t, f, bob, bobPass) // another mailbox: not counted
		_, err := dial(t, f, alice, alicePass)
		var ie *imap.Error
		switch {
		case !bye && (!errors.As(err, &ie) || ie.Code != imap.ResponseCodeUnavailable || !imapconn.IsTemporary(err)):
			t.Errorf("third login: %v", err)
		case bye && (err == nil || !imapconn.IsTemporary(err)):
			t.Errorf("third login (BYE): %v", err)
		}
		a1.Logout().Wait()
		a1.Close()
		deadline := time.Now().Add(2 * time.Second)
		for {
			if _, err := dial(t, f, alice, alicePass); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("no slot after a logout: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if s := f.Stats(); s.Peak[alice] != 2 || s.CapRefused == 0 {
			t.Errorf("stats %+v", s)
		}
	}
}

// TestThrottle: after N APPENDs of one mailbox, its commands are refused
// with a suggested back-off for that long, on every connection; the other
// mailbox goes on. A LITERAL+ APPEND that is refused leaves the connection
// usable.
func TestThrottle(t *testing.T) {
	_, f := start(t, Options{Throttle: &Throttle{User: alice, AfterAppends: 3, Backoff: 400 * time.Millisecond}}, dovecottest.Options{})
	a := mustDial(t, f, alice, alicePass)
	b := mustDial(t, f, bob, bobPass)
	for i := range 3 {
		if err := appendMsg(a, "INBOX", "a"); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	err := appendMsg(a, "INBOX", "refused")
	if d, ok := imapconn.ThrottleDelay(err); !ok || d != 400*time.Millisecond || !imapconn.IsTemporary(err) {
		t.Fatalf("fourth append: %v", err)
	}
	if _, err := dial(t, f, alice, alicePass); err == nil {
		t.Error("login during the throttle accepted")
	}
	if err := appendMsg(b, "INBOX", "b"); err != nil {
		t.Errorf("bob throttled: %v", err)
	}
	time.Sleep(time.Until(f.Stats().ThrottleEnd))
	if err := appendMsg(a, "INBOX", "after"); err != nil {
		t.Errorf("after the back-off: %v", err)
	}
	if s := f.Stats(); s.Throttled != 2 || s.Appends[alice] != 4 || s.Appends[bob] != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestThrottleDisconnect: with Disconnect, the connections logged in when
// the throttle starts answer "User is authenticated but not connected"
// from then on; new ones are throttled, then work.
func TestThrottleDisconnect(t *testing.T) {
	_, f := start(t, Options{Throttle: &Throttle{User: alice, Backoff: 200 * time.Millisecond, Disconnect: true}}, dovecottest.Options{})
	a := mustDial(t, f, alice, alicePass)
	b := mustDial(t, f, bob, bobPass)
	f.ThrottleNow(alice)
	if err := a.Noop().Wait(); !imapconn.IsExchangeTransient(err) {
		t.Fatalf("during the throttle: %v", err)
	}
	if _, err := dial(t, f, alice, alicePass); err == nil {
		t.Fatal("login during the throttle accepted")
	}
	time.Sleep(300 * time.Millisecond)
	if err := a.Noop().Wait(); !imapconn.IsExchangeTransient(err) {
		t.Fatalf("after the throttle: %v", err)
	}
	if err := a.Logout().Wait(); err != nil {
		t.Errorf("logout: %v", err)
	}
	if err := b.Noop().Wait(); err != nil {
		t.Errorf("bob: %v", err)
	}
	if err := mustDial(t, f, alice, alicePass).Noop().Wait(); err != nil {
		t.Errorf("a new connection: %v", err)
	}
}

func TestParseCommand(t *testing.T) {
	cmd := parseCommand([]byte("T7 UID MOVE 1:5 \"Sent Items/2024\"\r\n"))
	if cmd.name != "UID MOVE" || len(cmd.boxes) != 1 || cmd.boxes[0].name != "Sent Items/2024" {
		t.Fatalf("%+v", cmd)
	}
	cmd = parseCommand([]byte("T8 APPEND M&APw-ller (\\Seen) \"17-May-2024 09:30:00 +0000\" {310+}\r\n"))
	if cmd.name != "APPEND" || len(cmd.boxes) != 1 || cmd.boxes[0].name != "Müller" || cmd.boxes[0].start != 10 || cmd.boxes[0].end != 20 {
		t.Fatalf("%+v", cmd)
	}
	cmd = parseCommand([]byte("T1 LOGIN \"Alice@Example.com\" \"p\\\"w\"\r\n"))
	if cmd.user != "alice@example.com" || cmd.pass != `p"w` {
		t.Fatalf("%+v", cmd)
	}
}
