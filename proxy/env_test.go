package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/internal/dovecottest"
	"github.com/mailferry/mailferry/store"
)

func TestMain(m *testing.M) {
	// Real parameters cost 19 MiB and tens of milliseconds a hash.
	argonParams.time, argonParams.memory = 1, 64
	os.Exit(m.Run())
}

const (
	alice     = "alice@example.com"
	alicePass = "alice-source-1"
	aliceTgt  = "alice-target-2"
	twin      = "twin@example.com" // alice's twin, spoken to directly
	twinPass  = "twin-source-1"
	bob       = "bob@example.com"
	bobPass   = "bob-source-1" // bob logs in to the source as "bob"
	bobTgt    = "bob-target-2"
)

// env is a source Dovecot laid out like Courier ("." separator, "INBOX."
// prefix), a target Dovecot laid out like Exchange Online, a memory store
// and a proxy in front of them on loopback.
type env struct {
	t        testing.TB
	src, tgt *dovecottest.Server
	st       store.Store
	srv      *Server
	addr     string
	logs     *observer.ObservedLogs
	mbs      []config.Mailbox
	opts     Options
}

// envOpt adjusts the proxy's options once the Dovecots run.
type envOpt func(*env, *Options)

func newEnv(t testing.TB, mods ...envOpt) *env {
	t.Helper()
	src := dovecottest.Start(t, dovecottest.Options{
		Separator: ".", Prefix: "INBOX.",
		SpecialUse: map[string]string{"Sent": `\Sent`, "Trash": `\Trash`, "Drafts": `\Drafts`, "Junk": `\Junk`},
		Users:      map[string]string{alice: alicePass, twin: twinPass, "bob": bobPass},
	})
	tgt := dovecottest.Start(t, dovecottest.Options{
		Separator:  "/",
		SpecialUse: map[string]string{"Sent Items": `\Sent`, "Deleted Items": `\Trash`, "Junk Email": `\Junk`, "Drafts": `\Drafts`},
		Users:      map[string]string{alice: aliceTgt, bob: bobTgt},
	})
	e := &env{t: t, src: src, tgt: tgt, st: store.NewMemory()}
	e.mbs = []config.Mailbox{
		{Email: alice, UserName: alice, Password: alicePass, TargetUserName: alice, TargetPassword: aliceTgt},
		{Email: bob, UserName: "bob", Password: bobPass, TargetUserName: bob, TargetPassword: bobTgt},
	}
	opts := Options{
		Source:             endpoint(t, src.Addr()),
		Target:             endpoint(t, tgt.Addr()),
		Mailboxes:          e.lookup,
		Store:              e.st,
		AllowPlaintextAuth: true,
		FailureDelay:       20 * time.Millisecond,
		UpstreamTimeout:    2 * time.Second,
	}
	for _, m := range mods {
		m(e, &opts)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	opts.Log = zap.New(zapcore.NewTee(core, zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)).Core()))
	e.start(opts)
	return e
}

// start starts a proxy with opts, which becomes e.srv at e.addr.
func (e *env) start(opts Options) {
	t := e.t
	e.opts = opts
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.addr = srv, ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		for _, entry := range e.logs.All() {
			if strings.Contains(entry.Message, "panic") {
				t.Errorf("log shows a panic: %s %v", entry.Message, entry.ContextMap())
			}
		}
	})
}

func (e *env) lookup(login string) (config.Mailbox, bool) {
	for _, mb := range e.mbs {
		if strings.EqualFold(login, mb.Email) || strings.EqualFold(login, mb.UserName) {
			return mb, true
		}
	}
	return config.Mailbox{}, false
}

func endpoint(t testing.TB, addr string) imapconn.Endpoint {
	ep, err := imapconn.ParseURL("imap+plain://"+addr, false)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// recorder keeps the unilateral updates a test client receives.
type recorder struct {
	mu     sync.Mutex
	events []string
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 100)} }

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// take returns and forgets the events so far.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

