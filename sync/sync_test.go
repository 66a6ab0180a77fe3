package sync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/internal/dovecottest"
)

var mapped = map[string]string{
	"INBOX":                         "INBOX",
	"INBOX.Sent":                    "Sent Items",
	"INBOX.Sent.2023":               "Sent Items/2023",
	"INBOX.Trash":                   "Deleted Items",
	"INBOX.Junk":                    "Junk Email",
	"INBOX.Drafts":                  "Drafts",
	"INBOX.Projects":                "Projects",
	"INBOX.Projects.2024":           "Projects/2024",
	"INBOX.Clients":                 "Clients",
	"INBOX.Clients.Müller GmbH":     "Clients/Müller GmbH",
	"INBOX.R&D":                     "R&D",
	"INBOX.Calendar":                "Calendar (migrated)",
	"INBOX.Deleted Messages.Nested": "Deleted Messages/Nested",
}

// seedMailbox fills alice's source mailbox with the cases that trip
// migrations: special folders, nesting, non-ASCII names, messages without
// Message-ID, duplicate Message-IDs, 8-bit headers, bare LF, keywords.
func seedMailbox(t *testing.T, e *env) {
	c := e.src.Dial(t, user)
	create(t, c, "INBOX.Sent.2023", "INBOX.Projects", "INBOX.Projects.2024", "INBOX.Clients", "INBOX.Clients.Müller GmbH",
		"INBOX.R&D", "INBOX.Calendar", "INBOX.Deleted Messages.Nested")
	n := 0
	add := func(folder string, m msg, flags ...imap.Flag) {
		n++
		if m.id == "" && m.subject == "" {
			m.id = fmt.Sprintf("m%d@example.com", n)
		}
		if m.subject == "" {
			m.subject = fmt.Sprintf("Message %d", n)
		}
		if m.date.IsZero() {
			m.date = base.AddDate(0, 0, -n)
		}
		if m.size == 0 {
			m.size = 600 + n*97
		}
		appendMsg(t, c, folder, m, flags...)
	}
	for range 12 {
		add("INBOX", msg{})
	}
	add("INBOX", msg{}, imap.FlagSeen, imap.FlagFlagged)
	add("INBOX", msg{}, imap.FlagSeen, "$Work", "NonJunk")
	add("INBOX", msg{id: "", subject: "no message id at all"})
	add("INBOX", msg{id: "", subject: "no message id at all", date: base.AddDate(0, -1, 0)})
	add("INBOX", msg{id: "dup@example.com", subject: "first of a duplicate pair"})
	add("INBOX", msg{id: "dup@example.com", subject: "second of a duplicate pair"})
	add("INBOX", msg{subject: "8-bit header", extra: "X-Note: Grüße aus Köln\r\n"})
	add("INBOX", msg{subject: "bare LF", lf: true})
	add("INBOX", msg{size: 300 << 10}, imap.FlagAnswered)
	for range 4 {
		add("INBOX.Sent", msg{}, imap.FlagSeen)
	}
	add("INBOX.Sent.2023", msg{}, imap.FlagSeen)
	add("INBOX.Trash", msg{}, imap.FlagSeen)
	add("INBOX.Junk", msg{})
	add("INBOX.Drafts", msg{}, imap.FlagDraft)
	add("INBOX.Projects.2024", msg{})
	add("INBOX.Clients.Müller GmbH", msg{subject: "=?utf-8?q?Angebot_f=C3=BCr_M=C3=BCller?="})
	add("INBOX.R&D", msg{})
	add("INBOX.Calendar", msg{})
	add("INBOX.Deleted Messages.Nested", msg{})
}

func TestFullMigrationAndNoOpPass(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	seedMailbox(t, e)

	res := e.pass(t)
	if res.Copied != 34 || !res.OK() {
		t.Fatalf("first pass: copied %d, skipped %v, failed %d, folder errors %d", res.Copied, res.SkippedBy(), res.Failed, res.FolderErrors)
	}
	e.expectSame(t, mapped)

	// Nothing changed: nothing copied, no message body read.
	before := e.srcFwd.Down.Load()
	res = e.pass(t)
	if res.Copied != 0 || !res.OK() {
		t.Fatalf("second pass copied %d (%+v)", res.Copied, res)
	}
	if read := e.srcFwd.Down.Load() - before; read > 8<<10 {
		t.Errorf("no-op pass read %d bytes from the source; want only status replies", read)
	}
	e.expectSame(t, mapped)
}

func TestFlagsWithoutCondStore(t *testing.T) {
	e := newEnv(t, dovecottest.Options{NoCondStore: true}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	for i := range 5 {
		appendMsg(t, c, "INBOX", msg{id: fmt.Sprintf("f%d@x", i), subject: "s", date: base, size: 500})
	}
	e.pass(t)
	if err := c.Store(imap.SeqSetNum(2, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}}, nil).Close(); err == nil {
		t.Fatal("STORE without SELECT succeeded")
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(2, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	before := e.srcFwd.Down.Load()
	res := e.pass(t)
	if res.Copied != 0 || res.Folders[0].FlagsUpdated != 2 {
		t.Fatalf("delta pass: %+v %+v", res, res.Folders[0])
	}
	if read := e.srcFwd.Down.Load() - before; read > 8<<10 {
		t.Errorf("flag pass read %d bytes from the source", read)
	}
	e.expectSame(t, map[string]string{"INBOX": "INBOX"})
}

func TestVerify(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{MaxMessageSize: 50_000})
	seedN(t, e, "INBOX", 8, 2000)
	appendMsg(t, e.src.Dial(t, user), "INBOX", msg{id: "huge@x", subject: "over the target's limit", date: base, size: 60_000})
	e.pass(t)
	eng := e.engine(t)
	res := eng.Verify(context.Background(), e.mb)
	if !res.Equal() || res.Folders[0].KnownSkipped != 1 {
		t.Fatalf("after a full pass: %+v %+v", res, res.Folders)
	}

	tc := e.tgt.Dial(t, user)
	if _, err := tc.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	mustStore(t, tc, imap.UIDSetNum(3), imap.StoreFlagsAdd, imap.FlagDeleted)
	if err := tc.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, tc, "INBOX", msg{id: "foreign@x", subject: "arrived at the target directly", date: base, size: 500})
	res = eng.Verify(context.Background(), e.mb)
	var inbox *FolderCheck
	for _, f := range res.Folders {
		if f.Source == "INBOX" {
			inbox = f
		}
	}
	if res.Equal() || len(inbox.Missing) != 1 || len(inbox.Unexpected) != 1 || inbox.Unexpected[0].Subject != "arrived at the target directly" {
		t.Fatalf("after tampering: %+v", inbox)
	}
}

