package sync

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap/zaptest"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/internal/dovecottest"
	"github.com/mailferry/mailferry/internal/netem"
	"github.com/mailferry/mailferry/store"
)

// env is a Dovecot source laid out like Courier (".", "INBOX." prefix,
// SPECIAL-USE folders Sent, Trash, Drafts, Junk) and a Dovecot target laid
// out like Exchange Online ("/", its default folder names), each behind a
// forwarder that counts bytes and can cut connections.
type env struct {
	src, tgt       *dovecottest.Server
	srcFwd, tgtFwd *netem.Forwarder
	st             store.Store
	mb             config.Mailbox
}

const (
	user     = "alice@example.com"
	password = "source-secret-1"
	tgtPass  = "target-secret-2"
)

func newEnv(t *testing.T, srcOpts, tgtOpts dovecottest.Options) *env {
	t.Helper()
	if srcOpts.Separator == "" {
		srcOpts.Separator, srcOpts.Prefix = ".", "INBOX."
		srcOpts.SpecialUse = map[string]string{"Sent": `\Sent`, "Trash": `\Trash`, "Drafts": `\Drafts`, "Junk": `\Junk`}
	}
	if srcOpts.Users == nil {
		srcOpts.Users = map[string]string{user: password, "bob@example.com": "bob-pass"}
	}
	if tgtOpts.Separator == "" {
		tgtOpts.Separator = "/"
		tgtOpts.SpecialUse = map[string]string{"Sent Items": `\Sent`, "Deleted Items": `\Trash`, "Junk Email": `\Junk`, "Drafts": `\Drafts`, "Archive": `\Archive`}
	}
	if tgtOpts.Users == nil {
		tgtOpts.Users = map[string]string{user: tgtPass, "bob@example.com": "bob-target"}
	}
	e := &env{src: dovecottest.Start(t, srcOpts), tgt: dovecottest.Start(t, tgtOpts), st: store.NewMemory()}
	var err error
	if e.srcFwd, err = netem.New(e.src.Addr(), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.srcFwd.Close() })
	if e.tgtFwd, err = netem.New(e.tgt.Addr(), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.tgtFwd.Close() })
	e.mb = config.Mailbox{Email: user, UserName: user, Password: password, TargetUserName: user, TargetPassword: tgtPass}
	return e
}

func endpoint(t *testing.T, addr string) imapconn.Endpoint {
	ep, err := imapconn.ParseURL("imap+plain://"+addr, false)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func (e *env) engine(t *testing.T, mod ...func(*Options)) *Engine {
	o := Options{Source: endpoint(t, e.srcFwd.Addr()), Target: endpoint(t, e.tgtFwd.Addr()), Log: zaptest.NewLogger(t), Retries: -1, RecoverySettle: time.Second}
	for _, m := range mod {
		m(&o)
	}
	return New(e.st, o)
}

// pass runs one pass over alice's mailbox and fails the test on a
// mailbox-level error.
func (e *env) pass(t *testing.T, mod ...func(*Options)) *MailboxResult {
	t.Helper()
	res := e.engine(t, mod...).SyncMailbox(context.Background(), e.mb)
	if res.Err != nil {
		t.Fatalf("pass failed: %v", res.Err)
	}
	return res
}

// msg builds a realistic message; body is padded to about size bytes.
type msg struct {
	id      string // Message-ID without brackets; "" for none
	subject string
	date    time.Time
	size    int
	extra   string // extra header lines
	lf      bool   // bare LF line endings
}

func (m msg) raw() string {
	nl := "\r\n"
	if m.lf {
		nl = "\n"
	}
	var b strings.Builder
	if m.id != "" {
		fmt.Fprintf(&b, "Message-ID: <%s>%s", m.id, nl)
	}
	fmt.Fprintf(&b, "Date: %s%sFrom: Bob <bob@example.com>%sTo: Alice <alice@example.com>%sSubject: %s%s",
		m.date.Format(time.RFC1123Z), nl, nl, nl, m.subject, nl)
	b.WriteString(m.extra)
	b.WriteString("MIME-Version: 1.0" + nl + "Content-Type: text/plain; charset=utf-8" + nl + nl)
	line := "The quick brown fox jumps over the lazy dog, again and again." + nl
	for b.Len() < m.size {
		b.WriteString(line)
	}
	return b.String()
}

func appendMsg(t testing.TB, c *imapclient.Client, folder string, m msg, flags ...imap.Flag) imap.UID {
	t.Helper()
	raw := m.raw()
	cmd := c.Append(folder, int64(len(raw)), &imap.AppendOptions{Flags: flags, Time: m.date})
	if _, err := io.WriteString(cmd, raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append to %q: %v", folder, err)
	}
	return data.UID
}

func create(t testing.TB, c *imapclient.Client, folders ...string) {
	t.Helper()
	for _, f := range folders {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatalf("create %q: %v", f, err)
		}
	}
}

// item is a message as a test compares it: body hash, flags, date.
type item struct {
	hash  string
	flags string
	date  int64
}

// snapshot reads every message of every folder, keyed by folder name.
func snapshot(t *testing.T, c *imapclient.Client) map[string][]item {
	t.Helper()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]item{}
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) {
			continue
		}
		sel, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("select %q: %v", l.Mailbox, err)
		}
		if sel.NumMessages == 0 {
			continue
		}
		section := &imap.FetchItemBodySection{Peek: true}
		msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			var flags []string
			for _, f := range m.Flags {
				if !strings.EqualFold(string(f), `\Recent`) {
					flags = append(flags, string(f))
				}
			}
			slices.Sort(flags)
			out[l.Mailbox] = append(out[l.Mailbox], item{
				hash:  fmt.Sprintf("%x", sha256.Sum256(m.FindBodySection(section)))[:16],
				flags: strings.Join(flags, " "),
				date:  m.InternalDate.Unix(),
			})
		}
		slices.SortFunc(out[l.Mailbox], func(a, b item) int { return strings.Compare(a.hash+a.flags, b.hash+b.flags) })
	}
	return out
}

// expectSame checks that the target holds exactly the source's messages
// under the mapped folder names (want maps source → target names).
func (e *env) expectSame(t *testing.T, want map[string]string) {
	t.Helper()
	src := snapshot(t, e.src.Dial(t, user))
	tgt := snapshot(t, e.tgt.Dial(t, user))
	for s, tname := range want {
		if !slices.Equal(src[s], tgt[tname]) {
			t.Errorf("folder %q → %q differs:\nsource %v\ntarget %v", s, tname, src[s], tgt[tname])
		}
	}
	for tname, items := range tgt {
		found := false
		for _, w := range want {
			found = found || w == tname
		}
		if !found && len(items) > 0 {
			t.Errorf("unexpected target folder %q with %d messages", tname, len(items))
		}
	}
}

var base = time.Date(2024, 5, 17, 9, 30, 0, 0, time.UTC)
