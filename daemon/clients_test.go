package daemon

// Real IMAP clients from the OS packages drive the proxy, before and after a
// cutover (issue 3, "Tests"): mbsync (Debian package isync) syncs alice's
// whole mailbox into a local Maildir, fetchmail fetches her INBOX into an
// MDA, and neomutt, driven in tmux, reads it as a person would. The tests
// skip when a client is missing, or fail when the environment variable CI
// is set: scripts/test.sh installs them.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/config"
)

// requireClient returns the path of an IMAP client program, or skips the
// test (fails it in CI) when the Debian package pkg is not installed.
func requireClient(t *testing.T, bin, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		msg := fmt.Sprintf("%s not found: run scripts/test.sh, which installs the Debian package %s", bin, pkg)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// clientMsg is one message of alice's mailbox as the clients tests plan it.
type clientMsg struct {
	folder  string // as the client sees it with its namespace prefix stripped, "/" as separator
	subject string // unique, also in the Message-ID
	flags   []imap.Flag
}

// clientFolders are alice's folders. INBOX has more than 20 messages (what
// mbsync wants to confirm that a UIDVALIDITY change is "baseless"), and two
// were deleted on the source before the first sync, so its UIDs have a gap
// as on any real server: the target numbers its copies without gaps.
var clientFolders = []struct {
	name    string // "/" separated, no prefix
	count   int
	deleted []int // expunged on the source before the first sync
}{{"INBOX", 24, []int{4, 5}}, {"Sent", 4, nil}, {"Archive", 2, nil}, {"Archive/2023", 3, nil}}

// clientFlags gives message i of a folder its flags: a mix of \Seen,
// \Flagged, \Answered and \Draft (the system flags every client keeps).
func clientFlags(folder string, i int) []imap.Flag {
	var f []imap.Flag
	if folder == "Sent" || i%3 == 0 {
		f = append(f, imap.FlagSeen)
	}
	if i%5 == 1 {
		f = append(f, imap.FlagFlagged)
	}
	if i%7 == 2 {
		f = append(f, imap.FlagAnswered)
	}
	if folder == "Archive" && i == 1 {
		f = append(f, imap.FlagDraft)
	}
	return f
}

// clientEnv is a Dovecot pair with alice's mailbox on the source (Courier
// layout: "INBOX." prefix, "." separator), synced to the target by a
// running daemon whose proxy listens on addr (plaintext, loopback).
type clientEnv struct {
	p    *pair
	o    config.Options
	d    *Daemon
	addr string
	msgs []clientMsg
}

func newClientEnv(t *testing.T) *clientEnv {
	t.Helper()
	e := &clientEnv{p: newPair(t, "alice@example.com")}
	src := e.p.src.Dial(t, "alice@example.com")
	for _, f := range clientFolders {
		if f.name != "INBOX" {
			if err := src.Create(srcFolder(f.name), nil).Wait(); err != nil {
				t.Fatal(err)
			}
		}
		for i := range f.count {
			m := clientMsg{folder: f.name, subject: fmt.Sprintf("%s message %d", f.name, i), flags: clientFlags(f.name, i)}
			e.appendTo(t, src, srcFolder(f.name), m, i)
			if !slices.Contains(f.deleted, i) {
				e.msgs = append(e.msgs, m)
			}
		}
		if len(f.deleted) > 0 {
			if _, err := src.Select(srcFolder(f.name), nil).Wait(); err != nil {
				t.Fatal(err)
			}
			var set imap.UIDSet
			for _, i := range f.deleted {
				set.AddNum(imap.UID(i + 1))
			}
			if err := src.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			if err := src.Expunge().Close(); err != nil {
				t.Fatal(err)
			}
			if err := src.Unselect().Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.o = e.p.options()
	e.o.ListenStartTLS = freeAddr(t)
	e.addr = e.o.ListenStartTLS
	e.d, _ = startDaemon(t, e.o, time.Hour)
	waitFor(t, "alice synced", 20*time.Second, func() bool {
		st, _ := e.d.Status("alice@example.com")
		return len(st.Mailboxes) == 1 && st.Mailboxes[0].State == StateSynced
	})
	return e
}

// srcFolder is the source's name for a folder.
func srcFolder(name string) string {
	if name == "INBOX" {
		return name
	}
	return "INBOX." + strings.ReplaceAll(name, "/", ".")
}

// appendTo appends m to mailbox (the server's own name) through c.
func (e *clientEnv) appendTo(t *testing.T, c *imapclient.Client, mailbox string, m clientMsg, i int) {
	t.Helper()
	id := strings.ReplaceAll(strings.ToLower(m.subject), " ", ".")
	raw := fmt.Sprintf("Message-ID: <%s@clients.example>\r\nDate: Tue, 2 Jan 2024 03:04:05 +0000\r\nFrom: bob@example.com\r\n"+
		"To: alice@example.com\r\nSubject: %s\r\n\r\nBody of %s.\r\n%s\r\n", id, m.subject, m.subject, strings.Repeat("line of text\r\n", 20+i))
	cmd := c.Append(mailbox, int64(len(raw)), &imap.AppendOptions{
		Flags: m.flags,
		Time:  time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Minute),
	})
	io.WriteString(cmd, raw)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("append %q to %s: %v", m.subject, mailbox, err)
	}
}

// cutover cuts alice over to the target while the daemon runs.
func (e *clientEnv) cutover(t *testing.T) {
	t.Helper()
	var out bytes.Buffer
	err := CutoverCmd(context.Background(), &e.o, CutoverRequest{Mailboxes: []string{"alice@example.com"}}, Streams{Stdout: &out, Stderr: io.Discard})
	if err != nil {
		t.Fatalf("cutover: %v\n%s", err, out.String())
	}
	if f := strings.Fields(strings.Split(out.String(), "\n")[1]); len(f) < 2 || f[1] != "target" {
		t.Fatalf("cutover result: %q", out.String())
	}
	t.Logf("cutover:\n%s", out.String())
}

// serverFlags returns subject → flags of every message in mailbox (the
// server's own name), as seen directly on a Dovecot.
func serverFlags(t *testing.T, c *imapclient.Client, mailbox string) map[string][]imap.Flag {
	t.Helper()
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	defer func() { c.Unselect().Wait() }()
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true, Flags: true}).Collect()
	if err != nil && !strings.Contains(err.Error(), "No matching messages") && !strings.Contains(err.Error(), "Invalid messageset") {
		t.Fatalf("fetch %s: %v", mailbox, err)
	}
	got := map[string][]imap.Flag{}
	for _, m := range msgs {
		if _, dup := got[m.Envelope.Subject]; dup {
			t.Errorf("%s holds %q twice", mailbox, m.Envelope.Subject)
		}
		got[m.Envelope.Subject] = sortedFlags(m.Flags)
	}
	return got
}

