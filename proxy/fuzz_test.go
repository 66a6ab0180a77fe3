package proxy

import (
	"bytes"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/store"
)

// pipeListener hands net.Pipe server ends to Serve.
type pipeListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// literal is a message for imapmemserver's Append.
type literal struct {
	*strings.Reader
}

// fuzzProxy is one proxy for the whole fuzzing process, in front of an
// in-memory upstream (go-imap's imapmemserver on loopback).
var fuzzProxy struct {
	once sync.Once
	srv  *Server
	ln   *pipeListener
	logs *observer.ObservedLogs
	err  error
}

func startFuzzProxy() {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice", "pw")
	for _, name := range []string{"INBOX", "Archive", "Sent"} {
		if err := u.Create(name, nil); err != nil {
			fuzzProxy.err = err
			return
		}
	}
	for i, m := range seedMessages {
		_, err := u.Append("INBOX", literal{strings.NewReader(m)}, &imap.AppendOptions{Time: seedDate, Flags: []imap.Flag{[]imap.Flag{imap.FlagSeen, "$x"}[i%2]}})
		if err != nil {
			fuzzProxy.err = err
			return
		}
	}
	mem.AddUser(u)
	up := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0), // the upstream's own troubles are not the proxy's
	})
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fuzzProxy.err = err
		return
	}
	go up.Serve(upLn)
	ep, err := imapconn.ParseURL("imap+plain://"+upLn.Addr().String(), false)
	if err != nil {
		fuzzProxy.err = err
		return
	}
	core, logs := observer.New(zapcore.DebugLevel)
	srv, err := New(Options{
		Source: ep, Target: ep,
		Mailboxes: func(login string) (config.Mailbox, bool) {
			if strings.EqualFold(login, "alice") {
				return config.Mailbox{Email: "alice@example.com", UserName: "alice", Password: "pw", TargetUserName: "alice", TargetPassword: "pw"}, true
			}
			return config.Mailbox{}, false
		},
		Store:              store.NewMemory(),
		AllowPlaintextAuth: true,
		FailureDelay:       -1,
		MaxFailuresPerIP:   -1,
		MaxFailuresPerUser: -1,
		UpstreamTimeout:    2 * time.Second,
		Log:                zap.New(core),
	})
	if err != nil {
		fuzzProxy.err = err
		return
	}
	ln := &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
	go srv.Serve(ln)
	fuzzProxy.srv, fuzzProxy.ln, fuzzProxy.logs = srv, ln, logs
}

func (s *Server) numSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

const fuzzPrelude = "A LOGIN alice pw\r\nB SELECT INBOX\r\n"

// FuzzSession feeds arbitrary client input, after a login and SELECT, to a
// proxy session over net.Pipe and wants no panic and the session gone soon
// after the client hangs up.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"C FETCH 1:* (FLAGS UID ENVELOPE BODYSTRUCTURE BODY.PEEK[] RFC822.SIZE)\r\n",
		"C UID FETCH 1:* (RFC822.PEEK RFC822.HEADER RFC822.TEXT BODY[1.MIME] BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.5>)\r\n",
		"C STORE 1:2 +FLAGS (\\Deleted)\r\nD EXPUNGE\r\nE NOOP\r\n",
		"C SEARCH RETURN (MIN MAX COUNT) UNSEEN\r\nD UID SEARCH CHARSET UTF-8 BODY \"Grüße\"\r\n",
		"C APPEND INBOX (\\Seen) {11}\r\nhello world\r\nD APPEND Archive {5+}\r\nabcde\r\n",
		"C IDLE\r\nDONE\r\nD IDLE\r\nnot done\r\n",
		"C COPY 1 Archive\r\nD MOVE 1 Sent\r\nE UID MOVE 1:* Archive\r\nF CLOSE\r\n",
		"C LIST \"\" *\r\nD LSUB \"\" *\r\nE LIST (SPECIAL-USE) \"\" * RETURN (STATUS (MESSAGES RECENT))\r\nF NAMESPACE\r\n",
		"C STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE)\r\nD ENABLE QRESYNC UTF8=ACCEPT IMAP4rev2\r\n",
		"C CREATE x\r\nD RENAME x y\r\nE SUBSCRIBE y\r\nF DELETE y\r\nG EXAMINE Archive\r\nH UNSELECT\r\n",
		"C FETCH 99999 BODY[]\r\nD STORE * FLAGS ()\r\nE FETCH 0:4294967295 UID\r\n",
		"C APPEND INBOX {4294967296}\r\n",
		"\x00\xff\r\n* BAD\r\n+ \r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzProxy.once.Do(startFuzzProxy)
		if fuzzProxy.err != nil {
			t.Fatal(fuzzProxy.err)
		}
		client, server := net.Pipe()
		fuzzProxy.ln.ch <- server
		done := make(chan struct{})
		go func() {
			io.Copy(io.Discard, client)
			close(done)
		}()
		msg := bytes.Join([][]byte{[]byte(fuzzPrelude), input, []byte("\r\nZ LOGOUT\r\n")}, nil)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(msg)
		select {
		case <-done:
		case <-time.After(100 * time.Millisecond):
		}
		client.Close()
		<-done
		deadline := time.Now().Add(5 * time.Second)
		for fuzzProxy.srv.numSessions() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("session still open 5 s after the client hung up")
			}
			time.Sleep(time.Millisecond)
		}
		for _, e := range fuzzProxy.logs.TakeAll() {
			if strings.Contains(e.Message, "panic") {
				t.Fatalf("%s: %v", e.Message, e.ContextMap())
			}
		}
	})
}
