//go:build linux

package bench

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"mime"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// The benchmark mailbox at scale 1.
const (
	fullMessages = 8000
	fullBytes    = 450_000_000
	// Two messages near 30 MB: big, but under the default --max-message-size (35 MiB).
	bigBytes   = 30_000_000
	corpusSeed = 20240517
)

// folderDef is one folder of the benchmark mailbox: its name on the source
// (Courier-like: "." separator, "INBOX." prefix), its Maildir++ directory, and
// the name mailferry gives it on an Exchange-like target.
type folderDef struct {
	src     string  // source name (UTF-8)
	disk    string  // directory below the Maildir, names in modified UTF-7 ("" is INBOX)
	tgt     string  // target name (UTF-8, "/" separator)
	tgtWire string  // tgt in modified UTF-7, for the raw client ("" when it equals tgt)
	auto    bool    // the target has it already (INBOX and its special-use folders)
	weight  float64 // share of the messages
	year    int     // messages of that year only (0: 2018 to mid-2025)
}

// wire is the target name as the raw client sends it.
func (f folderDef) wire() string {
	if f.tgtWire != "" {
		return f.tgtWire
	}
	return f.tgt
}

// folders are the 24 folders of the benchmark mailbox.
var folders = []folderDef{
	{src: "INBOX", tgt: "INBOX", auto: true, weight: 28},
	{src: "INBOX.Sent", disk: ".Sent", tgt: "Sent Items", auto: true, weight: 14},
	{src: "INBOX.Trash", disk: ".Trash", tgt: "Deleted Items", auto: true, weight: 5},
	{src: "INBOX.Drafts", disk: ".Drafts", tgt: "Drafts", auto: true, weight: 0.5},
	{src: "INBOX.Junk", disk: ".Junk", tgt: "Junk Email", auto: true, weight: 3},
	{src: "INBOX.Archive", disk: ".Archive", tgt: "Archive", auto: true, weight: 2},
	{src: "INBOX.Archive.2021", disk: ".Archive.2021", tgt: "Archive/2021", weight: 6, year: 2021},
	{src: "INBOX.Archive.2022", disk: ".Archive.2022", tgt: "Archive/2022", weight: 6, year: 2022},
	{src: "INBOX.Archive.2023", disk: ".Archive.2023", tgt: "Archive/2023", weight: 6, year: 2023},
	{src: "INBOX.Projects", disk: ".Projects", tgt: "Projects", weight: 1.5},
	{src: "INBOX.Projects.Alpha", disk: ".Projects.Alpha", tgt: "Projects/Alpha", weight: 3},
	{src: "INBOX.Projects.Beta", disk: ".Projects.Beta", tgt: "Projects/Beta", weight: 3},
	{src: "INBOX.Projects.Gamma", disk: ".Projects.Gamma", tgt: "Projects/Gamma", weight: 2},
	{src: "INBOX.Clients", disk: ".Clients", tgt: "Clients", weight: 1},
	{src: "INBOX.Clients.Müller GmbH", disk: ".Clients.M&APw-ller GmbH", tgt: "Clients/Müller GmbH", tgtWire: "Clients/M&APw-ller GmbH", weight: 3},
	{src: "INBOX.Clients.Acme Corp", disk: ".Clients.Acme Corp", tgt: "Clients/Acme Corp", weight: 3},
	{src: "INBOX.Finance", disk: ".Finance", tgt: "Finance", weight: 1},
	{src: "INBOX.Finance.Invoices", disk: ".Finance.Invoices", tgt: "Finance/Invoices", weight: 2.5},
	{src: "INBOX.Finance.Receipts", disk: ".Finance.Receipts", tgt: "Finance/Receipts", weight: 2},
	{src: "INBOX.HR", disk: ".HR", tgt: "HR", weight: 1},
	{src: "INBOX.Newsletters", disk: ".Newsletters", tgt: "Newsletters", weight: 4},
	{src: "INBOX.Travel", disk: ".Travel", tgt: "Travel", weight: 1.5},
	{src: "INBOX.R&D", disk: ".R&-D", tgt: "R&D", tgtWire: "R&-D", weight: 2},
	{src: "INBOX.Family", disk: ".Family", tgt: "Family", weight: 1.5},
}

