package dovecottest_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/internal/dovecottest"
)

// serverCase is one namespace configuration, as real servers have them.
type serverCase struct {
	name     string
	opts     dovecottest.Options
	user     string
	sep      rune
	prefix   string
	special  map[string]imap.MailboxAttr // full mailbox name → SPECIAL-USE attribute in LIST
	top      []string                    // LIST "" "%", sorted
	folder   string                      // a nested folder with a non-ASCII name, full name
	onDisk   string                      // where that folder lives, relative to MaildirPath
	condstor bool                        // CONDSTORE and QRESYNC advertised
}

var serverCases = []serverCase{
	{
		name: "courier",
		opts: dovecottest.Options{
			Separator: ".",
			Prefix:    "INBOX.",
			Users:     map[string]string{"alice": "alice-pw"},
			SpecialUse: map[string]string{
				"Sent": `\Sent`, "Trash": `\Trash`, "Drafts": `\Drafts`, "Junk": `\Junk`,
			},
		},
		user:   "alice",
		sep:    '.',
		prefix: "INBOX.",
		special: map[string]imap.MailboxAttr{
			"INBOX.Sent": imap.MailboxAttrSent, "INBOX.Trash": imap.MailboxAttrTrash,
			"INBOX.Drafts": imap.MailboxAttrDrafts, "INBOX.Junk": imap.MailboxAttrJunk,
		},
		top:      []string{"INBOX"}, // everything else is below INBOX.
		folder:   "INBOX.Clients.Müller GmbH",
		onDisk:   ".Clients.M&APw-ller GmbH", // Maildir++, names in modified UTF-7
		condstor: true,
	},
	{
		name: "exchange",
		opts: dovecottest.Options{
			Separator: "/",
			Users:     map[string]string{"bob": "bob-pw"},
			SpecialUse: map[string]string{
				"Sent Items": `\Sent`, "Deleted Items": `\Trash`, "Junk Email": `\Junk`, "Drafts": `\Drafts`,
			},
			NoCondStore: true,
		},
		user: "bob",
		sep:  '/',
		special: map[string]imap.MailboxAttr{
			"Sent Items": imap.MailboxAttrSent, "Deleted Items": imap.MailboxAttrTrash,
			"Junk Email": imap.MailboxAttrJunk, "Drafts": imap.MailboxAttrDrafts,
		},
		top:    []string{"Deleted Items", "Drafts", "INBOX", "Junk Email", "Sent Items"},
		folder: "Clients/Müller GmbH",
		onDisk: "Clients/M&APw-ller GmbH", // LAYOUT=fs
	},
}

// messages are APPENDed and FETCHed back. Dovecot keeps 8-bit headers as they
// are, but stores lines with LF and serves them with CRLF: a bare LF comes back as
// CRLF (mail_save_crlf=yes does the same), so RFC822.SIZE counts the CRLF.
var messages = []struct {
	name, raw, want string
}{
	{
		name: "plain",
		raw: "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: plain\r\n" +
			"Date: Mon, 03 Mar 2025 10:00:00 +0100\r\nMessage-ID: <plain@example.com>\r\n\r\nHello\r\n",
	},
	{
		name: "8-bit header",
		raw: "From: Jörg Müller <joerg@example.com>\r\nSubject: Grüße aus Köln\r\n" +
			"Message-ID: <8bit@example.com>\r\n\r\nK\xf6ln in Latin-1, no final newline",
	},
	{
		name: "bare LF",
		raw:  "Subject: bare LF\r\nMessage-ID: <lf@example.com>\r\n\r\nline one\nline two\r\n",
		want: "Subject: bare LF\r\nMessage-ID: <lf@example.com>\r\n\r\nline one\r\nline two\r\n",
	},
}