// uidSubjects returns UID → Subject of every message in mailbox.
func uidSubjects(t *testing.T, c *imapclient.Client, mailbox string) map[imap.UID]string {
	t.Helper()
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	defer func() { c.Unselect().Wait() }()
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatalf("fetch %s: %v", mailbox, err)
	}
	out := map[imap.UID]string{}
	for _, m := range msgs {
		out[m.UID] = m.Envelope.Subject
	}
	return out
}

// sortedFlags keeps the system flags the clients sync, sorted.
func sortedFlags(flags []imap.Flag) []imap.Flag {
	var out []imap.Flag
	for _, f := range flags {
		switch strings.ToLower(string(f)) {
		case `\seen`, `\flagged`, `\answered`, `\draft`:
			out = append(out, imap.Flag(strings.ToUpper(string(f[:2]))+strings.ToLower(string(f[2:]))))
		}
	}
	slices.Sort(out)
	return out
}

// runClient runs a client program with a timeout and returns its combined
// output, failing the test when it exits non-zero unless mayFail.
func runClient(t *testing.T, mayFail bool, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s\n%s", filepath.Base(name), strings.Join(args, " "), out)
	if err != nil && !mayFail {
		t.Fatalf("%s: %v\n%s", filepath.Base(name), err, out)
	}
	return string(out), err
}