// Source and target folder settings, as sync's own tests use them.
var (
	sourceSpecialUse = map[string]string{"Sent": `\Sent`, "Trash": `\Trash`, "Drafts": `\Drafts`, "Junk": `\Junk`}
	targetSpecialUse = map[string]string{"Sent Items": `\Sent`, "Deleted Items": `\Trash`, "Junk Email": `\Junk`,
		"Drafts": `\Drafts`, "Archive": `\Archive`}
)

// keywords are the IMAP keywords messages carry; in Maildir file names they
// are the letters a, b, c … (dovecot-keywords in each folder maps them).
var keywords = []string{"$Forwarded", "$Junk", "Work"}

// systemLetters are the Maildir info letters of the system flags.
var systemLetters = map[string]byte{`\Draft`: 'D', `\Flagged`: 'F', `\Answered`: 'R', `\Seen`: 'S'}

type msgKind int

const (
	kindPlain       msgKind = iota // text/plain
	kindAlternative                // multipart/alternative: text and HTML
	kindMixed                      // multipart/mixed: text and a base64 attachment
)

// message is one planned message; build makes its bytes, always the same.
type message struct {
	idx      int
	folder   int
	date     time.Time // the Date: header's time (in the sender's zone)
	internal time.Time // INTERNALDATE, UTC, whole seconds
	flags    []string  // sorted IMAP flags
	kind     msgKind
	text     int // approximate size of the text part(s)
	attach   int // approximate size of the base64 attachment (kindMixed)
	reply    bool
	size     int64  // exact size, known once built
	file     string // unique part of the Maildir file name
}

// corpus is the planned mailbox.
type corpus struct {
	msgs  []*message
	total int64 // bytes, once written
}

func logUniform(r *rand.Rand, lo, hi float64) int {
	return int(lo * math.Pow(hi/lo, r.Float64()))
}

func pickFolder(r *rand.Rand) int {
	var sum float64
	for _, f := range folders {
		sum += f.weight
	}
	x := r.Float64() * sum
	for i, f := range folders {
		if x < f.weight {
			return i
		}
		x -= f.weight
	}
	return 0
}

var (
	corpusStart = time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC)
	corpusEnd   = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	zones       = []*time.Location{time.UTC, time.FixedZone("CET", 3600), time.FixedZone("CEST", 7200),
		time.FixedZone("EST", -5*3600), time.FixedZone("PDT", -7*3600), time.FixedZone("IST", 5*3600+1800), time.FixedZone("JST", 9*3600)}
)

