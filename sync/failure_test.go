package sync

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"go.uber.org/zap/zaptest"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/internal/dovecottest"
	"github.com/mailferry/mailferry/store"
)

func seedN(t *testing.T, e *env, folder string, n, size int) {
	c := e.src.Dial(t, user)
	for i := range n {
		appendMsg(t, c, folder, msg{id: fmt.Sprintf("%s-%d@x", folder, i), subject: fmt.Sprintf("%s %d", folder, i),
			date: base.Add(-time.Duration(i) * time.Hour), size: size}, imap.FlagSeen)
	}
}

// TestUIDValidityReset: the source folder is recreated (new UIDVALIDITY,
// same messages plus one). Nothing is uploaded twice, nothing is lost.
func TestUIDValidityReset(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	create(t, c, "INBOX.Projects")
	seedN(t, e, "INBOX.Projects", 10, 3000)
	e.pass(t)

	if err := c.Delete("INBOX.Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	create(t, c, "INBOX.Projects")
	seedN(t, e, "INBOX.Projects", 11, 3000)
	up := e.tgtFwd.Up.Load()
	res := e.pass(t)
	if res.Copied != 1 {
		t.Fatalf("after UIDVALIDITY reset copied %d, want 1", res.Copied)
	}
	if sent := e.tgtFwd.Up.Load() - up; sent > 3000+3000 {
		t.Errorf("sent %d bytes to the target after a UIDVALIDITY reset", sent)
	}
	e.expectSame(t, map[string]string{"INBOX.Projects": "Projects"})
	if res := e.pass(t); res.Copied != 0 {
		t.Fatalf("next pass copied %d", res.Copied)
	}
}

// TestTargetRecreated: the target folder is deleted and recreated with
// some of the messages (as an admin restoring it would); the next pass
// finds them by identity and copies only the missing ones.
func TestTargetUIDValidityChange(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	create(t, c, "INBOX.Projects")
	seedN(t, e, "INBOX.Projects", 6, 1000)
	e.pass(t)

	tc := e.tgt.Dial(t, user)
	if err := tc.Delete("Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	create(t, tc, "Projects")
	for i := range 3 {
		appendMsg(t, tc, "Projects", msg{id: fmt.Sprintf("INBOX.Projects-%d@x", i), subject: fmt.Sprintf("INBOX.Projects %d", i),
			date: base.Add(-time.Duration(i) * time.Hour), size: 1000}, imap.FlagSeen)
	}
	res := e.pass(t)
	if res.Copied != 3 {
		t.Fatalf("copied %d after the target folder was recreated, want 3", res.Copied)
	}
	e.expectSame(t, map[string]string{"INBOX.Projects": "Projects"})
}

// TestTargetFolderDeleted: a target folder deleted between two passes (the
// STATUS asked for it at the start of the pass, before the plan, fails) is
// created again and filled again, without duplicates.
func TestTargetFolderDeleted(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	c := e.src.Dial(t, user)
	create(t, c, "INBOX.Projects")
	seedN(t, e, "INBOX.Projects", 4, 1000)
	seedN(t, e, "INBOX", 2, 1000)
	e.pass(t)

	if err := e.tgt.Dial(t, user).Delete("Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	if res := e.pass(t); res.Copied != 4 {
		t.Fatalf("copied %d after the target folder was deleted, want 4", res.Copied)
	}
	e.expectSame(t, map[string]string{"INBOX": "INBOX", "INBOX.Projects": "Projects"})
	if res := e.pass(t); res.Copied != 0 {
		t.Fatalf("third pass copied %d", res.Copied)
	}
}

// TestDroppedConnections: the source link dies mid-FETCH and the target
// link mid-APPEND (mid-MULTIAPPEND by default); retries finish the job with
// nothing lost or doubled.
func TestDroppedConnections(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-multiappend=%v", single), func(t *testing.T) {
			e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
			opts := func(o *Options) { o.Retries, o.NoMultiAppend = 3, single }
			seedN(t, e, "INBOX", 60, 20_000)
			e.srcFwd.CutAfterDown.Store(500_000)
			res := e.engine(t, opts).SyncMailbox(context.Background(), e.mb)
			if res.Err != nil {
				t.Fatalf("source cut: %v", res.Err)
			}
			e.expectSame(t, map[string]string{"INBOX": "INBOX"})

			seedN(t, e, "INBOX.Sent", 60, 20_000)
			go func() {
				for e.tgtFwd.Up.Load() < 1_800_000 {
					time.Sleep(time.Millisecond)
				}
				e.tgtFwd.CutAll()
			}()
			res = e.engine(t, opts).SyncMailbox(context.Background(), e.mb)
			if res.Err != nil {
				t.Fatalf("target cut: %v", res.Err)
			}
			e.expectSame(t, map[string]string{"INBOX": "INBOX", "INBOX.Sent": "Sent Items"})
		})
	}
}

