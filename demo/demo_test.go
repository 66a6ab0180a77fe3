package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap/zaptest"

	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/store"
	mfsync "github.com/mailferry/mailferry/sync"
)

var testNow = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// expectedTarget is where each source folder of the layouts must land.
var expectedTarget = map[string]string{
	"Sent": "Sent Items", "Sent Messages": "Sent Items",
	"Trash": "Deleted Items", "Deleted Messages": "Deleted Items", "Trash/2023": "Deleted Items/2023",
	"Junk": "Junk Email", "Spam": "Junk Email",
}

func targetName(source string) string {
	if t, ok := expectedTarget[source]; ok {
		return t
	}
	return source
}

// countingProgress checks that the first pass reports to Progress.
type countingProgress struct {
	planned, copied, done atomic.Int64
	mu                    gosync.Mutex
	bytes                 int64
}

func (p *countingProgress) MailboxPlanned(string, int, int64) { p.planned.Add(1) }
func (p *countingProgress) MessageCopied(_ string, n int64) {
	p.copied.Add(1)
	p.mu.Lock()
	p.bytes += n
	p.mu.Unlock()
}
func (p *countingProgress) MailboxDone(*mfsync.MailboxResult) { p.done.Add(1) }

// TestRun runs the demo as `mailferry demo` does and checks, while the
// servers still run, that the target holds exactly the source's messages
// under Exchange's folder names.
func TestRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	var progress countingProgress
	var servers *Servers
	res, err := Run(ctx, &out, Options{
		Now:      testNow,
		Progress: &progress,
		Log:      zaptest.NewLogger(t),
		AfterSync: func(ctx context.Context, s *Servers, w io.Writer) error {
			servers = s
			verifyMigrated(t, ctx, s, true)
			checkSubscriptions(t, ctx, s)
			fmt.Fprintln(w, "(checked by the test)")
			return nil
		},
	})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if servers == nil {
		t.Fatal("AfterSync was not called")
	}
	if servers.Messages < 300 || len(servers.Mailboxes) != DefaultUsers {
		t.Errorf("source has %d messages in %d mailboxes, want a few hundred in %d", servers.Messages, len(servers.Mailboxes), DefaultUsers)
	}

	if !res.First.Complete() || res.First.FailedMailboxes > 0 {
		t.Errorf("first pass incomplete: %+v", res.First)
	}
	if res.First.Copied != servers.Messages || res.First.Bytes != servers.Bytes {
		t.Errorf("first pass copied %d messages (%d bytes), source has %d (%d bytes)", res.First.Copied, res.First.Bytes, servers.Messages, servers.Bytes)
	}
	if got := progress.copied.Load(); got != int64(servers.Messages) || progress.bytes != servers.Bytes {
		t.Errorf("Progress heard of %d messages (%d bytes), want %d (%d)", got, progress.bytes, servers.Messages, servers.Bytes)
	}
	if progress.planned.Load() != int64(DefaultUsers) || progress.done.Load() != int64(DefaultUsers) {
		t.Errorf("Progress: %d planned, %d done, want %d each (first pass only)", progress.planned.Load(), progress.done.Load(), DefaultUsers)
	}
	checkNoop(t, res.Second)

	for _, want := range []string{"Source: ", "Target: ", "First pass: ", "First pass done", "Second pass: ",
		"Second pass done in", ": 0 messages (0 bytes) copied", "(checked by the test)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, mb := range servers.Mailboxes {
		if strings.Contains(out.String(), mb.Password.Reveal()) || strings.Contains(out.String(), mb.TargetPassword.Reveal()) {
			t.Errorf("output shows a password without Keep")
		}
	}
}

// checkNoop checks that a pass changed nothing.
func checkNoop(t *testing.T, s *mfsync.Summary) {
	t.Helper()
	if s.Copied != 0 || s.Skipped != 0 || s.Failed != 0 || s.FailedMailboxes != 0 {
		t.Errorf("no-op pass: copied %d, skipped %d, failed %d, failed mailboxes %d; want all 0", s.Copied, s.Skipped, s.Failed, s.FailedMailboxes)
	}
	for _, m := range s.Mailboxes {
		for _, f := range m.Folders {
			if f.Moved+f.Deleted+f.FlagsUpdated != 0 {
				t.Errorf("no-op pass, %s %q: %d moved, %d deleted, %d flags updated", m.Mailbox, f.Source, f.Moved, f.Deleted, f.FlagsUpdated)
			}
		}
	}
}