// planMessage plans message idx of folder; a zero date picks one.
func planMessage(r *rand.Rand, idx, folder int, date time.Time) *message {
	f := folders[folder]
	if date.IsZero() {
		start, end := corpusStart, corpusEnd
		if f.year != 0 {
			start, end = time.Date(f.year, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(f.year+1, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		date = start.Add(time.Duration(r.Int64N(int64(end.Sub(start)))))
	}
	date = date.Truncate(time.Second)
	m := &message{idx: idx, folder: folder, date: date.In(zones[r.IntN(len(zones))])}
	m.internal = date.Add(time.Duration(2+r.IntN(600)) * time.Second).UTC()
	switch p := r.Float64(); {
	case p < 0.05:
		m.text = logUniform(r, 800, 2000)
	case p < 0.88:
		m.text = logUniform(r, 2000, 50000)
	default:
		m.text = logUniform(r, 50000, 150000)
	}
	alt := 0.3
	if f.src == "INBOX.Newsletters" || f.src == "INBOX.Junk" {
		alt = 0.9
	}
	if r.Float64() < alt {
		m.kind = kindAlternative
	}
	m.reply = r.Float64() < 0.35 && f.src != "INBOX.Newsletters" && f.src != "INBOX.Junk"

	flags := map[string]bool{}
	switch f.src {
	case "INBOX.Drafts":
		flags[`\Draft`] = true
		flags[`\Seen`] = r.Float64() < 0.7
	case "INBOX.Sent":
		flags[`\Seen`] = true
		flags[`\Flagged`] = r.Float64() < 0.03
	case "INBOX.Junk":
		flags[`\Seen`] = r.Float64() < 0.4
		flags["$Junk"] = r.Float64() < 0.5
	case "INBOX.Trash":
		flags[`\Seen`] = r.Float64() < 0.95
	default:
		seen := r.Float64() < 0.92
		flags[`\Seen`] = seen
		flags[`\Answered`] = seen && r.Float64() < 0.15
		flags[`\Flagged`] = r.Float64() < 0.04
		flags["$Forwarded"] = r.Float64() < 0.03
		switch {
		case strings.HasPrefix(f.src, "INBOX.Projects"):
			flags["Work"] = r.Float64() < 0.3
		case strings.HasPrefix(f.src, "INBOX.Clients"):
			flags["Work"] = r.Float64() < 0.15
		}
	}
	for fl, on := range flags {
		if on {
			m.flags = append(m.flags, fl)
		}
	}
	slices.Sort(m.flags)
	m.file = fmt.Sprintf("%d.M%dP4242Q%d.mailferry-bench", m.internal.Unix(), idx%1000000, idx)
	return m
}

// attachmentSize is 100 KB to 5 MB of base64, mostly at the small end.
func attachmentSize(r *rand.Rand) int {
	u := r.Float64()
	return int(100e3 * math.Pow(50, u*u))
}

// planCorpus plans about fullMessages×scale messages of about fullBytes×scale
// bytes: text messages first, two big ones, then attachments on random
// messages until the size is reached.
func planCorpus(scale float64) *corpus {
	r := rand.New(rand.NewPCG(corpusSeed, 1))
	n := max(int(math.Round(fullMessages*scale)), 3*len(folders))
	target := int64(fullBytes * scale)
	c := &corpus{msgs: make([]*message, n)}
	const headerEstimate, partEstimate = 1000, 500
	var est int64
	for i := range c.msgs {
		folder := pickFolder(r)
		switch i {
		case 0:
			folder = 0 // INBOX
		case 1:
			folder = 1 // Sent
		}
		m := planMessage(r, i, folder, time.Time{})
		c.msgs[i] = m
		est += int64(headerEstimate + m.text)
	}
	big := max(int(bigBytes*scale), 1<<20)
	for i, f := range []float64{0.97, 1.01} {
		m := c.msgs[i]
		m.kind, m.attach, m.text = kindMixed, int(float64(big)*f), 3000
		est += int64(m.attach + partEstimate)
	}
	remaining := target - est
	for tries := 0; remaining >= 100e3 && tries < 100*n; tries++ {
		m := c.msgs[2+r.IntN(n-2)]
		if m.kind == kindMixed || folders[m.folder].src == "INBOX.Drafts" {
			continue
		}
		m.kind = kindMixed
		m.attach = min(attachmentSize(r), int(remaining))
		remaining -= int64(m.attach + partEstimate)
	}
	return c
}

// planDelta plans n new messages, newer than the corpus, for the delta pass.
func (c *corpus) planDelta(n int) []*message {
	r := rand.New(rand.NewPCG(corpusSeed, 2))
	out := make([]*message, n)
	base := corpusEnd.Add(20 * 24 * time.Hour)
	for i := range out {
		folder := pickFolder(r)
		if folders[folder].year != 0 {
			folder = 0
		}
		out[i] = planMessage(r, len(c.msgs)+i, folder, base.Add(time.Duration(i)*37*time.Minute))
	}
	return out
}

// Word material for headers and bodies.
var (
	me      = mail.Address{Name: "Alice Example", Address: "alice@example.com"}
	persons = []mail.Address{
		{Name: "Jürgen Müller", Address: "j.mueller@mueller-gmbh.de"}, {Name: "Zoë Martin", Address: "zoe.martin@example.org"},
		{Name: "François Dupont", Address: "f.dupont@example.fr"}, {Name: "José García", Address: "jgarcia@example.es"},
		{Name: "Søren Madsen", Address: "soren@example.dk"}, {Name: "佐藤 花子", Address: "hanako.sato@example.jp"},
		{Name: "Bob Smith", Address: "bob@example.com"}, {Name: "Carol Jones", Address: "carol.jones@acme.example"},
		{Name: "Dave Brown", Address: "dave@acme.example"}, {Name: "Eve Adams", Address: "eve.adams@example.net"},
		{Name: "Frank Miller", Address: "frank@example.com"}, {Name: "Grace Lee", Address: "grace.lee@example.co.uk"},
		{Name: "Heidi Klein", Address: "heidi.klein@example.de"}, {Name: "Ivan Petrov", Address: "ivan@example.ru"},
		{Name: "Judy Chen", Address: "judy.chen@example.com"}, {Name: "Mallory O'Brien", Address: "mallory@example.ie"},
		{Name: "Accounts Payable", Address: "ap@supplier.example"}, {Name: "HR Team", Address: "hr@example.com"},
	}
	newsletters = []mail.Address{{Name: "Acme Weekly", Address: "news@acme.example"},
		{Name: "Travel Deals", Address: "deals@travel.example"}, {Name: "Le Monde diplomatique", Address: "newsletter@example.fr"}}
	spammers = []mail.Address{{Name: "Prize Department", Address: "winner@lottery.example"},
		{Name: "Pharmacy Online", Address: "sales@pills.example"}, {Name: "", Address: "noreply@bulk.example"}}
	subjects = []string{
		"Quarterly report Q%d", "Meeting notes: project sync #%d", "Invoice %d", "Angebot Nr. %d für Müller GmbH",
		"Réunion de lundi (%d)", "Your order #%d has shipped", "Travel itinerary %d: Berlin–Lisbon", "Budget %d",
		"Überweisung erhalten – Referenz %d", "見積もりのお願い %d", "Weekly status, week %d", "Contract draft v%d",
		"Lunch on Friday? (%d)", "Re-organisation of the file server, phase %d", "Candidate interview %d",
		"Photos from the weekend %d", "Release %d.0 checklist", "Zoë's farewell party 🎉 %d",
	}
	junkSubjects = []string{"You have WON %d EUR!!!", "Cheap meds, %d%% off", "Re: your account %d is suspended",
		"Lottery notification %d", "Ｆｒｅｅ ｇｉｆｔ ｃａｒｄ %d"}
	newsSubjects = []string{"Acme Weekly #%d", "This week's best deals (%d)", "La lettre du mois n°%d"}
	words        = strings.Fields(`the project budget meeting report please find attached below regards thanks
		schedule review draft contract client invoice payment delivery update deadline team Monday Friday
		office server migration mailbox folder archive customer proposal figures quarter revenue cost travel
		hotel flight booking confirm question answer issue ticket release version feature test results
		analysis summary next steps agreed decision follow up call tomorrow week month year Grüße Angebot
		Rechnung bitte danke café naïve résumé Überweisung déjà vu and or but with for from into over under
		about this that these those we you they our your their is are was were will would could should`)
)

// pools are the shared text and base64 material messages are cut from.
type pools struct {
	text      []byte
	textLines []int // start offsets of text's lines
	b64       []byte
}

const b64Line = 78 // 76 characters and CRLF

var (
	poolsOnce sync.Once
	thePools  *pools
)

func getPools() *pools {
	poolsOnce.Do(func() {
		r := rand.New(rand.NewPCG(corpusSeed, 3))
		p := &pools{}
		var buf bytes.Buffer
		for buf.Len() < 2<<20 {
			p.textLines = append(p.textLines, buf.Len())
			if r.IntN(6) == 0 {
				buf.WriteString("\r\n") // paragraph break
				continue
			}
			width := 50 + r.IntN(27)
			start := buf.Len()
			for buf.Len()-start < width {
				buf.WriteString(words[r.IntN(len(words))])
				buf.WriteByte(' ')
			}
			buf.Truncate(buf.Len() - 1)
			buf.WriteString("\r\n")
		}
		p.text = buf.Bytes()
		raw := make([]byte, 57*55188) // ~3 MiB: full 76-character lines
		for i := 0; i < len(raw); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8 && i+j < len(raw); j++ {
				raw[i+j] = byte(v >> (8 * j))
			}
		}
		enc := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
		base64.StdEncoding.Encode(enc, raw)
		p.b64 = make([]byte, 0, len(enc)/76*b64Line)
		for i := 0; i < len(enc); i += 76 {
			p.b64 = append(p.b64, enc[i:i+76]...)
			p.b64 = append(p.b64, '\r', '\n')
		}
		thePools = p
	})
	return thePools
}

// appendText appends about n bytes of text lines.
func (p *pools) appendText(buf []byte, r *rand.Rand, n int, html bool) []byte {
	i := r.IntN(len(p.textLines))
	for written := 0; written < n; i = (i + 1) % len(p.textLines) {
		end := len(p.text)
		if i+1 < len(p.textLines) {
			end = p.textLines[i+1]
		}
		line := p.text[p.textLines[i]:end]
		if html {
			buf = append(buf, "<p>"...)
			buf = append(buf, line[:len(line)-2]...)
			buf = append(buf, "</p>\r\n"...)
			written += len(line) + 7
		} else {
			buf = append(buf, line...)
			written += len(line)
		}
	}
	return buf
}

// appendBase64 appends about n bytes of base64 lines.
func (p *pools) appendBase64(buf []byte, r *rand.Rand, n int) []byte {
	lines := max(1, (n+b64Line-1)/b64Line)
	off := r.IntN(len(p.b64)/b64Line) * b64Line
	for want := lines * b64Line; want > 0; {
		k := min(want, len(p.b64)-off)
		buf = append(buf, p.b64[off:off+k]...)
		want -= k
		off = 0
	}
	return buf
}

// encodeWord encodes a header text with RFC 2047 when it is not ASCII,
// alternating Q and B encoding.
func encodeWord(r *rand.Rand, s string) string {
	if r.IntN(2) == 0 {
		return mime.QEncoding.Encode("utf-8", s)
	}
	return mime.BEncoding.Encode("utf-8", s)
}

var attachmentTypes = []struct{ ctype, name string }{
	{"application/pdf", "report-%d.pdf"}, {"image/jpeg", "IMG_%d.jpg"},
	{"application/vnd.openxmlformats-officedocument.wordprocessingml.document", "Vertrag-%d.docx"},
	{"application/zip", "photos-%d.zip"}, {"application/pdf", "Angebot Müller %d.pdf"},
}

// build returns the message's bytes: RFC 5322 with CRLF line ends, always
// the same for the same message.
func (m *message) build() []byte {
	p := getPools()
	r := rand.New(rand.NewPCG(corpusSeed, uint64(m.idx)+1000))
	f := folders[m.folder]
	buf := make([]byte, 0, m.text*2+m.attach+4096)
	h := func(format string, args ...any) { buf = fmt.Appendf(buf, format+"\r\n", args...) }

	from, to := persons[r.IntN(len(persons))], me
	subjList := subjects
	switch f.src {
	case "INBOX.Sent", "INBOX.Drafts":
		from, to = me, persons[r.IntN(len(persons))]
	case "INBOX.Newsletters":
		from, subjList = newsletters[r.IntN(len(newsletters))], newsSubjects
	case "INBOX.Junk":
		from, subjList = spammers[r.IntN(len(spammers))], junkSubjects
	}
	_, domain, _ := strings.Cut(from.Address, "@")
	subject := fmt.Sprintf(subjList[r.IntN(len(subjList))], 1+r.IntN(9999))
	if m.reply {
		subject = "Re: " + subject
	}
	if f.src != "INBOX.Sent" && f.src != "INBOX.Drafts" {
		h("Return-Path: <%s>", from.Address)
		h("Received: from mail-%d.%s (mail-%d.%s [203.0.113.%d])\r\n\tby mx1.old-mail.example (Postfix) with ESMTPS id %X\r\n\tfor <%s>; %s",
			r.IntN(9), domain, r.IntN(9), domain, 1+r.IntN(254), r.Uint32(), me.Address, m.internal.Format(time.RFC1123Z))
	}
	h("Message-ID: <%d.%x.%d@%s>", m.date.Unix(), r.Uint32(), m.idx, domain)
	h("Date: %s", m.date.Format(time.RFC1123Z))
	h("From: %s", from.String())
	h("To: %s", to.String())
	if r.IntN(5) == 0 {
		cc := persons[r.IntN(len(persons))]
		h("Cc: %s, %s", cc.String(), persons[r.IntN(len(persons))].String())
	}
	switch {
	case r.IntN(40) == 0:
		h("Subject: =?iso-8859-1?q?R=FCckfrage_zur_Rechnung_%d?=", r.IntN(9999))
	default:
		h("Subject: %s", encodeWord(r, subject))
	}
	if m.reply {
		ref := fmt.Sprintf("<%x.%d@%s>", r.Uint64(), m.idx, domain)
		h("In-Reply-To: %s", ref)
		h("References: <%x@%s> %s", r.Uint64(), domain, ref)
	}
	if r.IntN(3) == 0 {
		h("X-Mailer: %s", []string{"Microsoft Outlook 16.0", "Apple Mail (2.3731)", "Thunderbird 115.6.0", "Roundcube Webmail/1.6.5"}[r.IntN(4)])
	}
	h("MIME-Version: 1.0")

	boundary := fmt.Sprintf("----=_Part_%d_%x", m.idx, r.Uint32())
	textPart := func(n int) {
		h("Content-Type: text/plain; charset=utf-8; format=flowed")
		h("Content-Transfer-Encoding: 8bit")
		h("")
		h("Hello %s,", strings.Fields(to.Name + " there")[0])
		h("")
		buf = p.appendText(buf, r, n, false)
		h("")
		h("-- ")
		h("%s", from.Name)
	}
	htmlPart := func(n int) {
		h("Content-Type: text/html; charset=utf-8")
		h("Content-Transfer-Encoding: 8bit")
		h("")
		h(`<html><head><meta charset="utf-8"></head><body>`)
		buf = p.appendText(buf, r, n, true)
		h("</body></html>")
	}
	switch m.kind {
	case kindPlain:
		textPart(m.text)
	case kindAlternative:
		h(`Content-Type: multipart/alternative; boundary="%s"`, boundary)
		h("")
		h("--%s", boundary)
		textPart(m.text / 3)
		h("--%s", boundary)
		htmlPart(m.text - m.text/3)
		h("--%s--", boundary)
	case kindMixed:
		h(`Content-Type: multipart/mixed; boundary="%s"`, boundary)
		h("")
		h("This is a multi-part message in MIME format.")
		h("")
		h("--%s", boundary)
		textPart(m.text)
		h("--%s", boundary)
		at := attachmentTypes[r.IntN(len(attachmentTypes))]
		name := fmt.Sprintf(at.name, r.IntN(1000))
		h(`Content-Type: %s; name="%s"`, at.ctype, mime.QEncoding.Encode("utf-8", name))
		h("Content-Transfer-Encoding: base64")
		h("Content-Disposition: attachment; filename*=utf-8''%s", strings.ReplaceAll(url.PathEscape(name), "+", "%2B"))
		h("")
		buf = p.appendBase64(buf, r, m.attach)
		h("--%s--", boundary)
	}
	return buf
}

// maildirInfo is the ":2," part of a Maildir file name for flags.
func maildirInfo(flags []string) string {
	var sys, kw []byte
	for _, f := range flags {
		if l, ok := systemLetters[f]; ok {
			sys = append(sys, l)
		} else if i := slices.Index(keywords, f); i >= 0 {
			kw = append(kw, byte('a'+i))
		}
	}
	slices.Sort(sys)
	slices.Sort(kw)
	return ":2," + string(sys) + string(kw)
}

// writeMaildir writes every message as a file into the Maildir++ tree below
// root, owned by uid:gid (the mail user), with its INTERNALDATE as mtime,
// its size in the name (S= and W=: the files use CRLF, so both are the file
// size) and its flags in the info part, as Dovecot itself would store it.
// Dovecot indexes the files on first access.
func (c *corpus) writeMaildir(root string, uid, gid int) error {
	var kwFile strings.Builder
	for i, k := range keywords {
		fmt.Fprintf(&kwFile, "%d %s\n", i, k)
	}
	for _, f := range folders {
		dir := filepath.Join(root, f.disk)
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "dovecot-keywords"), []byte(kwFile.String()), 0o600); err != nil {
			return err
		}
		if f.disk != "" {
			if err := os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600); err != nil {
				return err
			}
		}
	}
	jobs := make(chan *message)
	errs := make(chan error, runtime.NumCPU())
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for m := range jobs {
				data := m.build()
				m.size = int64(len(data))
				name := fmt.Sprintf("%s,S=%d,W=%d%s", m.file, m.size, m.size, maildirInfo(m.flags))
				path := filepath.Join(root, folders[m.folder].disk, "cur", name)
				if err := os.WriteFile(path, data, 0o600); err != nil {
					errs <- err
					break
				}
				if err := os.Chtimes(path, m.internal, m.internal); err != nil {
					errs <- err
					break
				}
			}
			for range jobs {
			}
		})
	}
	for _, m := range c.msgs {
		jobs <- m
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	c.total = 0
	for _, m := range c.msgs {
		c.total += m.size
	}
	// Dovecot runs as the mail user: it must own everything.
	return filepath.WalkDir(root, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// resolve finds each message's file below root now (Dovecot may rename
// files when flags change), by the unique part of its name.
func (c *corpus) resolve(root string) (map[int]string, error) {
	byFile := make(map[string]int, len(c.msgs))
	for _, m := range c.msgs {
		byFile[m.file] = m.idx
	}
	out := make(map[int]string, len(c.msgs))
	for _, f := range folders {
		for _, sub := range []string{"cur", "new"} {
			dir := filepath.Join(root, f.disk, sub)
			ents, err := os.ReadDir(dir)
			if err != nil {
				return nil, err
			}
			for _, e := range ents {
				base, _, _ := strings.Cut(e.Name(), ",")
				base, _, _ = strings.Cut(base, ":")
				if idx, ok := byFile[base]; ok {
					out[idx] = filepath.Join(dir, e.Name())
				}
			}
		}
	}
	if len(out) != len(c.msgs) {
		return nil, fmt.Errorf("found %d of %d message files below %s", len(out), len(c.msgs), root)
	}
	return out, nil
}

// appendOrder is the order the raw client sends messages in: folder by
// folder, newest first.
func (c *corpus) appendOrder() []*message {
	out := slices.Clone(c.msgs)
	slices.SortStableFunc(out, func(a, b *message) int {
		if a.folder != b.folder {
			return a.folder - b.folder
		}
		return b.internal.Compare(a.internal)
	})
	return out
}

// msgKey is what the harness compares per message without reading bodies:
// size, INTERNALDATE and flags.
func msgKey(size int64, internal time.Time, flags []string) string {
	var fl []string
	for _, f := range flags {
		if !strings.EqualFold(f, `\Recent`) {
			fl = append(fl, f)
		}
	}
	slices.Sort(fl)
	return fmt.Sprintf("%d %d %s", size, internal.Unix(), strings.Join(fl, " "))
}

// expected returns, per source folder, the sorted keys of the planned
// messages.
func (c *corpus) expected() map[string][]string {
	out := map[string][]string{}
	for _, m := range c.msgs {
		name := folders[m.folder].src
		out[name] = append(out[name], msgKey(m.size, m.internal, m.flags))
	}
	for _, keys := range out {
		slices.Sort(keys)
	}
	return out
}