// TestKilledProcess kills a syncing process (SIGKILL) at several points of
// the copy and checks that the following passes leave the target with no
// missing and no duplicated message.
func TestKilledProcess(t *testing.T) {
	if os.Getenv("MAILFERRY_SYNC_CHILD") != "" {
		t.Skip("child")
	}
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	seedN(t, e, "INBOX", 80, 15_000)
	seedN(t, e, "INBOX.Sent", 40, 15_000)
	dir := t.TempDir()
	for _, at := range []int64{40_000, 300_000, 700_000, 1_100_000, 1_500_000} {
		start := e.tgtFwd.Up.Load()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSyncChild$", "-test.v")
		cmd.Env = append(os.Environ(), "MAILFERRY_SYNC_CHILD="+strings.Join([]string{e.srcFwd.Addr(), e.tgtFwd.Addr(), dir}, ","))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.After(30 * time.Second)
	watch:
		for {
			select {
			case err := <-exited:
				t.Logf("child finished before the kill point %d: %v", at, err)
				break watch
			case <-deadline:
				t.Fatalf("child hung:\n%s", out)
			case <-time.After(200 * time.Microsecond):
				if e.tgtFwd.Up.Load()-start >= at {
					cmd.Process.Kill()
					<-exited
					break watch
				}
			}
		}
		t.Logf("child output: %.3000s", out)
	}
	st, err := store.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	defer st.Close()
	e.pass(t)
	e.expectSame(t, map[string]string{"INBOX": "INBOX", "INBOX.Sent": "Sent Items"})
}

// TestSyncChild is the process TestKilledProcess kills.
func TestSyncChild(t *testing.T) {
	args := os.Getenv("MAILFERRY_SYNC_CHILD")
	if args == "" {
		t.Skip("run by TestKilledProcess")
	}
	a := strings.Split(args, ",")
	st, err := store.Open(a[2], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mb := config.Mailbox{Email: user, UserName: user, Password: password, TargetUserName: user, TargetPassword: tgtPass}
	e := New(st, Options{Source: endpoint(t, a[0]), Target: endpoint(t, a[1]), Log: zaptest.NewLogger(t), Retries: -1, RecoverySettle: time.Second})
	if res := e.SyncMailbox(context.Background(), mb); res.Err != nil {
		t.Fatal(res.Err)
	}
}

// TestSizeLimits: a message over --max-message-size is skipped without
// being read; one the target refuses ([LIMIT]) is skipped and not read again.
func TestSizeLimits(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{MaxMessageSize: 1 << 20})
	c := e.src.Dial(t, user)
	appendMsg(t, c, "INBOX", msg{id: "small@x", subject: "small", date: base, size: 1000})
	appendMsg(t, c, "INBOX", msg{id: "big@x", subject: "36 MB attachment", date: base, size: 36 << 20})
	appendMsg(t, c, "INBOX", msg{id: "medium@x", subject: "2 MB, over the target's limit", date: base, size: 2 << 20})

	down := e.srcFwd.Down.Load()
	res := e.pass(t)
	// The 2 MB message is read twice: the target refuses the MULTIAPPEND
	// it is in, and then the message alone.
	if read := e.srcFwd.Down.Load() - down; read > 6<<20 {
		t.Errorf("read %d bytes from the source: the 36 MB message was fetched", read)
	}
	if res.Copied != 1 || len(res.SkippedItems) != 2 {
		t.Fatalf("copied %d, skipped %+v", res.Copied, res.SkippedItems)
	}
	reasons := res.SkippedBy()
	for _, s := range res.SkippedItems {
		if s.Subject == "" || s.Size == 0 || s.Date.IsZero() || s.Folder != "INBOX" {
			t.Errorf("skipped item lacks details: %+v", s)
		}
	}
	if len(reasons) != 2 {
		t.Errorf("skip reasons %v", reasons)
	}
	down = e.srcFwd.Down.Load()
	res = e.pass(t)
	if read := e.srcFwd.Down.Load() - down; read > 8<<10 || res.Copied != 0 {
		t.Errorf("second pass read %d bytes and copied %d: skipped messages are read again", read, res.Copied)
	}
}

// TestManyMailboxes: one mailbox's wrong password fails that mailbox only.
func TestManyMailboxes(t *testing.T) {
	e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
	seedN(t, e, "INBOX", 5, 1000)
	bob := config.Mailbox{Email: "bob@example.com", UserName: "bob@example.com", Password: "wrong", TargetUserName: "bob@example.com", TargetPassword: "bob-target"}
	sum := e.engine(t, func(o *Options) { o.Retries = 3 }).Run(context.Background(), []config.Mailbox{bob, e.mb})
	if sum.FailedMailboxes != 1 || sum.Copied != 5 {
		t.Fatalf("summary: %+v", sum)
	}
	b := sum.Mailboxes[0]
	if b.Err == nil || imapconn.IsTemporary(b.Err) || strings.Contains(b.Error, "wrong") {
		t.Fatalf("bob: %v (temporary %v)", b.Err, imapconn.IsTemporary(b.Err))
	}
	if time.Duration(b.Duration) > 5*time.Second {
		t.Errorf("a wrong password was retried for %v", b.Duration)
	}
	e.expectSame(t, map[string]string{"INBOX": "INBOX"})
}