// wait waits until an event containing want arrives.
func (r *recorder) wait(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		for _, ev := range r.events {
			if strings.Contains(ev, want) {
				r.mu.Unlock()
				return
			}
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("no %q among updates %v", want, r.take())
		}
	}
}

func (r *recorder) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { r.add(fmt.Sprintf("EXPUNGE %d", seq)) },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				r.add(fmt.Sprintf("EXISTS %d", *d.NumMessages))
			}
			if d.Flags != nil {
				r.add(fmt.Sprintf("FLAGS %v", d.Flags))
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, err := msg.Collect()
			if err == nil {
				r.add(fmt.Sprintf("FETCH %d %v", buf.SeqNum, buf.Flags))
			}
		},
	}
}

// dial connects a test client to addr (the proxy's or Dovecot's).
func dial(t testing.TB, addr string, rec *recorder) *imapclient.Client {
	t.Helper()
	opts := &imapclient.Options{}
	if rec != nil {
		opts.UnilateralDataHandler = rec.handler()
	}
	c, err := imapclient.DialInsecure(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func login(t testing.TB, addr, user, pass string, rec *recorder) *imapclient.Client {
	t.Helper()
	c := dial(t, addr, rec)
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("login %s at %s: %v", user, addr, err)
	}
	return c
}

// imapCode returns err's response code, "OK" for nil, or "ERR" for
// something that is no IMAP answer.
func imapCode(err error) string {
	if err == nil {
		return "OK"
	}
	if ie, ok := err.(*imap.Error); ok {
		return string(ie.Type) + " [" + string(ie.Code) + "]"
	}
	return "ERR " + err.Error()
}

// raw is a line-level IMAP client for what go-imap's client cannot send or
// parse (LSUB, RFC822.*, ENABLE, BYE texts).
type raw struct {
	t   testing.TB
	c   net.Conn
	br  *bufio.Reader
	tag int
}

func dialRaw(t testing.TB, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, c: c, br: bufio.NewReader(c)}
	if line := r.line(); !strings.HasPrefix(line, "* OK") {
		t.Fatalf("greeting %q", line)
	}
	return r
}

// line reads one response line, literals included inline as
// "{n}<data>".
func (r *raw) line() string {
	r.t.Helper()
	l, err := r.lineErr()
	if err != nil {
		r.t.Fatalf("reading: %v (so far %q)", err, l)
	}
	return l
}

func (r *raw) lineErr() (string, error) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			return b.String() + l, err
		}
		l = strings.TrimSuffix(l, "\r\n")
		b.WriteString(l)
		var n int
		if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}") {
			if _, err := fmt.Sscanf(l[i:], "{%d}", &n); err == nil {
				data := make([]byte, n)
				if _, err := io.ReadFull(r.br, data); err != nil {
					r.t.Fatalf("reading literal: %v", err)
				}
				b.Write(data)
				continue
			}
		}
		return b.String(), nil
	}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// cmd sends a command and returns the untagged lines and the tagged
// status ("OK", "NO [CODE]", "BAD"; "EOF" if the server hung up first).
func (r *raw) cmd(command string) (lines []string, status string) {
	r.t.Helper()
	r.tag++
	tag := fmt.Sprintf("r%d", r.tag)
	r.send(tag + " " + command + "\r\n")
	for {
		l, err := r.lineErr()
		if err == io.EOF && l == "" {
			return lines, "EOF"
		} else if err != nil {
			r.t.Fatalf("reading: %v (so far %q)", err, l)
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			typ, text, _ := strings.Cut(rest, " ")
			status = typ
			if strings.HasPrefix(text, "[") {
				if i := strings.IndexAny(text, " ]"); i > 0 {
					status += " " + text[:i] + "]"
				}
			}
			return lines, status
		}
		lines = append(lines, l)
	}
}

func (r *raw) mustOK(command string) []string {
	r.t.Helper()
	lines, st := r.cmd(command)
	if !strings.HasPrefix(st, "OK") {
		r.t.Fatalf("%s: %s %v", command, st, lines)
	}
	return lines
}