// maildirMessages reads an mbsync Maildir store (SubFolders Verbatim):
// folder ("/"-separated) → subject → flags, from the files' ":2," info.
func maildirMessages(t *testing.T, root string) map[string]map[string][]imap.Flag {
	t.Helper()
	out := map[string]map[string][]imap.Flag{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (filepath.Base(filepath.Dir(path)) != "cur" && filepath.Base(filepath.Dir(path)) != "new") {
			return nil
		}
		folder, err := filepath.Rel(root, filepath.Dir(filepath.Dir(path)))
		if err != nil {
			return err
		}
		subject := headerOf(t, path, "Subject")
		var flags []imap.Flag
		if _, info, ok := strings.Cut(d.Name(), ":2,"); ok {
			for _, c := range info {
				switch c {
				case 'S':
					flags = append(flags, imap.FlagSeen)
				case 'F':
					flags = append(flags, imap.FlagFlagged)
				case 'R':
					flags = append(flags, imap.FlagAnswered)
				case 'D':
					flags = append(flags, imap.FlagDraft)
				}
			}
		}
		if out[folder] == nil {
			out[folder] = map[string][]imap.Flag{}
		}
		if _, dup := out[folder][subject]; dup {
			t.Errorf("local Maildir %s holds %q twice", folder, subject)
		}
		out[folder][subject] = sortedFlags(flags)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// headerOf returns a header field of a message file.
func headerOf(t *testing.T, path, field string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, field) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// want returns folder → subject → flags of the planned messages.
func (e *clientEnv) want() map[string]map[string][]imap.Flag {
	out := map[string]map[string][]imap.Flag{}
	for _, m := range e.msgs {
		if out[m.folder] == nil {
			out[m.folder] = map[string][]imap.Flag{}
		}
		out[m.folder][m.subject] = sortedFlags(m.flags)
	}
	return out
}

// rename renames a folder in the plan, as the migration does.
func (e *clientEnv) rename(from, to string) {
	for i := range e.msgs {
		if e.msgs[i].folder == from {
			e.msgs[i].folder = to
		}
	}
}

// serverMailbox reads every planned folder (names as on the target:
// "/"-separated, no prefix) on a server.
func (e *clientEnv) serverMailbox(t *testing.T, c *imapclient.Client) map[string]map[string][]imap.Flag {
	t.Helper()
	out := map[string]map[string][]imap.Flag{}
	for f := range e.want() {
		out[f] = serverFlags(t, c, f)
	}
	return out
}

// setFlag changes the planned flags of a message.
func (e *clientEnv) setFlag(subject string, flag imap.Flag) {
	for i := range e.msgs {
		if e.msgs[i].subject == subject && !slices.Contains(e.msgs[i].flags, flag) {
			e.msgs[i].flags = append(e.msgs[i].flags, flag)
		}
	}
}

func diffMailboxes(want, got map[string]map[string][]imap.Flag) string {
	var b strings.Builder
	var folders []string
	for f := range want {
		folders = append(folders, f)
	}
	for f := range got {
		if _, ok := want[f]; !ok {
			folders = append(folders, f)
		}
	}
	sort.Strings(folders)
	for _, f := range folders {
		for s, wf := range want[f] {
			gf, ok := got[f][s]
			if !ok {
				fmt.Fprintf(&b, "%s: %q missing\n", f, s)
			} else if !slices.Equal(wf, gf) {
				fmt.Fprintf(&b, "%s: %q has flags %v, want %v\n", f, s, gf, wf)
			}
		}
		for s := range got[f] {
			if _, ok := want[f][s]; !ok {
				fmt.Fprintf(&b, "%s: unexpected %q\n", f, s)
			}
		}
	}
	return b.String()
}

// TestClientMbsync: mbsync syncs alice's whole mailbox (four folders,
// flags) through the proxy into a local Maildir and pushes a flag change back
// to the source. After the cutover it sees every folder's UIDVALIDITY grow
// and reacts as it does to any server whose UIDs changed:
//
//   - Archive and Archive/2023 kept their UIDs (the migration copied each
//     in UID order into an empty folder): mbsync checks the Message-IDs at
//     the old UIDs, prints "Recovered from change of UIDVALIDITY" and goes
//     on. (The test checks the UIDs on both servers to know which to expect.)
//   - INBOX had a gap in its UIDs (deleted messages), which the target's
//     copies don't have: mbsync prints "UIDVALIDITY genuinely changed (at
//     UID 7)", leaves that folder alone (nothing lost, nothing duplicated)
//     and exits 1. It has no option to recover; the user deletes the local
//     folder with its .mbsyncstate and the next run downloads it again.
//   - Sent is "Sent Items" on the target (the migration's folder mapping):
//     mbsync creates a local "Sent Items", downloads it, and complains
//     "far side box Sent cannot be opened" until the local Sent is deleted.
//
// After that recovery mbsync runs cleanly against the target: the local
// Maildir holds exactly the target's messages with their flags, new mail
// arrives and flag changes are pushed.
func TestClientMbsync(t *testing.T) {
	mbsync := requireClient(t, "mbsync", "isync")
	e := newClientEnv(t)
	dir := t.TempDir()
	local := filepath.Join(dir, "Mail")
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(e.addr, ":")
	rc := filepath.Join(dir, "mbsyncrc")
	conf := fmt.Sprintf(`IMAPAccount alice
Host 127.0.0.1
Port %s
User alice@example.com
Pass s-alice@example.com
SSLType None
AuthMechs LOGIN
Timeout 10

IMAPStore alice-remote
Account alice

MaildirStore alice-local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel alice
Far :alice-remote:
Near :alice-local:
Patterns *
Create Near
SyncState *
`, port, local, local)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	mbsyncRun := func(mayFail bool) (string, error) {
		return runClient(t, mayFail, nil, mbsync, "-c", rc, "-a")
	}

	// The whole mailbox arrives with its flags.
	mbsyncRun(false)
	if d := diffMailboxes(e.want(), maildirMessages(t, local)); d != "" {
		t.Fatalf("local Maildir after the first mbsync:\n%s", d)
	}

	// A flag set locally reaches the source.
	const flagged = "INBOX message 3" // \Seen only
	flagLocal(t, filepath.Join(local, "INBOX"), flagged, 'F')
	e.setFlag(flagged, imap.FlagFlagged)
	mbsyncRun(false)
	src := e.p.src.Dial(t, "alice@example.com")
	if got, want := serverFlags(t, src, "INBOX")[flagged], e.want()["INBOX"][flagged]; !slices.Equal(got, want) {
		t.Fatalf("the flag set locally did not reach the source: %v, want %v", got, want)
	}

	e.cutover(t)
	e.rename("Sent", "Sent Items")
	tgt := e.p.tgt.Dial(t, "alice@example.com")
	if d := diffMailboxes(e.want(), e.serverMailbox(t, tgt)); d != "" {
		t.Fatalf("the target after the cutover:\n%s", d)
	}

	// What mbsync must say about each folder: it recovers where the target
	// numbered the copies as the source did, and refuses the others.
	refused := []string{"Sent"}
	var says []string
	for _, f := range []string{"INBOX", "Archive", "Archive/2023"} {
		if maps.Equal(uidSubjects(t, src, srcFolder(f)), uidSubjects(t, tgt, f)) {
			if f == "INBOX" {
				t.Fatal("the target numbered INBOX like the source although the source's UIDs have a gap")
			}
			says = append(says, "far side box "+f+": Recovered from change of UIDVALIDITY")
		} else {
			says = append(says, "far side box "+f+": UIDVALIDITY genuinely changed")
			refused = append(refused, f)
		}
	}
	says = append(says, "far side box Sent cannot be opened")
	out, err := mbsyncRun(true)
	if err == nil {
		t.Fatal("mbsync succeeded after the cutover: the proxy shows INBOX renumbered and Sent renamed, " +
			"mbsync should have refused them (if that changed on purpose, update this test)")
	}
	for _, want := range says {
		if !strings.Contains(out, want) {
			t.Errorf("mbsync after the cutover did not say %q", want)
		}
	}
	// Nothing was lost or duplicated: the refused folders are left as they
	// were, the others are in step, and Sent Items is the target's.
	wantNow := e.want()
	wantNow["Sent"] = wantNow["Sent Items"]
	if d := diffMailboxes(wantNow, maildirMessages(t, local)); d != "" {
		t.Fatalf("local Maildir after mbsync met the cutover:\n%s", d)
	}

	// The user's recovery: delete the local folders mbsync refuses (their
	// state goes with them: SyncState *), and sync again.
	for _, f := range refused {
		if err := os.RemoveAll(filepath.Join(local, f)); err != nil {
			t.Fatal(err)
		}
	}
	mbsyncRun(false)
	if d := diffMailboxes(e.want(), maildirMessages(t, local)); d != "" {
		t.Fatalf("local Maildir after the recovery:\n%s", d)
	}

	// mbsync now works against the target: new mail arrives, a local flag
	// change lands on the target.
	arrived := clientMsg{folder: "INBOX", subject: "INBOX after the cutover"}
	e.appendTo(t, tgt, "INBOX", arrived, 0)
	e.msgs = append(e.msgs, arrived)
	const answered = "INBOX message 8"
	flagLocal(t, filepath.Join(local, "INBOX"), answered, 'R')
	e.setFlag(answered, imap.FlagAnswered)
	mbsyncRun(false)
	if d := diffMailboxes(e.want(), maildirMessages(t, local)); d != "" {
		t.Fatalf("local Maildir after syncing with the target:\n%s", d)
	}
	if d := diffMailboxes(e.want(), e.serverMailbox(t, tgt)); d != "" {
		t.Fatalf("the target after mbsync pushed to it:\n%s", d)
	}
}

// flagLocal adds a Maildir flag letter to the message with subject in a
// Maildir folder, as a mail reader does (the info letters stay sorted).
func flagLocal(t *testing.T, folder, subject string, flag rune) {
	t.Helper()
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(folder, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, ent := range ents {
			path := filepath.Join(folder, sub, ent.Name())
			if headerOf(t, path, "Subject") != subject {
				continue
			}
			base, info, _ := strings.Cut(ent.Name(), ":2,")
			letters := []rune(info + string(flag))
			slices.Sort(letters)
			if err := os.Rename(path, filepath.Join(folder, "cur", base+":2,"+string(letters))); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no %q in %s", subject, folder)
}

// TestClientFetchmail: fetchmail (keep, new messages only) fetches alice's
// unread INBOX messages through the proxy into an MDA and marks them seen on
// the source. fetchmail tells new from old by the \Seen flag, not by UID,
// so the cutover is invisible to it: the final sync carries the flags, and
// the next poll, now against the target, fetches only what arrived since
// (one message before the cutover, one on the target after it).
func TestClientFetchmail(t *testing.T) {
	fetchmail := requireClient(t, "fetchmail", "fetchmail")
	e := newClientEnv(t)
	home := t.TempDir()
	inbox := filepath.Join(home, "delivered")
	if err := os.Mkdir(inbox, 0o700); err != nil {
		t.Fatal(err)
	}
	mda := filepath.Join(home, "deliver.sh")
	script := "#!/bin/sh\nexec cat > \"" + inbox + "/$(date +%s%N).$$.eml\"\n"
	if err := os.WriteFile(mda, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(e.addr, ":")
	// sslproto '' and no sslcertck: plain IMAP on loopback (fetchmail 6.4
	// otherwise insists on STARTTLS with a certificate it can verify).
	rc := fmt.Sprintf(`set no syslog
set no bouncemail
poll 127.0.0.1 service %s protocol IMAP auth password timeout 10
    user "alice@example.com" there with password "s-alice@example.com" is "alice" here
    folder INBOX
    keep
    sslproto ''
    no sslcertck
    mda "%s"
`, port, mda)
	if err := os.WriteFile(filepath.Join(home, "fetchmailrc"), []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{} // subjects delivered so far
	// poll runs fetchmail once and returns the subjects it delivered.
	poll := func() []string {
		t.Helper()
		// Exit 0: mail delivered; 1: no mail.
		_, err := runClient(t, true, []string{"FETCHMAILHOME=" + home}, fetchmail, "--nodetach", "-v")
		if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
			t.Fatalf("fetchmail: %v", err)
		}
		ents, err := os.ReadDir(inbox)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ent := range ents {
			s := headerOf(t, filepath.Join(inbox, ent.Name()), "Subject")
			if s == "" {
				t.Errorf("delivered %s has no Subject", ent.Name())
			}
			if !seen[ent.Name()] {
				seen[ent.Name()] = true
				got = append(got, s)
			}
		}
		slices.Sort(got)
		return got
	}

	var unread []string
	for s, flags := range e.want()["INBOX"] {
		if !slices.Contains(flags, imap.FlagSeen) {
			unread = append(unread, s)
			e.setFlag(s, imap.FlagSeen)
		}
	}
	slices.Sort(unread)
	if got := poll(); !slices.Equal(got, unread) {
		t.Fatalf("fetchmail before the cutover delivered\n%q\nwant the unread\n%q", got, unread)
	}
	src := e.p.src.Dial(t, "alice@example.com")
	if d := diffMailboxes(map[string]map[string][]imap.Flag{"INBOX": e.want()["INBOX"]},
		map[string]map[string][]imap.Flag{"INBOX": serverFlags(t, src, "INBOX")}); d != "" {
		t.Fatalf("fetchmail did not mark what it fetched \\Seen on the source:\n%s", d)
	}
	if got := poll(); len(got) != 0 {
		t.Fatalf("a second poll delivered again: %q", got)
	}

	before := clientMsg{folder: "INBOX", subject: "arrived before the cutover"}
	e.appendTo(t, src, "INBOX", before, 0)
	e.cutover(t)
	after := clientMsg{folder: "INBOX", subject: "arrived after the cutover"}
	e.appendTo(t, e.p.tgt.Dial(t, "alice@example.com"), "INBOX", after, 1)
	want := []string{after.subject, before.subject}
	if got := poll(); !slices.Equal(got, want) {
		t.Fatalf("fetchmail after the cutover delivered %q, want %q", got, want)
	}
	if got := poll(); len(got) != 0 {
		t.Fatalf("a second poll after the cutover delivered again: %q", got)
	}
}

// tmuxPane runs a terminal program in its own tmux server (its own
// socket, killed at cleanup) and reads its screen.
type tmuxPane struct {
	t      *testing.T
	tmux   string
	socket string
}

func startTmux(t *testing.T, tmux, dir string, env []string, argv ...string) *tmuxPane {
	t.Helper()
	p := &tmuxPane{t: t, tmux: tmux, socket: filepath.Join(dir, "tmux.sock")}
	args := []string{"new-session", "-d", "-s", "client", "-x", "160", "-y", "50"}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	p.run(append(args, argv...)...)
	t.Cleanup(func() { exec.Command(p.tmux, "-S", p.socket, "kill-server").Run() })
	return p
}

func (p *tmuxPane) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command(p.tmux, append([]string{"-S", p.socket, "-f", "/dev/null"}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keys types keys (tmux key names, e.g. "Enter", or literal text with -l).
func (p *tmuxPane) keys(keys ...string) {
	p.run(append([]string{"send-keys", "-t", "client"}, keys...)...)
}

func (p *tmuxPane) text(s string) { p.run("send-keys", "-t", "client", "-l", s) }

func (p *tmuxPane) screen() string { return p.run("capture-pane", "-p", "-t", "client") }

// waitScreen waits until the screen shows all of want.
func (p *tmuxPane) waitScreen(what string, limit time.Duration, want ...string) string {
	p.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		s := p.screen()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(s, w)
		}
		if ok {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s: the screen shows\n%s", what, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClientNeomutt: neomutt, driven in tmux as a person would, lists
// alice's INBOX through the proxy and opens a message (which marks it read
// on the source). At the cutover its session gets BYE; changing to the
// INBOX again ("c =INBOX", what a user does after "Mailbox ... closed")
// reconnects it, now to the target: its header cache (kept
// across the switch, keyed by UIDVALIDITY) is dropped because UIDVALIDITY
// grew, so every row shows the right message although the target numbers
// them differently, the read state came along, and mail delivered to the
// target after the cutover shows up and opens.
func TestClientNeomutt(t *testing.T) {
	neomutt := requireClient(t, "neomutt", "neomutt")
	tmux := requireClient(t, "tmux", "tmux")
	e := newClientEnv(t)
	dir := t.TempDir()
	_, port, _ := strings.Cut(e.addr, ":")
	rc := filepath.Join(dir, "muttrc")
	// Plain IMAP on loopback; a header and a body cache as most users have.
	conf := fmt.Sprintf(`set folder = "imap://127.0.0.1:%s/"
set spoolfile = "+INBOX"
set imap_user = "alice@example.com"
set imap_pass = "s-alice@example.com"
set ssl_starttls = no
set ssl_force_tls = no
set header_cache = "%s/hcache"
set message_cachedir = "%s/bodies"
set mail_check = 1
set timeout = 1
set sort = date
set quit = yes
set wait_key = no
set mark_old = no
`, port, dir, dir)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startTmux(t, tmux, dir, []string{"HOME=" + dir, "TERM=xterm"}, neomutt, "-n", "-F", rc)
	p.waitScreen("the INBOX index", 10*time.Second, "INBOX message 0", "INBOX message 23", "Msgs:22")

	// Open a message: it shows, and is marked read on the source.
	const opened = "INBOX message 7" // unread
	open := func(subject string) {
		t.Helper()
		p.keys("/")
		p.waitScreen("the search prompt", 5*time.Second, "Search for:")
		p.text(subject)
		p.keys("Enter")
		time.Sleep(200 * time.Millisecond)
		p.keys("Enter")
		p.waitScreen("the message "+subject, 5*time.Second, "Subject: "+subject, "Body of "+subject+".")
		p.keys("q")
		p.waitScreen("the index", 5*time.Second, "Msgs:")
	}
	open(opened)
	p.keys("$") // neomutt writes flag changes when it syncs the mailbox
	src := e.p.src.Dial(t, "alice@example.com")
	waitFor(t, "the opened message marked read on the source", 5*time.Second, func() bool {
		return slices.Contains(serverFlags(t, src, "INBOX")[opened], imap.FlagSeen)
	})

	e.cutover(t)
	// neomutt notices the BYE at once and says so on its message line.
	p.waitScreen("neomutt to notice the BYE", 5*time.Second, "Mailbox alice@example.com@127.0.0.1 closed")
	arrived := clientMsg{folder: "INBOX", subject: "arrived after the cutover"}
	e.appendTo(t, e.p.tgt.Dial(t, "alice@example.com"), "INBOX", arrived, 0)

	// The user changes to the INBOX again (c =INBOX): neomutt reconnects.
	p.keys("c")
	p.waitScreen("the change-folder prompt", 5*time.Second, "Open mailbox")
	p.keys("C-u")
	p.text("=INBOX")
	p.keys("Enter")
	screen := p.waitScreen("the target's INBOX", 10*time.Second, arrived.subject, "Msgs:23")
	var rows []string
	for line := range strings.Lines(screen) {
		_, subject, ok := strings.Cut(line, "bob@example.com (")
		if !ok {
			continue
		}
		_, subject, _ = strings.Cut(subject, ") ")
		rows = append(rows, strings.TrimSpace(subject))
		if strings.TrimSpace(subject) == opened && strings.Contains(line, " N ") {
			t.Errorf("%q, read before the cutover, is new again after it: %q", opened, line)
		}
	}
	want := []string{arrived.subject}
	for s := range e.want()["INBOX"] {
		want = append(want, s)
	}
	slices.Sort(want)
	slices.Sort(rows)
	if !slices.Equal(rows, want) {
		t.Errorf("after the cutover neomutt lists\n%q\nwant\n%q", rows, want)
	}
	open(arrived.subject)
	open("INBOX message 23")
	p.keys("q")
}