// TestKeep checks that Keep holds the servers until ctx ends, then stops
// them, and prints how to log in.
func TestKeep(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	var addr string
	_, err := Run(ctx, &out, Options{Users: 1, MessagesPerUser: 10, Now: testNow, Keep: true,
		AfterSync: func(_ context.Context, s *Servers, _ io.Writer) error {
			addr = s.Source
			// Still serving after the passes; Keep waits for ctx.
			c := login(t, ctx, s.SourceEndpoint(), s.Mailboxes[0].UserName, s.Mailboxes[0].Password.Reveal())
			c.Close()
			cancel()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "alice@example.com") || !strings.Contains(out.String(), "alice-source-secret") {
		t.Errorf("Keep output does not say how to log in:\n%s", out.String())
	}
	if _, err := imapconn.Dial(context.Background(), endpoint(addr), nil, nil); err == nil {
		t.Error("source still serving after Run returned")
	}
}

// TestDelta changes the source after the migration, the way users do, and
// checks that the next pass mirrors it on the demo target: MOVE with
// COPYUID, UID EXPUNGE and STORE on imapmemserver.
func TestDelta(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Options{Users: 1, MessagesPerUser: 50, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st := store.NewMemory()
	engine := mfsync.New(st, mfsync.Options{Source: s.SourceEndpoint(), Target: s.TargetEndpoint(), Log: zaptest.NewLogger(t), Retries: -1})
	if sum := engine.Run(ctx, s.Mailboxes); sum.Copied != s.Messages || !sum.Complete() {
		t.Fatalf("first pass copied %d of %d: %+v", sum.Copied, s.Messages, sum.Mailboxes[0])
	}

	mb := s.Mailboxes[0]
	c := login(t, ctx, s.SourceEndpoint(), mb.UserName, mb.Password.Reveal())
	defer c.Close()
	uids := func(folder string) []imap.UID {
		if _, err := c.Select(folder, nil).Wait(); err != nil {
			t.Fatal(err)
		}
		data, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return data.AllUIDs()
	}
	inbox := uids("INBOX")
	if len(inbox) < 5 {
		t.Fatalf("INBOX has %d messages", len(inbox))
	}
	// Two messages moved to a nested folder, two flag changes.
	if _, err := c.Move(imap.UIDSetNum(inbox[0], inbox[1]), "Projects/2024/Q1").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(inbox[2]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(inbox[3]), &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	// One message deleted from Sent.
	sent := uids("Sent")
	if err := c.Store(imap.UIDSetNum(sent[0]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(sent[0])).Close(); err != nil {
		t.Fatal(err)
	}
	// One new message.
	msg := "From: Tom Fischer <tom@fischer-design.de>\r\nTo: alice@example.com\r\nSubject: Neue Nachricht\r\n" +
		"Message-ID: <delta-1@fischer-design.de>\r\nDate: Mon, 02 Mar 2026 11:00:00 +0100\r\n\r\nHallo!\r\n"
	app := c.Append("Clients/Müller GmbH", int64(len(msg)), &imap.AppendOptions{Time: testNow.Add(-time.Hour)})
	io.WriteString(app, msg)
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Wait(); err != nil {
		t.Fatal(err)
	}

	sum := engine.Run(ctx, s.Mailboxes)
	var moved, deleted, flagged int
	for _, f := range sum.Mailboxes[0].Folders {
		moved += f.Moved
		deleted += f.Deleted
		flagged += f.FlagsUpdated
	}
	if sum.Copied != 1 || moved != 2 || deleted != 1 || flagged != 2 || !sum.Complete() {
		t.Errorf("delta pass: copied %d, moved %d, deleted %d, flags updated %d; want 1, 2, 1, 2 (%+v)", sum.Copied, moved, deleted, flagged, sum.Mailboxes[0])
	}
	verifyMigrated(t, ctx, s, false)
	checkNoop(t, engine.Run(ctx, s.Mailboxes))
}

func login(t *testing.T, ctx context.Context, ep imapconn.Endpoint, user, pass string) *imapclient.Client {
	t.Helper()
	c, err := imapconn.Dial(ctx, ep, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := imapconn.Login(c, user, pass); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// stored is a message as a check compares it.
type stored struct {
	hash  [32]byte
	date  int64
	flags string
}

// verifyMigrated checks every mailbox: each source folder's messages (body,
// INTERNALDATE, the flags Exchange keeps) are in the expected target
// folder, and the target holds nothing else. The source is read over IMAP,
// or, quicker, taken from the generated corpus when it is unchanged.
func verifyMigrated(t *testing.T, ctx context.Context, s *Servers, fromCorpus bool) {
	t.Helper()
	for i, mb := range s.Mailboxes {
		var src map[string][]stored
		if fromCorpus {
			src = corpusFolders(s.accounts[i])
		} else {
			src = readAll(t, ctx, s.SourceEndpoint(), mb.UserName, mb.Password.Reveal())
		}
		tgt := readAll(t, ctx, s.TargetEndpoint(), mb.TargetUserName, mb.TargetPassword.Reveal())
		want := map[string][]stored{}
		for _, name := range TargetFolders {
			want[name] = nil
		}
		for folder, msgs := range src {
			name := targetName(folder)
			if _, ok := want[name]; !ok {
				want[name] = nil // an empty folder must exist too
			}
			for _, m := range msgs {
				m.flags = keptFlags(m.flags)
				want[name] = append(want[name], m)
			}
			if _, ok := tgt[name]; !ok {
				t.Errorf("%s: source folder %q: no target folder %q", mb.Email, folder, name)
			}
		}
		for name, msgs := range tgt {
			w, ok := want[name]
			if !ok {
				t.Errorf("%s: unexpected target folder %q", mb.Email, name)
				continue
			}
			sortStored(w)
			sortStored(msgs)
			if !slices.Equal(w, msgs) {
				t.Errorf("%s: target folder %q holds %d messages, want %d; differences: %s", mb.Email, name, len(msgs), len(w), diff(w, msgs))
			}
		}
	}
}

// checkSubscriptions checks that the target folders made from subscribed
// source folders are subscribed, and the others not.
func checkSubscriptions(t *testing.T, ctx context.Context, s *Servers) {
	t.Helper()
	for i, mb := range s.Mailboxes {
		want := slices.Clone(TargetFolders)
		for _, f := range s.accounts[i].Folders {
			if f.Subscribed && !slices.Contains(want, targetName(f.Name)) {
				want = append(want, targetName(f.Name))
			}
		}
		c := login(t, ctx, s.TargetEndpoint(), mb.TargetUserName, mb.TargetPassword.Reveal())
		list, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range list {
			got = append(got, l.Mailbox)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: target subscriptions %q, want %q", mb.Email, got, want)
		}
	}
}

func corpusFolders(a *account) map[string][]stored {
	out := map[string][]stored{}
	for _, f := range a.Folders {
		out[f.Name] = []stored{}
		for _, m := range f.Messages {
			out[f.Name] = append(out[f.Name], stored{sha256.Sum256(m.Raw), m.Date.Unix(), flagString(m.Flags)})
		}
	}
	return out
}

func flagString(flags []imap.Flag) string {
	var out []string
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			out = append(out, string(f))
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func keptFlags(flags string) string {
	var out []string
	for _, f := range strings.Fields(flags) {
		if exchangeFlags.keeps(imap.Flag(f)) {
			out = append(out, f)
		}
	}
	return strings.Join(out, " ")
}

func sortStored(s []stored) {
	slices.SortFunc(s, func(a, b stored) int {
		if c := bytes.Compare(a.hash[:], b.hash[:]); c != 0 {
			return c
		}
		if a.date != b.date {
			return int(a.date - b.date)
		}
		return strings.Compare(a.flags, b.flags)
	})
}

func diff(want, got []stored) string {
	var d []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			d = append(d, fmt.Sprintf("missing %x %s [%s]", w.hash[:4], time.Unix(w.date, 0).UTC().Format(time.DateTime), w.flags))
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			d = append(d, fmt.Sprintf("unexpected %x %s [%s]", g.hash[:4], time.Unix(g.date, 0).UTC().Format(time.DateTime), g.flags))
		}
	}
	if len(d) > 10 {
		d = append(d[:10], "…")
	}
	return strings.Join(d, "; ")
}

// readAll reads every folder of a mailbox: folder → messages.
func readAll(t *testing.T, ctx context.Context, ep imapconn.Endpoint, user, pass string) map[string][]stored {
	t.Helper()
	c := login(t, ctx, ep, user, pass)
	defer c.Close()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]stored{}
	for _, l := range list {
		sel, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		out[l.Mailbox] = []stored{}
		if sel.NumMessages == 0 {
			continue
		}
		section := &imap.FetchItemBodySection{Peek: true}
		msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != int(sel.NumMessages) {
			t.Fatalf("%s %q: fetched %d of %d messages", user, l.Mailbox, len(msgs), sel.NumMessages)
		}
		for _, m := range msgs {
			out[l.Mailbox] = append(out[l.Mailbox], stored{sha256.Sum256(m.FindBodySection(section)), m.InternalDate.Unix(), flagString(m.Flags)})
		}
	}
	return out
}

// TestStartStop checks Start's mailbox list and that Close stops serving.
func TestStartStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Start(ctx, Options{Users: 4, MessagesPerUser: 5, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Mailboxes) != 4 || s.Messages != 20 {
		t.Errorf("%d mailboxes, %d messages; want 4, 20", len(s.Mailboxes), s.Messages)
	}
	seen := map[string]bool{}
	for _, mb := range s.Mailboxes {
		if mb.UserName != mb.Email || mb.TargetUserName != mb.Email || mb.Password == "" || mb.TargetPassword == mb.Password {
			t.Errorf("mailbox %s: want source and target logins with distinct passwords", mb.Email)
		}
		seen[mb.Email] = true
	}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if !seen[u+"@example.com"] {
			t.Errorf("no mailbox for %s", u)
		}
	}
	mb := s.Mailboxes[0]
	c := login(t, ctx, s.TargetEndpoint(), mb.TargetUserName, mb.TargetPassword.Reveal())
	if err := c.Login(mb.UserName, mb.Password.Reveal()).Wait(); err == nil {
		t.Error("target accepts the source password")
	}
	c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := imapconn.Dial(ctx, s.SourceEndpoint(), nil, nil); err == nil {
		t.Error("source still serving after Close")
	}
}

// TestCorpus checks the generated mail: deterministic, and with the cases
// the demo is meant to show.
func TestCorpus(t *testing.T) {
	t.Parallel()
	a := newCorpus(7, 3, 150, testNow)
	small, again, other := newCorpus(7, 3, 20, testNow), newCorpus(7, 3, 20, testNow), newCorpus(8, 3, 20, testNow)
	for i, acct := range small {
		for j, f := range acct.Folders {
			for k, m := range f.Messages {
				o := again[i].Folders[j].Messages[k]
				if !bytes.Equal(m.Raw, o.Raw) || !m.Date.Equal(o.Date) || !slices.Equal(m.Flags, o.Flags) {
					t.Fatalf("same seed, different message: %s %s #%d", acct.Email, f.Name, k)
				}
				if k < len(other[i].Folders[j].Messages) && bytes.Equal(m.Raw, other[i].Folders[j].Messages[k].Raw) {
					t.Errorf("another seed, same message: %s %s #%d", acct.Email, f.Name, k)
				}
			}
		}
	}
	var total, noID, encoded, seen, flagged, answered, keyword int
	var attachments []int
	for _, acct := range a {
		for _, f := range acct.Folders {
			for k, m := range f.Messages {
				total++
				header, _, _ := bytes.Cut(m.Raw, []byte("\r\n\r\n"))
				if !bytes.Contains(header, []byte("\r\nMessage-ID: ")) {
					noID++
				}
				if bytes.Contains(header, []byte("=?utf-8?")) {
					encoded++
				}
				if m.Attachment > 0 {
					attachments = append(attachments, m.Attachment)
				}
				if bytes.Contains(m.Raw, []byte("\n\n")) || bytes.Count(m.Raw, []byte("\n")) != bytes.Count(m.Raw, []byte("\r\n")) {
					t.Errorf("%s %s #%d: bare LF", acct.Email, f.Name, k)
				}
				if m.Date.After(testNow) || m.Date.Before(testNow.AddDate(-2, 0, -1)) || m.Date.Nanosecond() != 0 {
					t.Errorf("%s %s #%d: date %v not in the two years before %v", acct.Email, f.Name, k, m.Date, testNow)
				}
				for _, fl := range m.Flags {
					switch fl {
					case imap.FlagSeen:
						seen++
					case imap.FlagFlagged:
						flagged++
					case imap.FlagAnswered:
						answered++
					case "$label1":
						keyword++
					}
				}
			}
		}
	}
	if total != 450 {
		t.Errorf("%d messages, want 450", total)
	}
	if noID != 1 {
		t.Errorf("%d messages without Message-ID, want 1", noID)
	}
	if encoded < 50 {
		t.Errorf("only %d messages with RFC 2047 encoded headers", encoded)
	}
	if seen < total/2 || flagged == 0 || answered == 0 || keyword == 0 {
		t.Errorf("flags: %d seen, %d flagged, %d answered, %d $label1 of %d", seen, flagged, answered, keyword, total)
	}
	if len(attachments) < 3 {
		t.Errorf("%d attachments, want a few", len(attachments))
	}
	for _, n := range attachments {
		if n < minAttachment || n > maxAttachment {
			t.Errorf("attachment of %d bytes, want 100 KB–2 MB", n)
		}
	}
}
