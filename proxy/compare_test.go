package proxy

import (
	"crypto/sha256"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

var seedDate = time.Date(2024, 3, 1, 9, 30, 0, 0, time.FixedZone("", 3600))

// seedMessages are what both alice and her twin start with in INBOX.
var seedMessages = []string{
	"From: Carol <carol@example.org>\r\nTo: alice@example.com\r\nSubject: Plain hello\r\n" +
		"Date: Fri, 01 Mar 2024 08:00:00 +0100\r\nMessage-ID: <m1@example.org>\r\n\r\nHello there.\r\nSecond line.\r\n",
	"From: =?UTF-8?B?SsO8cmdlbg==?= <juergen@example.de>\r\nTo: alice@example.com, Bob <bob@example.com>\r\n" +
		"Cc: team@example.com\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_mit_Anhang?=\r\nDate: Fri, 01 Mar 2024 08:05:00 +0100\r\n" +
		"Message-ID: <m2@example.de>\r\nIn-Reply-To: <m1@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße!\r\n" +
		"--b1\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\r\n--b1--\r\n",
	"From: \"Dave, the Builder\" <dave@example.net>\r\nTo: alice@example.com\r\nSubject: =?ISO-8859-1?Q?Caf=E9?= nested\r\n" +
		"Date: Fri, 01 Mar 2024 08:10:00 +0100\r\nMessage-ID: <m3@example.net>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\n" +
		"Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n" +
		"--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--inner--\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n" +
		"From: x@example.com\r\nSubject: forwarded\r\n\r\nforwarded body\r\n--outer--\r\n",
	"From: eve@example.com\r\nTo: alice@example.com\r\nSubject: to be deleted\r\nDate: Fri, 01 Mar 2024 08:20:00 +0100\r\n\r\nbye\r\n",
	"From: frank@example.com\r\nTo: alice@example.com\r\nSubject: Plain hello again\r\nDate: Fri, 01 Mar 2024 08:30:00 +0100\r\n\r\nHello again.\r\n",
}

// seed gives a user the same folders and messages as every other seeded
// user.
func seed(t *testing.T, addr, user, pass string) {
	t.Helper()
	c := login(t, addr, user, pass, nil)
	for _, f := range []string{"INBOX.Projects", "INBOX.Projects.2024", "INBOX.Archive"} {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Subscribe("INBOX.Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	flags := [][]imap.Flag{nil, {imap.FlagSeen}, {imap.FlagSeen, imap.FlagFlagged, "$Label1"}, nil, {imap.FlagAnswered}}
	for i, m := range seedMessages {
		appendMsg(t, c, "INBOX", m, flags[i], seedDate.Add(time.Duration(i)*time.Minute))
	}
	appendMsg(t, c, "INBOX.Projects", seedMessages[0], nil, seedDate)
	c.Logout().Wait()
}

func appendMsg(t testing.TB, c *imapclient.Client, mbox, msg string, flags []imap.Flag, date time.Time) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mbox, int64(len(msg)), &imap.AppendOptions{Flags: flags, Time: date})
	if _, err := io.WriteString(cmd, msg); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// side is one end of the comparison: a go-imap client and a raw one, both
// logged in, directly to Dovecot or through the proxy.
type side struct {
	c   *imapclient.Client
	rec *recorder
	r   *raw
}

func newSide(t *testing.T, addr, user, pass string) *side {
	rec := newRecorder()
	s := &side{c: login(t, addr, user, pass, rec), rec: rec, r: dialRaw(t, addr)}
	s.r.mustOK(fmt.Sprintf("LOGIN %q %q", user, pass))
	return s
}

type step struct {
	name string
	run  func(s *side) string
}

// TestCompare runs the same commands directly against Dovecot (as alice's
// twin) and through the proxy (as alice), whose mailboxes start equal, and
// wants the same answers.
func TestCompare(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seed(t, e.src.Addr(), alice, alicePass)
	seed(t, e.src.Addr(), twin, twinPass)
	direct := newSide(t, e.src.Addr(), twin, twinPass)
	proxied := newSide(t, e.addr, alice, alicePass)

	for _, st := range compareSteps {
		want := st.run(direct)
		got := st.run(proxied)
		if got != want {
			t.Errorf("%s:\n direct: %s\n  proxy: %s", st.name, want, got)
		}
	}
}

func listing(l []*imap.ListData, err error) string {
	if err != nil {
		return imapCode(err)
	}
	var out []string
	for _, d := range l {
		attrs := make([]string, len(d.Attrs))
		for i, a := range d.Attrs {
			attrs[i] = strings.ToLower(string(a))
		}
		sort.Strings(attrs)
		s := fmt.Sprintf("%s %q %v", d.Mailbox, d.Delim, attrs)
		if d.Status != nil {
			s += fmt.Sprintf(" msgs=%d unseen=%d", deref(d.Status.NumMessages), deref(d.Status.NumUnseen))
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func statusText(d *imap.StatusData, err error) string {
	if err != nil {
		return imapCode(err)
	}
	return fmt.Sprintf("%s msgs=%d uidnext=%d uv=%v unseen=%d", d.Mailbox, deref(d.NumMessages), d.UIDNext, d.UIDValidity != 0, deref(d.NumUnseen))
}

func selectText(d *imap.SelectData, err error) string {
	if err != nil {
		return imapCode(err)
	}
	return fmt.Sprintf("exists=%d uidnext=%d uv=%v flags=%v perm=%v", d.NumMessages, d.UIDNext, d.UIDValidity != 0, d.Flags, d.PermanentFlags)
}

func fetchText(cmd *imapclient.FetchCommand) string {
	msgs, err := cmd.Collect()
	var out []string
	for _, m := range msgs {
		s := fmt.Sprintf("#%d uid=%d flags=%v size=%d date=%s", m.SeqNum, m.UID, m.Flags, m.RFC822Size, m.InternalDate.UTC().Format(time.RFC3339))
		if m.Envelope != nil {
			env := *m.Envelope
			s += fmt.Sprintf(" env=%+v", env)
		}
		if m.BodyStructure != nil {
			s += " bs=" + bodyStructureText(m.BodyStructure)
		}
		for _, b := range m.BodySection {
			sum := sha256.Sum256(b.Bytes)
			s += fmt.Sprintf(" body[%v.%s %v]=%d:%x", b.Section.Part, b.Section.Specifier, b.Section.Partial, len(b.Bytes), sum[:6])
		}
		out = append(out, s)
	}
	return strings.Join(out, "\n") + " -> " + imapCode(err)
}

func bodyStructureText(bs imap.BodyStructure) string {
	switch bs := bs.(type) {
	case *imap.BodyStructureSinglePart:
		s := fmt.Sprintf("(%s/%s %v enc=%s size=%d", strings.ToLower(bs.Type), strings.ToLower(bs.Subtype), bs.Params, strings.ToLower(bs.Encoding), bs.Size)
		if bs.Extended != nil && bs.Extended.Disposition != nil {
			s += fmt.Sprintf(" disp=%s %v", strings.ToLower(bs.Extended.Disposition.Value), bs.Extended.Disposition.Params)
		}
		if bs.MessageRFC822 != nil {
			s += " msg=" + bodyStructureText(bs.MessageRFC822.BodyStructure)
		}
		return s + ")"
	case *imap.BodyStructureMultiPart:
		s := "(multipart/" + strings.ToLower(bs.Subtype)
		for _, c := range bs.Children {
			s += " " + bodyStructureText(c)
		}
		return s + ")"
	}
	return "?"
}

func searchText(d *imap.SearchData, err error) string {
	if err != nil {
		return imapCode(err)
	}
	return fmt.Sprintf("all=%v min=%d max=%d count=%d", d.All, d.Min, d.Max, d.Count)
}

func events(s *side) string {
	ev := s.rec.take()
	sort.Strings(ev) // unilateral FETCHes are handled in goroutines of their own
	return fmt.Sprint(ev)
}

// rawNormal undoes differences in form that mean the same: quoted or atom
// mailbox names, and a day of month padded with a space or a zero.
var rawNormal = strings.NewReplacer(`"INBOX`, `INBOX`, `" "."`, `" "." `, `" 1-`, `"01-`, `" 2-`, `"02-`, `" 3-`, `"03-`)

// rawText keeps a raw answer's untagged lines (sorted) and status.
func rawText(lines []string, status string) string {
	lines = slices.Clone(lines)
	for i, l := range lines {
		l = rawNormal.Replace(l)
		if strings.Contains(l, "LSUB") || strings.Contains(l, "LIST") {
			l = strings.TrimSuffix(l, `"`)
		}
		lines[i] = l
	}
	sort.Strings(lines)
	return strings.Join(lines, " | ") + " -> " + status
}

// withoutChildInfo drops \HasChildren and \HasNoChildren, which extended
// LIST (Dovecot, directly) leaves out unless asked and plain LIST (the
// proxy's, upstream) includes.
func withoutChildInfo(l []*imap.ListData, err error) ([]*imap.ListData, error) {
	for _, d := range l {
		d.Attrs = slices.DeleteFunc(d.Attrs, func(a imap.MailboxAttr) bool {
			return a == imap.MailboxAttrHasChildren || a == imap.MailboxAttrHasNoChildren
		})
	}
	return l, err
}

var (
	secHeaderFields = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject", "From"}, Peek: true}
	secPart1        = &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
	secPart2MIME    = &imap.FetchItemBodySection{Part: []int{2}, Specifier: imap.PartSpecifierMIME, Peek: true}
	secTextPartial  = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true, Partial: &imap.SectionPartial{Offset: 3, Size: 10}}
	secWhole        = &imap.FetchItemBodySection{Peek: true}
	secWholeSeen    = &imap.FetchItemBodySection{}
)

var compareSteps = []step{
	{"NAMESPACE", func(s *side) string {
		d, err := s.c.Namespace().Wait()
		if err != nil {
			return imapCode(err)
		}
		return fmt.Sprintf("%+v %+v %+v", d.Personal, d.Other, d.Shared)
	}},
	{"LIST * ", func(s *side) string { return listing(s.c.List("", "*", nil).Collect()) }},
	{"LIST %", func(s *side) string { return listing(s.c.List("", "%", nil).Collect()) }},
	{"LIST INBOX.%", func(s *side) string { return listing(s.c.List("INBOX.", "%", nil).Collect()) }},
	{"LIST delimiter", func(s *side) string { return listing(s.c.List("", "", nil).Collect()) }},
	{"LIST (SPECIAL-USE)", func(s *side) string {
		return listing(withoutChildInfo(s.c.List("", "*", &imap.ListOptions{SelectSpecialUse: true}).Collect()))
	}},
	{"LIST RETURN (STATUS)", func(s *side) string {
		// Attributes differ by design: the proxy always sends the special-use ones.
		l, err := s.c.List("", "INBOX*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, NumUnseen: true}}).Collect()
		for _, d := range l {
			d.Attrs = nil
		}
		return listing(l, err)
	}},
	{"LSUB", func(s *side) string { return rawText(s.r.cmd(`LSUB "" "*"`)) }},
	{"STATUS", func(s *side) string {
		return statusText(s.c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true}).Wait())
	}},
	{"STATUS missing", func(s *side) string {
		return statusText(s.c.Status("INBOX.Nope", &imap.StatusOptions{NumMessages: true}).Wait())
	}},
	{"SELECT missing", func(s *side) string { return selectText(s.c.Select("INBOX.Nope", nil).Wait()) }},
	{"SELECT", func(s *side) string { return selectText(s.c.Select("INBOX", nil).Wait()) }},
	{"FETCH items", func(s *side) string {
		return fetchText(s.c.Fetch(imap.SeqSetNum(1, 2, 3, 4, 5), &imap.FetchOptions{
			UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
			BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		}))
	}},
	{"FETCH BODY (non-extended)", func(s *side) string {
		return fetchText(s.c.Fetch(imap.SeqSetNum(2, 3), &imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{}}))
	}},
	{"UID FETCH BODY.PEEK[]", func(s *side) string {
		return fetchText(s.c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{secWhole}}))
	}},
	{"FETCH sections", func(s *side) string {
		return fetchText(s.c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{secHeaderFields, secPart1, secPart2MIME, secTextPartial}}))
	}},
	{"FETCH BODY[] sets \\Seen", func(s *side) string {
		return fetchText(s.c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{secWholeSeen}}))
	}},
	{"FETCH RFC822.HEADER", func(s *side) string {
		s.r.mustOK("SELECT INBOX")
		return rawText(s.r.cmd("FETCH 3 RFC822.HEADER"))
	}},
	{"FETCH RFC822.TEXT", func(s *side) string { return rawText(s.r.cmd("FETCH 4 RFC822.TEXT")) }},
	{"FETCH RFC822.SIZE", func(s *side) string { return rawText(s.r.cmd("FETCH 1:* RFC822.SIZE")) }},
	{"FETCH RFC822", func(s *side) string { return rawText(s.r.cmd("UID FETCH 5 RFC822")) }},
	{"FETCH FAST", func(s *side) string {
		// Items come in the upstream's order, which follows go-imap's
		// request, whose order is random: compare them sorted.
		lines, st := s.r.cmd("FETCH 1:2 FAST")
		for i, l := range lines {
			lines[i] = sortedItems(l)
		}
		return rawText(lines, st)
	}},
	{"raw updates", func(s *side) string { s.r.mustOK("UNSELECT"); return "" }},
	{"SEARCH UNSEEN", func(s *side) string {
		return searchText(s.c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait())
	}},
	{"UID SEARCH SUBJECT", func(s *side) string {
		return searchText(s.c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "hello"}}}, nil).Wait())
	}},
	{"SEARCH UTF-8", func(s *side) string {
		return searchText(s.c.Search(&imap.SearchCriteria{Body: []string{"Grüße"}}, nil).Wait())
	}},
	{"SEARCH seq range", func(s *side) string {
		return searchText(s.c.Search(&imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 2, Stop: 4}}}}, nil).Wait())
	}},
	{"SEARCH RETURN (MIN MAX COUNT)", func(s *side) string {
		return searchText(s.c.Search(&imap.SearchCriteria{}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait())
	}},
	{"STORE +FLAGS", func(s *side) string {
		return fetchText(s.c.Store(imap.SeqSetNum(1, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil))
	}},
	{"UID STORE -FLAGS.SILENT", func(s *side) string {
		return fetchText(s.c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil))
	}},
	{"STORE FLAGS", func(s *side) string {
		return fetchText(s.c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsSet, Flags: []imap.Flag{imap.FlagDraft}}, nil))
	}},
	{"COPY", func(s *side) string {
		d, err := s.c.Copy(imap.SeqSetNum(1, 2), "INBOX.Archive").Wait()
		if err != nil {
			return imapCode(err)
		}
		return fmt.Sprintf("uv=%v src=%v dst=%v", d.UIDValidity != 0, d.SourceUIDs, d.DestUIDs)
	}},
	{"COPY to missing", func(s *side) string { _, err := s.c.Copy(imap.SeqSetNum(1), "INBOX.Nope").Wait(); return imapCode(err) }},
	{"MOVE", func(s *side) string {
		d, err := s.c.Move(imap.SeqSetNum(3), "INBOX.Projects").Wait()
		if err != nil {
			return imapCode(err)
		}
		return fmt.Sprintf("uv=%v src=%v dst=%v events=%s exists=%d", d.UIDValidity != 0, d.SourceUIDs, d.DestUIDs, events(s), s.c.Mailbox().NumMessages)
	}},
	{"UID MOVE", func(s *side) string {
		d, err := s.c.Move(imap.UIDSetNum(5), "INBOX.Projects").Wait()
		if err != nil {
			return imapCode(err)
		}
		return fmt.Sprintf("uv=%v src=%v dst=%v events=%s", d.UIDValidity != 0, d.SourceUIDs, d.DestUIDs, events(s))
	}},
	{"APPEND to selected", func(s *side) string {
		d := appendMsg(t0, s.c, "INBOX", seedMessages[3], []imap.Flag{imap.FlagSeen}, seedDate)
		noop := s.c.Noop().Wait()
		return fmt.Sprintf("uid=%d uv=%v events=%s noop=%s", d.UID, d.UIDValidity != 0, events(s), imapCode(noop))
	}},
	{"APPEND to missing", func(s *side) string {
		cmd := s.c.Append("INBOX.Nope", 5, nil)
		io.WriteString(cmd, "a\r\n\r\n")
		cmd.Close()
		_, err := cmd.Wait()
		return imapCode(err)
	}},
	{"EXPUNGE", func(s *side) string {
		if err := s.c.Store(imap.SeqSetNum(1, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			return imapCode(err)
		}
		seqs, err := s.c.Expunge().Collect()
		return fmt.Sprintf("%v %s events=%s", seqs, imapCode(err), events(s))
	}},
	{"UID EXPUNGE", func(s *side) string {
		uids, err := s.c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
		if err != nil {
			return imapCode(err)
		}
		all := uids.AllUIDs()
		if err := s.c.Store(imap.UIDSetNum(all...), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			return imapCode(err)
		}
		seqs, err := s.c.UIDExpunge(imap.UIDSetNum(all[0])).Collect()
		return fmt.Sprintf("%v %s events=%s", seqs, imapCode(err), events(s))
	}},
	{"CLOSE expunges", func(s *side) string {
		err := s.c.UnselectAndExpunge().Wait()
		return imapCode(err) + " " + statusText(s.c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait())
	}},
	{"EXAMINE + CLOSE keeps", func(s *side) string {
		sel := selectText(s.c.Select("INBOX.Archive", &imap.SelectOptions{ReadOnly: true}).Wait())
		st := s.c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
		err := s.c.UnselectAndExpunge().Wait()
		return sel + " store=" + imapCode(st) + " close=" + imapCode(err) + " " +
			statusText(s.c.Status("INBOX.Archive", &imap.StatusOptions{NumMessages: true}).Wait())
	}},
	{"SELECT + UNSELECT", func(s *side) string {
		sel := selectText(s.c.Select("INBOX.Archive", nil).Wait())
		s.c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
		err := s.c.Unselect().Wait()
		return sel + " " + imapCode(err) + " " + statusText(s.c.Status("INBOX.Archive", &imap.StatusOptions{NumMessages: true}).Wait())
	}},
	{"EXPUNGE unselected", func(s *side) string { _, st := s.r.cmd("EXPUNGE"); return st[:3] }},
	{"CREATE", func(s *side) string { return imapCode(s.c.Create("INBOX.New Folder", nil).Wait()) }},
	{"CREATE exists", func(s *side) string { return imapCode(s.c.Create("INBOX.New Folder", nil).Wait()) }},
	{"CREATE UTF-7", func(s *side) string { return imapCode(s.c.Create("INBOX.Entwürfe", nil).Wait()) }},
	{"RENAME", func(s *side) string { return imapCode(s.c.Rename("INBOX.New Folder", "INBOX.Renamed", nil).Wait()) }},
	{"RENAME missing", func(s *side) string { return imapCode(s.c.Rename("INBOX.Nope", "INBOX.Nope2", nil).Wait()) }},
	{"SUBSCRIBE", func(s *side) string { return imapCode(s.c.Subscribe("INBOX.Renamed").Wait()) }},
	{"UNSUBSCRIBE", func(s *side) string { return imapCode(s.c.Unsubscribe("INBOX.Projects").Wait()) }},
	{"LSUB after", func(s *side) string { return rawText(s.r.cmd(`LSUB "" "*"`)) }},
	{"LIST after", func(s *side) string { return listing(s.c.List("", "*", nil).Collect()) }},
	{"DELETE", func(s *side) string { return imapCode(s.c.Delete("INBOX.Renamed").Wait()) }},
	{"DELETE missing", func(s *side) string { return imapCode(s.c.Delete("INBOX.Renamed").Wait()) }},
	{"EXAMINE after all", func(s *side) string {
		sel := selectText(s.c.Select("INBOX.Projects", &imap.SelectOptions{ReadOnly: true}).Wait())
		return sel + " " + fetchText(s.c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}))
	}},
	{"NOOP", func(s *side) string { return imapCode(s.c.Noop().Wait()) + " " + events(s) }},
	{"bad command", func(s *side) string { _, st := s.r.cmd("FROBNICATE"); return st }},
}

// t0 serves appendMsg in steps, which have no *testing.T of their own.
var t0 = &panicTB{}

type panicTB struct{ testing.TB }

func (*panicTB) Helper()                   {}
func (*panicTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (*panicTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

var fetchItemRE = regexp.MustCompile(`(FLAGS \([^)]*\)|INTERNALDATE "[^"]*"|RFC822\.SIZE \d+|UID \d+)`)

// sortedItems rewrites a one-line FETCH response with its simple items
// sorted.
func sortedItems(line string) string {
	items := fetchItemRE.FindAllString(line, -1)
	sort.Strings(items)
	head, _, _ := strings.Cut(line, "(")
	return head + "(" + strings.Join(items, " ") + ")"
}
