package sync

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/internal/dovecottest"
	"github.com/mailferry/mailferry/internal/netem"
)

// TestDelta: new messages, flag changes, deletions and moves on the source
// reach the target as such; a moved message is moved, not uploaded again.
func TestDelta(t *testing.T) {
	for _, noCondStore := range []bool{false, true} {
		t.Run(fmt.Sprintf("nocondstore=%v", noCondStore), func(t *testing.T) {
			e := newEnv(t, dovecottest.Options{NoCondStore: noCondStore}, dovecottest.Options{})
			c := e.src.Dial(t, user)
			create(t, c, "INBOX.Archive2020")
			for i := range 20 {
				appendMsg(t, c, "INBOX", msg{id: fmt.Sprintf("d%d@x", i), subject: fmt.Sprintf("s%d", i), date: base.Add(-time.Duration(i) * time.Hour), size: 2000})
			}
			e.pass(t)

			// 3 new, flags on 2, delete 2, move 3 to another folder.
			for i := 20; i < 23; i++ {
				appendMsg(t, c, "INBOX", msg{id: fmt.Sprintf("d%d@x", i), subject: "new", date: base.Add(time.Hour), size: 2000})
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			mustStore(t, c, imap.UIDSetNum(1, 2), imap.StoreFlagsAdd, imap.FlagSeen, "$Label1")
			mustStore(t, c, imap.UIDSetNum(3, 4), imap.StoreFlagsAdd, imap.FlagDeleted)
			if err := c.Expunge().Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Move(imap.UIDSetNum(5, 6, 7), "INBOX.Archive2020").Wait(); err != nil {
				t.Fatal(err)
			}
			sentBefore := e.tgtFwd.Up.Load()
			res := e.pass(t)
			var inbox, archive *FolderResult
			for _, f := range res.Folders {
				switch f.Source {
				case "INBOX":
					inbox = f
				case "INBOX.Archive2020":
					archive = f
				}
			}
			if res.Copied != 3 || inbox.Deleted != 2 || inbox.FlagsUpdated != 2 || archive.Moved != 3 {
				t.Fatalf("delta: copied %d, inbox %+v, archive %+v", res.Copied, inbox, archive)
			}
			if up := e.tgtFwd.Up.Load() - sentBefore; up > 3*2000+4000 {
				t.Errorf("delta sent %d bytes to the target; moved messages were uploaded again?", up)
			}
			e.expectSame(t, map[string]string{"INBOX": "INBOX", "INBOX.Archive2020": "Archive2020"})
			if res := e.pass(t); res.Copied != 0 {
				t.Fatalf("pass after delta copied %d", res.Copied)
			}
		})
	}
}

func mustStore(t *testing.T, c *imapclient.Client, set imap.UIDSet, op imap.StoreFlagsOp, flags ...imap.Flag) {
	t.Helper()
	if err := c.Store(set, &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Close(); err != nil {
		t.Fatal(err)
	}
}

// TestItemLimit: with --max-items the newest messages of the whole mailbox
// are copied and the oldest beyond the limit are skipped and reported; a
// later pass counts the recorded messages alike whether it scans folders
// whole (no CONDSTORE) or only what changed (CONDSTORE), so a full mailbox
// takes no more.
func TestItemLimit(t *testing.T) {
	for _, noCondStore := range []bool{false, true} {
		t.Run(fmt.Sprintf("nocondstore=%v", noCondStore), func(t *testing.T) {
			e := newEnv(t, dovecottest.Options{NoCondStore: noCondStore}, dovecottest.Options{})
			c := e.src.Dial(t, user)
			create(t, c, "INBOX.Archive2020")
			for i := range 6 { // i hours old
				appendMsg(t, c, "INBOX", msg{id: fmt.Sprintf("i%d@x", i), subject: fmt.Sprintf("in %d", i), date: base.Add(-time.Duration(i) * time.Hour), size: 1500})
			}
			for i := 3; i < 5; i++ { // 3.5 and 4.5 hours old
				appendMsg(t, c, "INBOX.Archive2020", msg{id: fmt.Sprintf("a%d@x", i), subject: fmt.Sprintf("archived %d", i), date: base.Add(-time.Duration(i)*time.Hour - 30*time.Minute), size: 1500})
			}
			limit := func(o *Options) { o.MaxItems = 5 }
			res := e.pass(t, limit)
			var skipped []string
			for _, s := range res.SkippedItems {
				if !strings.HasPrefix(s.Reason, ReasonItemLimit) {
					t.Errorf("skipped %q for %q", s.Subject, s.Reason)
				}
				skipped = append(skipped, s.Subject)
			}
			slices.Sort(skipped)
			if want := []string{"archived 4", "in 4", "in 5"}; res.Copied != 5 || !slices.Equal(skipped, want) {
				t.Fatalf("first pass: copied %d, skipped %q; want 5 and %q", res.Copied, skipped, want)
			}

			appendMsg(t, c, "INBOX", msg{id: "new@x", subject: "newest", date: base.Add(time.Hour), size: 1500})
			res = e.pass(t, limit)
			if res.Copied != 0 || len(res.SkippedItems) != 1 || res.SkippedItems[0].Subject != "newest" {
				t.Fatalf("second pass: copied %d, skipped %+v; want the new message skipped", res.Copied, res.SkippedItems)
			}
		})
	}
}

// TestSparePairs: a delta with new mail in several folders logs in the
// extra copy pair (connectSpares starts it with the scans); a delta of one
// message, or none, logs in the main pair only. Every connection and its
// slot are given back when the pass returns.
func TestSparePairs(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	folders := []string{"INBOX", "INBOX.Clients", "INBOX.Projects"}
	create(t, c, folders[1:]...)
	for _, f := range folders {
		appendMsg(t, c, f, msg{id: f + "-0@x", subject: "first", date: base, size: 1500})
	}
	e.pass(t)

	step := func(name string, add map[string]int, wantLogins int64) {
		t.Helper()
		n := 0
		for f, k := range add {
			for i := range k {
				appendMsg(t, c, f, msg{id: fmt.Sprintf("%s-%s-%d@x", name, f, i), subject: name, date: base.Add(time.Duration(i+1) * time.Minute), size: 1500})
				n++
			}
		}
		srcBefore, tgtBefore := e.srcFwd.Accepted.Load(), e.tgtFwd.Accepted.Load()
		eng := e.engine(t)
		res := eng.SyncMailbox(context.Background(), e.mb)
		if res.Err != nil || res.Copied != n {
			t.Fatalf("%s: copied %d of %d: %v", name, res.Copied, n, res.Err)
		}
		src, tgt := e.srcFwd.Accepted.Load()-srcBefore, e.tgtFwd.Accepted.Load()-tgtBefore
		if src != wantLogins || tgt != wantLogins {
			t.Errorf("%s: %d source and %d target connections, want %d each", name, src, tgt, wantLogins)
		}
		if len(eng.srcSem) != 0 || len(eng.tgtSem) != 0 {
			t.Errorf("%s: %d source and %d target connection slots still held after the pass", name, len(eng.srcSem), len(eng.tgtSem))
		}
	}
	step("several folders", map[string]int{"INBOX": 3, "INBOX.Clients": 2, "INBOX.Projects": 2}, 2)
	step("one message", map[string]int{"INBOX": 1}, 1)
	step("nothing", nil, 1)
	e.expectSame(t, map[string]string{"INBOX": "INBOX", "INBOX.Clients": "Clients", "INBOX.Projects": "Projects"})
}

// TestPrefetch: a delta scan fetches small new messages whole and the copy
// phase sends them from memory; a message over prefetchSize, and every
// message once the budget is spent, is fetched again as usual. The copies
// are exact either way, and the pass gives the whole budget back.
func TestPrefetch(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	create(t, c, "INBOX.Clients")
	appendMsg(t, c, "INBOX", msg{id: "old@x", subject: "old", date: base, size: 1500})
	e.pass(t)

	for _, spent := range []bool{false, true} {
		name := fmt.Sprintf("spent=%v", spent)
		for i := range 3 {
			appendMsg(t, c, "INBOX", msg{id: fmt.Sprintf("%s-%d@x", name, i), subject: name, date: base.Add(time.Duration(i+1) * time.Minute), size: 3000}, imap.FlagSeen)
		}
		appendMsg(t, c, "INBOX.Clients", msg{id: name + "-c@x", subject: name, date: base, size: 2000})
		appendMsg(t, c, "INBOX.Clients", msg{id: name + "-big@x", subject: name + " big", date: base, size: prefetchSize + 30000})
		eng := e.engine(t)
		if spent {
			eng.prefetch.left.Store(0)
		}
		res := eng.SyncMailbox(context.Background(), e.mb)
		if res.Err != nil || res.Copied != 5 {
			t.Fatalf("%s: copied %d of 5: %v", name, res.Copied, res.Err)
		}
		want := int64(prefetchBudget)
		if spent {
			want = 0
		}
		if left := eng.prefetch.left.Load(); left != want {
			t.Errorf("%s: prefetch budget %d after the pass, want %d", name, left, want)
		}
		e.expectSame(t, map[string]string{"INBOX": "INBOX", "INBOX.Clients": "Clients"})
	}
}

// TestPassEndsWhileSparesLogIn: a spare pair still logging in when the
// pass ends (its new messages were moves, nothing to copy) is stopped, and
// each connection gives its slot back once: the source half, logged in
// already, used to be released twice, and the pass hung.
func TestPassEndsWhileSparesLogIn(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	create(t, c, "INBOX.A", "INBOX.B")
	for i := range 2 {
		appendMsg(t, c, "INBOX", msg{id: fmt.Sprintf("m%d@x", i), subject: "m", date: base.Add(time.Duration(i) * time.Minute), size: 1500})
	}
	e.pass(t)
	// A message moved to A and one to B: new UIDs in two folders, so a
	// spare pair logs in, and nothing to copy.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i, to := range []string{"INBOX.A", "INBOX.B"} {
		if _, err := c.Move(imap.UIDSetNum(imap.UID(i+1)), to).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	var logins atomic.Int32
	eng := e.engine(t, func(o *Options) {
		o.TargetLogin = func(ctx context.Context, c *imapclient.Client, mb config.Mailbox) error {
			if logins.Add(1) == 2 { // the spare's: still logging in when the pass ends
				<-ctx.Done()
				return ctx.Err()
			}
			return PasswordLogin(ctx, c, mb)
		}
	})
	done := make(chan *MailboxResult, 1)
	go func() { done <- eng.SyncMailbox(context.Background(), e.mb) }()
	select {
	case res := <-done:
		if res.Err != nil || res.Folders == nil {
			t.Fatalf("pass: %v", res.Err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the pass did not end")
	}
	if logins.Load() != 2 {
		t.Errorf("%d target logins, want 2 (the main pair's and the spare's)", logins.Load())
	}
	if len(eng.srcSem) != 0 || len(eng.tgtSem) != 0 {
		t.Errorf("%d source and %d target slots held after the pass", len(eng.srcSem), len(eng.tgtSem))
	}
}

// TestChangesInSeveralFolders: deletions and flag changes in several
// folders, sent to the target pipelined, all land, each in its folder.
func TestChangesInSeveralFolders(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	folders := []string{"INBOX", "INBOX.Clients", "INBOX.Projects", "INBOX.Sent"}
	create(t, c, folders[1:]...)
	for _, f := range folders {
		for i := range 4 {
			appendMsg(t, c, f, msg{id: fmt.Sprintf("%s-%d@x", f, i), subject: f, date: base.Add(time.Duration(i) * time.Hour), size: 1500})
		}
	}
	e.pass(t)
	for i, f := range folders {
		if _, err := c.Select(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if i != 2 { // Projects: a deletion only
			mustStore(t, c, imap.UIDSetNum(1), imap.StoreFlagsAdd, imap.FlagFlagged, imap.Flag(fmt.Sprintf("$Label%d", i)))
			mustStore(t, c, imap.UIDSetNum(2), imap.StoreFlagsAdd, imap.FlagSeen)
		}
		mustStore(t, c, imap.UIDSetNum(4), imap.StoreFlagsAdd, imap.FlagDeleted)
		if err := c.Expunge().Close(); err != nil {
			t.Fatal(err)
		}
	}
	res := e.pass(t)
	for _, f := range res.Folders {
		if !slices.Contains(folders, f.Source) {
			continue // the source's other special-use folders, empty
		}
		wantFlags := 2
		if f.Source == "INBOX.Projects" {
			wantFlags = 0
		}
		if f.Deleted != 1 || f.FlagsUpdated != wantFlags {
			t.Errorf("folder %q: %d deleted, %d flag updates; want 1 and %d", f.Source, f.Deleted, f.FlagsUpdated, wantFlags)
		}
	}
	e.expectSame(t, map[string]string{"INBOX": "INBOX", "INBOX.Clients": "Clients", "INBOX.Projects": "Projects", "INBOX.Sent": "Sent Items"})
	res = e.pass(t)
	for _, f := range res.Folders {
		if f.Deleted != 0 || f.FlagsUpdated != 0 || f.Copied != 0 {
			t.Errorf("pass after the changes, folder %q: %+v", f.Source, f)
		}
	}
}

// TestDeltaScanOnSpare: once the spare pair has logged in, its source
// connection scans changed folders from the back of the list while the
// main one scans from the front. The source is 20 ms of round trip away
// and 16 folders changed, so that the spare logs in (three round trips)
// long before the main connection is through (one round trip a folder).
func TestDeltaScanOnSpare(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	var names []string
	const changed = 16
	for i := range changed {
		name := fmt.Sprintf("INBOX.F%02d", i)
		create(t, c, name)
		seedN(t, e, name, 2, 1000)
		names = append(names, name)
	}
	far, err := netem.New(e.src.Addr(), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	var mu gosync.Mutex
	examines := map[int64]int{}
	far.UpTap = func(conn int64, b []byte) {
		mu.Lock()
		defer mu.Unlock()
		examines[conn] += bytes.Count(b, []byte(" EXAMINE "))
	}
	viaFar := func(o *Options) { o.Source = endpoint(t, far.Addr()) }
	e.pass(t, viaFar)
	for _, name := range names {
		appendMsg(t, c, name, msg{id: name + "-new@x", subject: "new in " + name, date: base, size: 1000})
	}
	mu.Lock()
	clear(examines)
	mu.Unlock()
	res := e.pass(t, viaFar)
	if res.Copied != changed {
		t.Fatalf("copied %d, want %d", res.Copied, changed)
	}
	mu.Lock()
	scanners, total := 0, 0
	for _, n := range examines {
		if n > 0 {
			scanners++
		}
		total += n
	}
	mu.Unlock()
	// The new messages are small and come whole with the scan: the copy
	// phase examines nothing, every EXAMINE is a scan's.
	if scanners != 2 || total != changed {
		t.Errorf("EXAMINEs per source connection: %v; want the %d folders scanned on 2 connections", examines, changed)
	}
	want := map[string]string{}
	for _, name := range names {
		want[name] = strings.TrimPrefix(name, "INBOX.")
	}
	e.expectSame(t, want)
}
