package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/netem"
	"github.com/mailferry/mailferry/store"
)

func TestIdle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := newRecorder()
	c := login(t, e.addr, alice, alicePass, rec)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	other := login(t, e.src.Addr(), alice, alicePass, nil)

	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	appendMsg(t, other, "INBOX", seedMessages[0], nil, seedDate)
	rec.wait(t, "EXISTS 1", 5*time.Second)
	appendMsg(t, other, "INBOX", seedMessages[3], nil, seedDate)
	rec.wait(t, "EXISTS 2", 5*time.Second)
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, `FETCH 1 [\Flagged`, 5*time.Second)
	if err := other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "EXPUNGE 1", 5*time.Second)
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	// Without IDLE, NOOP brings the news.
	rec.take()
	appendMsg(t, other, "INBOX", seedMessages[4], nil, seedDate)
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if ev := rec.take(); fmt.Sprint(ev) != "[EXISTS 2]" {
		t.Fatalf("after NOOP: %v", ev)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope.Subject != "Plain hello again" {
		t.Fatalf("FETCH after NOOP: %v %v", msgs, err)
	}
}

func TestKickAndHold(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := dialRaw(t, e.addr)
	r.mustOK(fmt.Sprintf("LOGIN %s %s", alice, alicePass))
	r.mustOK("SELECT INBOX")
	r.send("i1 IDLE\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	bobs := login(t, e.addr, bob, bobPass, nil)

	e.srv.Hold(alice)
	if n := e.srv.Kick(alice, "Moving you to the new server"); n != 1 {
		t.Fatalf("Kick: %d sessions", n)
	}
	if l := r.line(); l != "* BYE Moving you to the new server" {
		t.Fatalf("after Kick: %q", l)
	}
	if _, err := r.br.ReadString('\n'); err != io.EOF {
		t.Fatalf("connection still open: %v", err)
	}
	// Held: NO [UNAVAILABLE], for LOGIN and AUTHENTICATE alike; bob goes on.
	c := dial(t, e.addr, nil)
	if err := c.Login(alice, alicePass).Wait(); imapCode(err) != "NO [UNAVAILABLE]" {
		t.Fatalf("held login: %v", err)
	}
	if err := bobs.Noop().Wait(); err != nil {
		t.Fatalf("bob's session: %v", err)
	}
	if n := e.srv.Kick(alice, ""); n != 0 {
		t.Fatalf("second Kick: %d", n)
	}
	e.srv.Release(alice)
	if err := c.Login(alice, alicePass).Wait(); err != nil {
		t.Fatalf("after Release: %v", err)
	}
}

// TestRouteFlip flips alice's route to the target, as the cutover will, and
// checks that the next login lands there with UIDVALIDITY above the floor.
func TestRouteFlip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := login(t, e.src.Addr(), alice, alicePass, nil)
	appendMsg(t, src, "INBOX", seedMessages[0], nil, seedDate)
	appendMsg(t, src, "INBOX", seedMessages[1], nil, seedDate)
	tgt := login(t, e.tgt.Addr(), alice, aliceTgt, nil)
	appendMsg(t, tgt, "INBOX", seedMessages[2], nil, seedDate)

	// Before: the source. This login also records alice's verifier.
	c := login(t, e.addr, alice, alicePass, nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 2 {
		t.Fatalf("before cutover: %+v %v", sel, err)
	}
	var sourceMax uint32
	folders, err := src.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range folders {
		st, err := src.Status(f.Mailbox, &imap.StatusOptions{UIDValidity: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		sourceMax = max(sourceMax, st.UIDValidity)
	}
	floor := UIDValidityFloor(sourceMax)
	if err := e.st.Update(func(tx store.Tx) error {
		return tx.PutMailbox(store.Mailbox{Email: alice, Route: store.RouteTarget, UIDValidityFloor: floor})
	}); err != nil {
		t.Fatal(err)
	}

	// After: the target, with shifted UIDVALIDITY everywhere.
	c2 := login(t, e.addr, alice, alicePass, nil)
	tgtSel, err := tgt.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	sel2, err := c2.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel2.NumMessages != 1 || sel2.UIDValidity != tgtSel.UIDValidity+floor || sel2.UIDValidity <= sourceMax || sel2.UIDValidity <= sel.UIDValidity {
		t.Fatalf("after cutover: %+v (target's %d, floor %d, source max %d)", sel2, tgtSel.UIDValidity, floor, sourceMax)
	}
	st, err := c2.Status("Sent Items", &imap.StatusOptions{UIDValidity: true}).Wait()
	if err != nil || st.UIDValidity <= sourceMax {
		t.Fatalf("STATUS: %+v %v", st, err)
	}
	ad := appendMsg(t, c2, "INBOX", seedMessages[4], nil, seedDate)
	if ad.UIDValidity != sel2.UIDValidity {
		t.Fatalf("APPENDUID validity %d, SELECT's %d", ad.UIDValidity, sel2.UIDValidity)
	}
	cd, err := c2.Copy(imap.SeqSetNum(1), "Sent Items").Wait()
	if err != nil || cd.UIDValidity != st.UIDValidity {
		t.Fatalf("COPYUID: %+v %v (STATUS said %d)", cd, err, st.UIDValidity)
	}
	md, err := c2.Move(imap.SeqSetNum(1), "Drafts").Wait()
	if err != nil || md.UIDValidity <= sourceMax {
		t.Fatalf("MOVE's COPYUID: %+v %v", md, err)
	}
	l, err := c2.List("", "%", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := listing(l, nil); !strings.Contains(got, `Sent Items '/' [\hasnochildren \sent]`) {
		t.Errorf("LIST on the target: %s", got)
	}
	if err := dial(t, e.addr, nil).Login(alice, alicePass+"x").Wait(); imapCode(err) != "NO [AUTHENTICATIONFAILED]" {
		t.Fatalf("wrong password after cutover: %v", err)
	}

	// With the source gone, the verifier recorded in the store before
	// cutover still checks alice's password, for a restarted proxy too.
	e.src.Stop()
	e.start(e.opts)
	c3 := login(t, e.addr, alice, alicePass, nil)
	if _, err := c3.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := dial(t, e.addr, nil).Login(alice, "not-"+alicePass).Wait(); imapCode(err) != "NO [AUTHENTICATIONFAILED]" {
		t.Fatalf("wrong password, source gone: %v", err)
	}
	// bob never logged in before: nothing can check his password now.
	if err := e.st.Update(func(tx store.Tx) error {
		return tx.PutMailbox(store.Mailbox{Email: bob, Route: store.RouteTarget})
	}); err != nil {
		t.Fatal(err)
	}
	if err := dial(t, e.addr, nil).Login(bob, bobPass).Wait(); imapCode(err) != "NO [UNAVAILABLE]" {
		t.Fatalf("bob without verifier or source: %v", err)
	}
}

func TestUIDValidityShift(t *testing.T) {
	s := &session{floor: 4_000_000_000}
	if got := s.uidValidity(5); got != 4_000_000_005 {
		t.Errorf("got %d", got)
	}
	if got := s.uidValidity(1_000_000_000); got != 1<<32-1 {
		t.Errorf("overflow: got %d", got)
	}
	if got := (&session{}).uidValidity(7); got != 7 {
		t.Errorf("no floor: got %d", got)
	}
}

// freezer forwards connections to a target until frozen, then stops
// passing the server's bytes on without closing anything: a peer that
// vanished without FIN.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go io.Copy(s, c)
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := s.Read(buf)
					for f.frozen.Load() {
						time.Sleep(10 * time.Millisecond)
					}
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return f
}

// fakeIMAP is a scripted upstream: it accepts any login and answers each
// command with replies[command name] before the tagged OK.
func fakeIMAP(t *testing.T, replies map[string]string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "* OK [CAPABILITY IMAP4rev1 IDLE UNSELECT] fake ready\r\n")
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					f := strings.Fields(line)
					if len(f) < 2 {
						continue
					}
					io.WriteString(c, replies[strings.ToUpper(f[1])])
					io.WriteString(c, f[0]+" OK done\r\n")
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestUpstreamFailures(t *testing.T) {
	t.Parallel()

	t.Run("connection cut", func(t *testing.T) {
		t.Parallel()
		var fwd *netem.Forwarder
		e := newEnv(t, func(e *env, o *Options) {
			var err error
			if fwd, err = netem.New(e.src.Addr(), 0); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { fwd.Close() })
			o.Source = endpoint(t, fwd.Addr())
		})
		r := dialRaw(t, e.addr)
		r.mustOK(fmt.Sprintf("LOGIN %s %s", alice, alicePass))
		r.mustOK("SELECT INBOX")
		fwd.CutAll()
		if l := r.line(); l != "* BYE Connection to the mail server lost" {
			t.Fatalf("after the cut: %q", l)
		}
		waitLog(t, e, "upstream failed, ending session", alice)
	})

	t.Run("no answer", func(t *testing.T) {
		t.Parallel()
		var fr *freezer
		e := newEnv(t, func(e *env, o *Options) {
			o.UpstreamTimeout = 300 * time.Millisecond
			fr = newFreezer(t, e.src.Addr())
			o.Source = endpoint(t, fr.ln.Addr().String())
		})
		r := dialRaw(t, e.addr)
		r.mustOK(fmt.Sprintf("LOGIN %s %s", alice, alicePass))
		r.mustOK("SELECT INBOX")
		fr.frozen.Store(true)
		start := time.Now()
		lines, st := r.cmd("NOOP")
		if st != "NO [UNAVAILABLE]" && st != "EOF" {
			t.Fatalf("NOOP to a frozen upstream: %v %s", lines, st)
		}
		r.wantBye(lines, "* BYE Connection to the mail server lost")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v", d)
		}
		waitLog(t, e, "no answer from the mail server", alice)
	})

	t.Run("unparsable answer", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(_ *env, o *Options) {
			o.Source = endpoint(t, fakeIMAP(t, map[string]string{"SELECT": "* 1 FETCH (UID notanumber)\r\n"}))
		})
		r := dialRaw(t, e.addr)
		r.mustOK(fmt.Sprintf("LOGIN %s %s", alice, alicePass))
		lines, st := r.cmd("SELECT INBOX")
		if st != "NO [UNAVAILABLE]" && st != "EOF" {
			t.Fatalf("SELECT: %v %s", lines, st)
		}
		r.wantBye(lines, "* BYE Connection to the mail server lost")
		waitLog(t, e, "expected number", alice)
	})

	t.Run("upstream BYE while idle", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		r := dialRaw(t, e.addr)
		r.mustOK(fmt.Sprintf("LOGIN %s %s", alice, alicePass))
		r.mustOK("SELECT INBOX")
		r.send("i1 IDLE\r\n")
		if l := r.line(); !strings.HasPrefix(l, "+") {
			t.Fatalf("IDLE: %q", l)
		}
		e.src.Restart(t) // Dovecot says BYE and closes
		if l := r.line(); l != "* BYE Connection to the mail server lost" {
			t.Fatalf("after the restart: %q", l)
		}
	})
}