// TestServers runs two differently configured servers at once and checks what a
// migration client sees of them.
func TestServers(t *testing.T) {
	t.Parallel()
	for _, tc := range serverCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, tc.opts)
			if got, want := s.URL(), "imap+plain://"+s.Addr(); got != want {
				t.Errorf("URL() = %q, want %q", got, want)
			}
			if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.TLSAddr() != "" || s.CertPEM() != nil {
				t.Errorf("Addr() = %q, TLSAddr() = %q, CertPEM() = %q", s.Addr(), s.TLSAddr(), s.CertPEM())
			}
			c := s.Dial(t, tc.user)

			t.Run("capabilities", func(t *testing.T) {
				caps := c.Caps()
				for _, cap := range []imap.Cap{
					imap.CapUIDPlus, imap.CapMove, imap.CapLiteralPlus, imap.CapESearch, imap.CapListStatus,
					imap.CapSpecialUse, imap.CapIdle, imap.CapNamespace, imap.CapMultiAppend,
				} {
					if !caps.Has(cap) {
						t.Errorf("%s not advertised", cap)
					}
				}
				for _, cap := range []imap.Cap{imap.CapCondStore, imap.CapQResync} {
					if caps.Has(cap) != tc.condstor {
						t.Errorf("%s advertised: %v, want %v", cap, caps.Has(cap), tc.condstor)
					}
				}
			})

			t.Run("namespace", func(t *testing.T) {
				ns, err := c.Namespace().Wait()
				if err != nil {
					t.Fatal(err)
				}
				want := []imap.NamespaceDescriptor{{Prefix: tc.prefix, Delim: tc.sep}}
				if !slices.Equal(ns.Personal, want) {
					t.Errorf("personal namespaces %+v, want %+v", ns.Personal, want)
				}
			})

			t.Run("list", func(t *testing.T) {
				list := listAll(t, c)
				if _, ok := list["INBOX"]; !ok {
					t.Errorf("no INBOX in %v", list)
				}
				got := map[string]imap.MailboxAttr{}
				for name, l := range list {
					if l.Delim != tc.sep {
						t.Errorf("%q: delimiter %q, want %q", name, l.Delim, tc.sep)
					}
					if name != "INBOX" && !strings.HasPrefix(name, tc.prefix) {
						t.Errorf("%q lacks the namespace prefix %q", name, tc.prefix)
					}
					for _, a := range l.Attrs {
						switch a {
						case imap.MailboxAttrSent, imap.MailboxAttrTrash, imap.MailboxAttrDrafts, imap.MailboxAttrJunk:
							got[name] = a
						}
					}
				}
				if !maps.Equal(got, tc.special) {
					t.Errorf("special-use mailboxes %v, want %v", got, tc.special)
				}

				top, err := c.List("", "%", nil).Collect()
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, l := range top {
					names = append(names, l.Mailbox)
				}
				if slices.Sort(names); !slices.Equal(names, tc.top) {
					t.Errorf(`LIST "" "%%" = %q, want %q`, names, tc.top)
				}
			})

			t.Run("create", func(t *testing.T) {
				if err := c.Create(tc.folder, nil).Wait(); err != nil {
					t.Fatal(err)
				}
				list := listAll(t, c)
				if _, ok := list[tc.folder]; !ok {
					t.Errorf("%q not in LIST: %v", tc.folder, slices.Sorted(maps.Keys(list)))
				}
				// Dovecot lists the parent it did not create as \Noselect.
				parent := tc.prefix + "Clients"
				if l, ok := list[parent]; !ok || !slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) {
					t.Errorf("parent %q: %+v, want \\Noselect", parent, l)
				}
				if _, err := os.Stat(filepath.Join(s.MaildirPath(tc.user), tc.onDisk, "cur")); err != nil {
					t.Errorf("folder not on disk: %v", err)
				}
			})

			t.Run("append-fetch", func(t *testing.T) {
				for _, m := range messages {
					want := m.want
					if want == "" {
						want = m.raw
					}
					uid := appendMessage(t, c, "INBOX", m.raw)
					got, size := fetchMessage(t, c, "INBOX", uid)
					if got != want {
						t.Errorf("%s: FETCH BODY[] = %q, want %q", m.name, got, want)
					}
					if size != int64(len(want)) {
						t.Errorf("%s: RFC822.SIZE = %d, want %d", m.name, size, len(want))
					}
				}
			})
		})
	}
}