func TestPreflight(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	create(t, c, "INBOX.Foo", "INBOX.foo", "INBOX.Files")
	seedN(t, e, "INBOX", 5, 1000)
	appendMsg(t, c, "INBOX.Foo", msg{id: "big@x", subject: "a big one", date: base, size: 200_000})
	eng := e.engine(t, func(o *Options) { o.MaxMessageSize = 100_000 })
	res := eng.Preflight(context.Background(), e.mb)
	if res.Verdict != VerdictWarnings || res.Messages != 6 || len(res.OverSize) != 1 || res.OverSize[0].Subject != "a big one" || res.ToCopy != 5 {
		t.Fatalf("preflight: %+v", res)
	}
	if len(res.Warnings) != 3 { // Foo/foo collision, reserved Files, the big message
		t.Errorf("warnings: %q", res.Warnings)
	}
	// Nothing was copied, and the scratch folder is gone.
	tgt := snapshot(t, e.tgt.Dial(t, user))
	if len(tgt) != 0 {
		t.Errorf("preflight left messages on the target: %v", tgt)
	}
	list, _ := e.tgt.Dial(t, user).List("", "mailferry-preflight-*", nil).Collect()
	if len(list) != 0 {
		t.Errorf("scratch folder left behind: %v", list)
	}

	e.mb.Password = "wrong"
	if res := eng.Preflight(context.Background(), e.mb); res.Verdict != VerdictBlocked || len(res.Problems) != 1 {
		t.Fatalf("wrong password: %+v", res)
	}
}

func TestExchangeOptions(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	appendMsg(t, c, "INBOX", msg{id: "r@x", subject: "please confirm", date: base, size: 800,
		extra: "Disposition-Notification-To: bob@example.com\r\n"}, imap.FlagFlagged, "$MDNSent")
	e.pass(t, func(o *Options) { o.Exchange, o.DropMDNSent, o.DisarmReadReceipts = true, true, true })
	tc := e.tgt.Dial(t, user)
	if _, err := tc.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := tc.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%v %d", err, len(msgs))
	}
	m := msgs[0]
	body := string(m.FindBodySection(section))
	if !slices.Contains(m.Flags, imap.FlagFlagged) || slices.Contains(m.Flags, "$MDNSent") ||
		strings.Contains(body, "Disposition-Notification-To") || !strings.Contains(body, "X-MF-Receipt-Request-Disarm: bob@example.com") {
		t.Fatalf("flags %v, body:\n%s", m.Flags, body)
	}
}

// TestDateFilter: --since and --before copy only messages whose
// INTERNALDATE is in [since, before); the others are counted as filtered.
func TestDateFilter(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	for _, age := range []int{-1, 0, 1, 2, 5} { // hours before base; -1 is after it
		appendMsg(t, c, "INBOX", msg{id: fmt.Sprintf("age%d@x", age), subject: fmt.Sprintf("%d hours old", age), date: base.Add(-time.Duration(age) * time.Hour), size: 1500})
	}
	res := e.pass(t, func(o *Options) { o.Since, o.Before = base.Add(-3*time.Hour), base })
	var inbox *FolderResult
	for _, f := range res.Folders {
		if f.Source == "INBOX" {
			inbox = f
		}
	}
	if res.Copied != 2 || inbox == nil || inbox.Filtered != 3 {
		t.Fatalf("copied %d, INBOX %+v; want 2 copied (1 and 2 hours old), 3 filtered", res.Copied, inbox)
	}
	subjects := folderSubjects(t, e.tgt.Dial(t, user), "INBOX")
	slices.Sort(subjects)
	if want := []string{"1 hours old", "2 hours old"}; !slices.Equal(subjects, want) {
		t.Fatalf("target INBOX holds %q, want %q", subjects, want)
	}
}

// TestSubscriptions: a folder subscribed on the source is subscribed on
// the target under its new name; an unsubscribed one is not.
func TestSubscriptions(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	create(t, c, "INBOX.Projects", "INBOX.Old")
	if err := c.Subscribe("INBOX.Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Unsubscribe("INBOX.Old").Wait(); err != nil {
		t.Fatal(err)
	}
	e.pass(t)
	list, err := e.tgt.Dial(t, user).List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	subscribed := map[string]bool{}
	for _, l := range list {
		subscribed[l.Mailbox] = true
	}
	if !subscribed["Projects"] || subscribed["Old"] {
		t.Fatalf("target subscriptions %v: want Projects and not Old", subscribed)
	}
}

// folderSubjects returns the subjects of a folder's messages.
func folderSubjects(t *testing.T, c *imapclient.Client, folder string) []string {
	t.Helper()
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Envelope.Subject)
	}
	return out
}