// waitLog waits for a log entry whose message or error contains want and
// whose mailbox field is mailbox.
func waitLog(t *testing.T, e *env, want, mailbox string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, entry := range e.logs.All() {
			m := entry.ContextMap()
			if m["mailbox"] == mailbox && strings.Contains(entry.Message+fmt.Sprint(m["error"]), want) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log entry with %q for %s", want, mailbox)
}

func TestObsoleteAndLocalCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := login(t, e.src.Addr(), alice, alicePass, nil)
	appendMsg(t, src, "INBOX", seedMessages[0], nil, seedDate)
	r := dialRaw(t, e.addr)
	r.mustOK(fmt.Sprintf("LOGIN %s %s", alice, alicePass))

	// ENABLE is answered by the proxy and never reaches the upstream.
	if lines := r.mustOK("ENABLE CONDSTORE QRESYNC"); len(lines) != 1 || lines[0] != "* ENABLED" {
		t.Fatalf("ENABLE: %v", lines)
	}
	if lines := r.mustOK("STATUS INBOX (MESSAGES RECENT)"); len(lines) != 1 || lines[0] != `* STATUS INBOX (MESSAGES 1 RECENT 0)` {
		t.Fatalf("STATUS RECENT: %v", lines)
	}
	r.mustOK("SELECT INBOX")
	// Outlook's RFC822.PEEK: the whole message, under its own name, \Seen untouched.
	lines := r.mustOK("FETCH 1 (RFC822.PEEK)")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "* 1 FETCH (RFC822.PEEK {") || !strings.Contains(lines[0], "Second line.") {
		t.Fatalf("RFC822.PEEK: %v", lines)
	}
	if lines := r.mustOK("FETCH 1 FLAGS"); len(lines) != 1 || strings.Contains(lines[0], `\Seen`) {
		t.Fatalf("flags after RFC822.PEEK: %v", lines)
	}
	r.mustOK("CHECK")
	if _, st := r.cmd("ID NIL"); st != "BAD" {
		t.Fatalf("ID: %s", st)
	}
	r.mustOK("LOGOUT")
}

// wantBye wants bye among the untagged lines of the last command, or next.
func (r *raw) wantBye(lines []string, bye string) {
	r.t.Helper()
	for _, l := range lines {
		if l == bye {
			return
		}
	}
	if l := r.line(); l != bye {
		r.t.Fatalf("got %q, want %q", l, bye)
	}
}