// TestMaxMessageSize checks that a server with MaxMessageSize refuses bigger APPENDs.
func TestMaxMessageSize(t *testing.T) {
	t.Parallel()
	const limit = 1000
	s := start(t, dovecottest.Options{Users: map[string]string{"u": "pw"}, MaxMessageSize: limit})
	c := s.Dial(t, "u")
	for _, tc := range []struct {
		name string
		size int
		ok   bool
	}{
		{"at the limit", limit, true},
		{"one byte over", limit + 1, false},
		// Up to 4 KiB go-imap sends a LITERAL+ literal: Dovecot reads it, then says NO
		// and the connection stays usable.
		{"non-synchronizing literal", 4096, false},
	} {
		err := appendErr(c, message(tc.size))
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var imapErr *imap.Error
		if !errors.As(err, &imapErr) || imapErr.Type != imap.StatusResponseTypeNo || imapErr.Code != imap.ResponseCodeLimit {
			t.Errorf("%s: APPEND error %v, want NO [LIMIT]", tc.name, err)
		}
		if err := c.Noop().Wait(); err != nil {
			t.Fatalf("%s: connection unusable after the refusal: %v", tc.name, err)
		}
	}

	// A bigger message goes as a synchronizing literal: Dovecot answers the
	// command line at once, instead of "+", with exactly this (timing text aside).
	// (go-imap v2 then closes its connection, as it cannot finish the command.)
	r := rawLogin(t, s.Addr(), "u", "pw")
	fmt.Fprintf(r.conn, "a2 APPEND INBOX {%d}\r\n", 10*limit)
	line := r.line(t)
	want := "a2 NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration"
	if !strings.HasPrefix(line, want) {
		t.Errorf("oversized APPEND answered %q, want %q", line, want)
	}
}

// TestRestart checks that mail survives a restart on the same ports and that Stop
// is idempotent.
func TestRestart(t *testing.T) {
	t.Parallel()
	s := start(t, dovecottest.Options{Users: map[string]string{"u": "pw"}})
	addr := s.Addr()
	c := s.Dial(t, "u")
	raw := messages[0].raw
	uid := appendMessage(t, c, "INBOX", raw)

	s.Stop()
	s.Stop()
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatal("listener still accepting after Stop")
	}
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Error("client not disconnected by Stop")
	}

	s.Restart(t)
	if s.Addr() != addr {
		t.Errorf("Addr() after Restart = %q, want %q", s.Addr(), addr)
	}
	c = s.Dial(t, "u")
	if got, _ := fetchMessage(t, c, "INBOX", uid); got != raw {
		t.Errorf("after Restart: %q, want %q", got, raw)
	}
	if n := strings.Count(s.Log(), "starting up"); n != 2 {
		t.Errorf("log has %d start-ups, want 2:\n%s", n, s.Log())
	}
}

// TestTLS checks implicit TLS and STARTTLS with the generated certificate.
func TestTLS(t *testing.T) {
	t.Parallel()
	s := start(t, dovecottest.Options{Users: map[string]string{"u": "pw"}, TLS: true})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CertPEM()) {
		t.Fatalf("CertPEM() = %q", s.CertPEM())
	}
	opts := &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool}}
	for _, tc := range []struct {
		name string
		dial func() (*imapclient.Client, error)
	}{
		{"implicit", func() (*imapclient.Client, error) { return imapclient.DialTLS(s.TLSAddr(), opts) }},
		{"STARTTLS", func() (*imapclient.Client, error) { return imapclient.DialStartTLS(s.Addr(), opts) }},
	} {
		c, err := tc.dial()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if err := c.Login("u", "pw").Wait(); err != nil {
			t.Errorf("%s: login: %v", tc.name, err)
		}
		c.Close()
	}

	// Without the certificate in the pool the handshake must fail.
	if c, err := imapclient.DialTLS(s.TLSAddr(), nil); err == nil {
		c.Close()
		t.Error("TLS without trusting CertPEM succeeded")
	}
}

// TestMasterUser checks "user*master" logins.
func TestMasterUser(t *testing.T) {
	t.Parallel()
	s := start(t, dovecottest.Options{
		Users:      map[string]string{"alice": "alice-pw"},
		MasterUser: "admin", MasterPassword: "admin-pw",
	})
	uid := appendMessage(t, s.Dial(t, "alice"), "INBOX", messages[0].raw)

	// Dovecot 2.3 answers a failed login only after about 0.5 s, whatever
	// auth_failure_delay says: check the cases in parallel.
	for _, tc := range []struct {
		login, password string
		ok              bool
	}{
		{"alice*admin", "admin-pw", true},
		{"alice*admin", "alice-pw", false},
		{"nosuchuser*admin", "admin-pw", false},
		{"admin", "admin-pw", false}, // a master user has no mailbox of its own
		{"alice", "wrong", false},
	} {
		t.Run(tc.login+"/"+tc.password, func(t *testing.T) {
			t.Parallel()
			c, err := imapclient.DialInsecure(s.Addr(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Login(tc.login, tc.password).Wait()
			if (err == nil) != tc.ok {
				t.Fatalf("login: %v, want ok=%v", err, tc.ok)
			}
			if err == nil {
				// The master user sees alice's mailbox.
				if got, _ := fetchMessage(t, c, "INBOX", uid); got != messages[0].raw {
					t.Errorf("INBOX has %q", got)
				}
			}
		})
	}
}

// start starts a server and checks at cleanup that Dovecot logged no error or
// warning, apart from those of a Stop.
func start(t *testing.T, opts dovecottest.Options) *dovecottest.Server {
	t.Helper()
	s := dovecottest.Start(t, opts)
	t.Cleanup(func() {
		for line := range strings.Lines(s.Log()) {
			if strings.Contains(line, "Killed with signal 15") || strings.Contains(line, "Shutting down logging") {
				continue
			}
			if strings.Contains(line, "Error:") || strings.Contains(line, "Warning:") || strings.Contains(line, "Fatal:") {
				t.Errorf("Dovecot logged: %s", line)
			}
		}
	})
	return s
}

// listAll returns LIST "" "*" by mailbox name.
func listAll(t *testing.T, c *imapclient.Client) map[string]*imap.ListData {
	t.Helper()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]*imap.ListData, len(list))
	for _, l := range list {
		m[l.Mailbox] = l
	}
	return m
}

// appendErr APPENDs raw to INBOX and returns the error.
func appendErr(c *imapclient.Client, raw string) error {
	cmd := c.Append("INBOX", int64(len(raw)), nil)
	_, werr := cmd.Write([]byte(raw))
	cerr := cmd.Close()
	_, err := cmd.Wait()
	return errors.Join(err, werr, cerr)
}

// appendMessage APPENDs raw to mailbox and returns its UID.
func appendMessage(t *testing.T, c *imapclient.Client, mailbox, raw string) imap.UID {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(raw)), nil)
	if _, err := cmd.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if data.UID == 0 {
		t.Fatal("no APPENDUID")
	}
	return data.UID
}

// fetchMessage selects mailbox and returns BODY.PEEK[] and RFC822.SIZE of uid.
func fetchMessage(t *testing.T, c *imapclient.Client, mailbox string, uid imap.UID) (string, int64) {
	t.Helper()
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
		UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("UID FETCH %d: %d messages", uid, len(msgs))
	}
	return string(msgs[0].FindBodySection(section)), msgs[0].RFC822Size
}

// message returns a message of exactly size bytes.
func message(size int) string {
	head := "Subject: size test\r\n\r\n"
	body := bytes.Repeat([]byte("x"), size-len(head)-2)
	return head + string(body) + "\r\n"
}

// rawConn is a logged-in IMAP connection without a client library.
type rawConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func rawLogin(t *testing.T, addr, user, password string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := &rawConn{conn: conn, r: bufio.NewReader(conn)}
	r.line(t) // greeting
	fmt.Fprintf(conn, "a1 LOGIN %s %s\r\n", user, password)
	if line := r.line(t); !strings.HasPrefix(line, "a1 OK") {
		t.Fatalf("LOGIN: %q", line)
	}
	return r
}

func (r *rawConn) line(t *testing.T) string {
	t.Helper()
	line, err := r.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(line, "\r\n")
}
