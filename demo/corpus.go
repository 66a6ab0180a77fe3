package demo

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"slices"
	"strings"
	gosync "sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

// The corpus is what the source server holds: accounts, their folders and
// messages, generated deterministically from a seed.

// account is one user of the demo servers.
type account struct {
	Email, Name    string
	SourcePassword string
	TargetPassword string
	Folders        []*folder
}

// folder is one source folder and the messages it holds, oldest first.
type folder struct {
	Name       string
	Kind       folderKind
	Subscribed bool
	Messages   []*message
}

// message is one source message as it is appended.
type message struct {
	Date  time.Time // INTERNALDATE, whole seconds
	Flags []imap.Flag
	Raw   []byte // RFC 5322, CRLF line endings
	// Subject (decoded) and the attachment size, for tests and curiosity.
	Subject    string
	Attachment int
}

type folderKind int

const (
	kindInbox folderKind = iota
	kindSent
	kindTrash
	kindDrafts
	kindJunk
	kindArchive
	kindCustom
)

// folderSpec is one folder of a layout; weight is its share of messages.
type folderSpec struct {
	name   string
	kind   folderKind
	weight int
}

// Three layouts of real servers the demo imitates. Parents of nested
// folders are real (selectable) folders, as Dovecot and Courier make them.
var layouts = [][]folderSpec{
	// Dovecot defaults, a project tree and clients.
	{
		{"INBOX", kindInbox, 40}, {"Sent", kindSent, 16}, {"Trash", kindTrash, 7}, {"Drafts", kindDrafts, 2},
		{"Junk", kindJunk, 5}, {"Projects", kindCustom, 2}, {"Projects/2024", kindCustom, 3},
		{"Projects/2024/Q1", kindCustom, 6}, {"Projects/2024/Q2", kindCustom, 5}, {"Clients", kindCustom, 1},
		{"Clients/Müller GmbH", kindCustom, 7}, {"Clients/R&D Partners", kindCustom, 4},
	},
	// A mailbox that Apple Mail set up: other names for the special folders.
	{
		{"INBOX", kindInbox, 45}, {"Sent Messages", kindSent, 18}, {"Deleted Messages", kindTrash, 8},
		{"Drafts", kindDrafts, 2}, {"Spam", kindJunk, 6}, {"Receipts", kindCustom, 4},
		{"Receipts/2024", kindCustom, 6}, {"Family", kindCustom, 2}, {"Family/Vacation 2024", kindCustom, 5},
	},
	// Thunderbird on Courier: folders under INBOX, an archive tree, a
	// subfolder of Trash.
	{
		{"INBOX", kindInbox, 38}, {"INBOX/Lists", kindCustom, 8}, {"Sent", kindSent, 15}, {"Trash", kindTrash, 6},
		{"Trash/2023", kindTrash, 2}, {"Drafts", kindDrafts, 1}, {"Junk", kindJunk, 4}, {"Archive", kindArchive, 6},
		{"Archive/2023", kindArchive, 9}, {"Projects", kindCustom, 1}, {"Projects/2024", kindCustom, 1},
		{"Projects/2024/Q1", kindCustom, 4},
	},
}

var userNames = []struct{ login, name string }{
	{"alice", "Alice Martin"}, {"bob", "Bob Keller"}, {"carol", "Carol Nguyen"}, {"dave", "Dave O'Brien"},
	{"erin", "Erin Schmidt"}, {"frank", "Frank Løvold"}, {"grace", "Grace Ito"}, {"heidi", "Heidi Weiß"},
}

// contact is someone who writes to the demo users.
type contact struct {
	name, addr string
	lang       string
	zone       *time.Location
}

func zone(hours int) *time.Location {
	return time.FixedZone(fmt.Sprintf("%+03d00", hours), hours*3600)
}

var contacts = []contact{
	{"Jürgen Müller", "j.mueller@mueller-gmbh.de", "de", zone(1)},
	{"Lena Schäfer", "lena.schaefer@mueller-gmbh.de", "de", zone(1)},
	{"François Dupont", "francois.dupont@atelier-dupont.fr", "fr", zone(1)},
	{"Émilie Bernard", "e.bernard@atelier-dupont.fr", "fr", zone(1)},
	{"Søren Ørsted", "soren@nordlys.dk", "en", zone(1)},
	{"山田 太郎", "t.yamada@sakura-trading.example.jp", "ja", zone(9)},
	{"María González", "maria.gonzalez@solmar.example.es", "es", zone(1)},
	{"David Chen", "dchen@acme-logistics.com", "en", zone(-5)},
	{"Priya Raman", "priya@brightlane.io", "en", zone(-8)},
	{"Tom Fischer", "tom@fischer-design.de", "de", zone(1)},
	{"Olivia Brown", "olivia.brown@northwind.example.com", "en", zone(0)},
	{"Zoë Adams", "zoe.adams@northwind.example.com", "en", zone(0)},
}

// Automated senders write notifications and receipts.
var robots = []contact{
	{"GitLab", "gitlab@git.example.com", "en", zone(0)},
	{"Deutsche Bahn", "buchungsbestaetigung@bahn.example.de", "de", zone(1)},
	{"IT Helpdesk", "helpdesk@example.com", "en", zone(1)},
	{"Parcel Service", "noreply@parcel.example.net", "en", zone(0)},
	{"The Weekly Go", "newsletter@weekly-go.example.org", "en", zone(-5)},
}

var spammers = []contact{
	{"Prize Center", "no-reply@winner-4u.example.biz", "en", zone(-3)},
	{"PayPaI Security", "security@paypa1-support.example.com", "en", zone(2)},
	{"Paketdienst", "info@paket-zustellung.example.ru", "de", zone(3)},
	{"Dr. Investment", "offers@crypto-riches.example.top", "en", zone(8)},
}

var (
	projects = []string{"Atlas", "Nordlicht", "Phoenix", "Meridian", "Kestrel"}
	cities   = []string{"München", "Lyon", "Kyoto", "Valencia", "Copenhagen", "Chicago"}
	days     = map[string][]string{
		"en": {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"},
		"de": {"Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag"},
		"fr": {"lundi", "mardi", "mercredi", "jeudi", "vendredi"},
		"ja": {"月曜日", "火曜日", "水曜日", "木曜日", "金曜日"},
		"es": {"lunes", "martes", "miércoles", "jueves", "viernes"},
	}
)

// subjects by language; {p} project, {c} city, {d} weekday, {n} a number.
var subjects = map[string][]string{
	"en": {"Quarterly report draft", "Meeting notes: {p} kickoff", "Invoice {n}", "Can we move our call to {d}?",
		"Updated contract for {p}", "Travel plans for {c}", "Lunch on {d}?", "Budget review {p}",
		"🎉 Team offsite in {c}!", "☕ Coffee {d}?", "Slides for the {p} review", "Question about the delivery schedule"},
	"de": {"Angebot für das Projekt {p}", "Rückfrage zur Rechnung Nr. {n}", "Termin nächste Woche", "Änderungen am Vertrag",
		"Grüße aus {c}", "Protokoll der Besprechung {p}", "Lieferung verzögert sich"},
	"fr": {"Réunion de projet — compte rendu", "Devis n° {n}", "Question sur la livraison", "À propos de la facture {n}",
		"Déjeuner {d} ?"},
	"ja": {"お見積もりの件", "打ち合わせの日程について", "{p} プロジェクトの進捗"},
	"es": {"Reunión del equipo", "Presupuesto actualizado para {p}", "Viaje a {c}"},
}

var robotSubjects = map[string][]string{
	"gitlab@git.example.com":               {"[mailferry/mailferry] Pipeline #{n} failed", "[ops/infra] Merge request !{n} was merged"},
	"buchungsbestaetigung@bahn.example.de": {"Ihre Buchungsbestätigung (Auftrag {n})", "Ihre Reiseverbindung nach {c}"},
	"helpdesk@example.com":                 {"Ticket #{n}: password expires in 7 days", "Scheduled maintenance on {d}"},
	"noreply@parcel.example.net":           {"Your order #{n} has shipped", "Delivery attempt failed for parcel {n}"},
	"newsletter@weekly-go.example.org":     {"The Weekly Go #{n}: generics, iterators and more"},
}

var spamSubjects = []string{
	"You have won a $1,000 gift card!!!", "URGENT: verify your account within 24 hours",
	"Ihr Paket konnte nicht zugestellt werden", "Investment opportunity 💰 10x in {d}", "Re: your invoice {n} (overdue)",
}

var greetings = map[string][]string{
	"en": {"Hi {to},", "Hello {to},", "Dear {to},"},
	"de": {"Hallo {to},", "Guten Tag {to},", "Moin {to},"},
	"fr": {"Bonjour {to},", "Salut {to},"},
	"ja": {"{to} 様", "{to} さん、こんにちは。"},
	"es": {"Hola {to}:", "Buenos días, {to}:"},
}

var sentences = map[string][]string{
	"en": {
		"Thanks for sending the documents so quickly.", "I had a look at the numbers and they mostly add up.",
		"Could you check the figures in section three once more?", "The {p} team meets again on {d} at 10:00.",
		"Let me know if the attached version works for you.", "We still need a decision on the budget before the end of the month.",
		"I'll be in {c} next week, so replies may be slow.", "The shipment left the warehouse this morning.",
		"I'm not sure the current timeline is realistic.", "Happy to jump on a call if that's easier.",
		"Please forward this to anyone on the {p} project who needs it.", "The invoice number is {n}, in case accounting asks.",
	},
	"de": {
		"Vielen Dank für die schnelle Rückmeldung.", "Anbei finden Sie die überarbeitete Fassung.",
		"Könnten Sie die Zahlen in Abschnitt drei noch einmal prüfen?", "Das Treffen zum Projekt {p} findet am {d} statt.",
		"Die Lieferung verzögert sich leider um zwei Wochen.", "Wir müssen noch über die Kosten für Änderungen sprechen.",
		"Ich bin nächste Woche in {c} und nur eingeschränkt erreichbar.", "Bitte bestätigen Sie den Empfang dieser Nachricht.",
	},
	"fr": {
		"Merci pour votre réponse rapide.", "Vous trouverez ci-joint la version corrigée du devis.",
		"Pourriez-vous vérifier les chiffres du troisième trimestre ?", "La réunion sur le projet {p} aura lieu {d} à 14 h.",
		"Je serai à {c} la semaine prochaine.", "Nous attendons encore la confirmation de la livraison.",
	},
	"ja": {
		"いつもお世話になっております。", "資料をお送りいただきありがとうございます。", "来週の打ち合わせの件でご連絡いたしました。",
		"ご確認のほど、よろしくお願いいたします。", "{p} の件、進捗をご報告します。",
	},
	"es": {
		"Gracias por la información.", "Te envío el presupuesto actualizado.", "¿Podemos hablar el {d} por la mañana?",
		"El equipo de {p} ya revisó el documento.", "Estaré en {c} la próxima semana.",
	},
}

var closings = map[string][]string{
	"en": {"Best regards,", "Cheers,", "Thanks,", "Kind regards,"},
	"de": {"Viele Grüße", "Mit freundlichen Grüßen", "Beste Grüße"},
	"fr": {"Cordialement,", "Bien à vous,", "À bientôt,"},
	"ja": {"よろしくお願いいたします。"},
	"es": {"Saludos,", "Un abrazo,"},
}

var spamBodies = []string{
	"Congratulations! You have been selected to receive an exclusive reward. Click the link below to claim it now.",
	"We detected unusual activity on your account. Verify your identity immediately or your account will be suspended.",
	"Sehr geehrter Kunde, Ihr Paket wartet auf Zustellung. Bitte bestätigen Sie Ihre Adresse und zahlen Sie 1,99 € Gebühr.",
	"Dear friend, I have a business proposal that will make you rich. Reply with your bank details.",
}

// attachmentKinds are plausible attachments: file name and MIME type.
var attachmentKinds = []struct{ name, typ string }{
	{"Angebot_{p}.pdf", "application/pdf"}, {"scan_{n}.jpg", "image/jpeg"},
	{"Präsentation {p}.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
	{"budget_{p}.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
	{"photos {c}.zip", "application/zip"}, {"contrat signé.pdf", "application/pdf"},
}

const (
	minAttachment = 100 << 10
	maxAttachment = 2 << 20
)

// newCorpus generates the accounts of the source server. The same seed,
// user count, message count and now give the same bytes.
func newCorpus(seed uint64, users, perUser int, now time.Time) []*account {
	now = now.UTC().Truncate(time.Second)
	accounts := make([]*account, users)
	for i := range users {
		login, name := fmt.Sprintf("user%d", i+1), fmt.Sprintf("User %d", i+1)
		if i < len(userNames) {
			login, name = userNames[i].login, userNames[i].name
		}
		a := &account{
			Email:          login + "@example.com",
			Name:           name,
			SourcePassword: login + "-source-secret",
			TargetPassword: login + "-o365-secret",
		}
		g := &gen{rng: rand.New(rand.NewPCG(seed, uint64(i)+1)), acct: a, now: now}
		g.fill(layouts[i%len(layouts)], perUser, i == 0)
		accounts[i] = a
	}
	return accounts
}

// gen generates one account's messages.
type gen struct {
	rng  *rand.Rand
	acct *account
	now  time.Time
	// earlier messages, for replies
	threads []thread
}

type thread struct {
	subject, msgID string
	peer           contact
}

func (g *gen) pick(n int) int { return g.rng.IntN(n) }

func (g *gen) chance(p float64) bool { return g.rng.Float64() < p }

func pickOf[T any](g *gen, s []T) T { return s[g.pick(len(s))] }

// fill spreads n messages over the layout's folders by weight, oldest
// first, so that UIDs grow with dates as on a real server. The first
// account also gets a message without Message-ID.
func (g *gen) fill(layout []folderSpec, n int, noMsgID bool) {
	total := 0
	for _, fs := range layout {
		g.acct.Folders = append(g.acct.Folders, &folder{Name: fs.name, Kind: fs.kind, Subscribed: true})
		total += fs.weight
	}
	// Every user has left a folder unsubscribed.
	g.acct.Folders[len(g.acct.Folders)-1].Subscribed = false

	// Dates over the last two years, more of them recent, mostly in
	// office hours.
	dates := make([]time.Time, n)
	local := zone(1)
	for i := range dates {
		ageDays := int(math.Pow(g.rng.Float64(), 1.6) * 730)
		y, m, d := g.now.In(local).AddDate(0, 0, -ageDays).Date()
		secs := 7*3600 + g.pick(13*3600)
		if g.chance(0.1) {
			secs = g.pick(24 * 3600)
		}
		t := time.Date(y, m, d, 0, 0, secs, 0, local)
		for t.After(g.now.Add(-time.Hour)) {
			t = t.AddDate(0, 0, -1)
		}
		dates[i] = t.UTC()
	}
	slices.SortFunc(dates, func(a, b time.Time) int { return a.Compare(b) })

	// About one message in forty has an attachment, at least one per user;
	// their sizes spread over 100 KB–2 MB (the k-th of m in the k-th m-th
	// of the range, on a log scale), so each user has a big one.
	attachments := min(n, max(1, n/40))
	withAttachment := map[int]float64{}
	for k := 0; len(withAttachment) < attachments; {
		if i := g.pick(n); withAttachment[i] == 0 {
			withAttachment[i] = max((float64(k)+g.rng.Float64())/float64(attachments), 1e-9)
			k++
		}
	}
	cronAt := -1
	if noMsgID && n > 0 {
		cronAt = n / 3
	}
	for i, date := range dates {
		r := g.pick(total)
		var f *folder
		for j, fs := range layout {
			if r < fs.weight {
				f = g.acct.Folders[j]
				break
			}
			r -= fs.weight
		}
		if i == cronAt {
			f = g.acct.Folders[0] // INBOX
		}
		f.Messages = append(f.Messages, g.message(f, date, withAttachment[i], i == cronAt))
	}
}

// expand fills in {p}, {c}, {d}, {n} and {to}; lang is the weekday's.
func (g *gen) expand(s, lang, to string) string {
	d, ok := days[lang]
	if !ok {
		d = days["en"]
	}
	for _, r := range []struct {
		key  string
		pick func() string
	}{
		{"{p}", func() string { return pickOf(g, projects) }},
		{"{c}", func() string { return pickOf(g, cities) }},
		{"{d}", func() string { return pickOf(g, d) }},
		{"{n}", func() string { return fmt.Sprint(1000 + g.pick(9000)) }},
		{"{to}", func() string { return to }},
	} {
		if strings.Contains(s, r.key) {
			s = strings.ReplaceAll(s, r.key, r.pick())
		}
	}
	return s
}

func firstName(name string) string {
	if f, _, ok := strings.Cut(name, " "); ok && !strings.ContainsFunc(name, func(r rune) bool { return r > 0x2FF }) {
		return f
	}
	return name
}

// message generates one message for folder f dated date.
// attach, when not 0, is where in the size range the attachment falls.
func (g *gen) message(f *folder, date time.Time, attach float64, noMsgID bool) *message {
	me := contact{g.acct.Name, g.acct.Email, "en", zone(1)}
	if noMsgID {
		return g.cronMessage(date)
	}

	var from, to contact
	var cc *contact
	var subject, text string
	var inReplyTo string
	conversation := false
	lang := "en"
	outgoing := f.Kind == kindSent || f.Kind == kindDrafts
	switch {
	case f.Kind == kindJunk:
		from, to = pickOf(g, spammers), me
		subject = g.expand(pickOf(g, spamSubjects), "en", "")
		text = pickOf(g, spamBodies) + "\n\nhttp://" + strings.Split(from.addr, "@")[1] + "/claim?id=" + fmt.Sprint(g.rng.Uint32()) + "\n"
	case f.Name == "INBOX/Lists" || (!outgoing && g.chance(0.18)):
		from, to = pickOf(g, robots), me
		lang = from.lang
		subject = g.expand(pickOf(g, robotSubjects[from.addr]), lang, "")
		text = g.paragraphs(lang, "", 2) + "\n-- \nThis message was sent automatically. Please do not reply.\n"
	default:
		conversation = true
		peer := pickOf(g, contacts)
		lang = peer.lang
		if outgoing {
			from, to = me, peer
		} else {
			from, to = peer, me
		}
		if len(g.threads) > 0 && g.chance(0.3) {
			t := g.threads[g.pick(len(g.threads))]
			peer, lang = t.peer, t.peer.lang
			if outgoing {
				to = peer
			} else {
				from = peer
			}
			prefix := "Re: "
			if lang == "de" && g.chance(0.5) {
				prefix = "AW: "
			}
			if g.chance(0.15) {
				prefix = "Fwd: "
			}
			subject = prefix + baseSubject(t.subject)
			inReplyTo = t.msgID
		} else {
			subject = g.expand(pickOf(g, subjects[lang]), lang, "")
		}
		text = g.letter(lang, firstName(to.name), from.name)
		if g.chance(0.2) {
			c := pickOf(g, contacts)
			if c.addr != from.addr && c.addr != to.addr {
				cc = &c
			}
		}
	}

	zoneOf := from.zone
	if from.addr == me.addr {
		zoneOf = me.zone
	}
	sent := date
	if !outgoing {
		sent = date.Add(-time.Duration(2+g.pick(90)) * time.Second) // arrived a little after it was sent
	}
	msgID := fmt.Sprintf("<%s.%08x@%s>", sent.Format("20060102150405"), g.rng.Uint32(), domainOf(from.addr))
	if conversation {
		g.threads = append(g.threads, thread{subject: subject, msgID: msgID, peer: pick2(from, to, me)})
	}

	var h header
	if !outgoing {
		h.add("Return-Path", "<"+from.addr+">")
		h.add("Delivered-To", me.addr)
		h.add("Received", fmt.Sprintf("from mx.%s (mx.%s [192.0.2.%d])\r\n\tby mail.example.com (Postfix) with ESMTPS id %X\r\n\tfor <%s>; %s",
			domainOf(from.addr), domainOf(from.addr), 1+g.pick(250), g.rng.Uint32(), me.addr, date.In(zone(1)).Format(time.RFC1123Z)))
	}
	h.add("Date", sent.In(zoneOf).Format(time.RFC1123Z))
	h.add("From", address(from))
	h.add("To", address(to))
	if cc != nil {
		h.add("Cc", address(*cc))
	}
	h.add("Subject", encodeHeader(subject))
	h.add("Message-ID", msgID)
	if inReplyTo != "" {
		h.add("In-Reply-To", inReplyTo)
		h.add("References", inReplyTo)
	}
	if outgoing {
		h.add("User-Agent", "Mozilla Thunderbird")
	}
	h.add("MIME-Version", "1.0")

	var body []byte
	var attSize int
	switch {
	case attach > 0:
		body, attSize = g.withAttachment(&h, text, attach)
	case f.Kind != kindJunk && g.chance(0.3):
		body = g.alternative(&h, text)
	default:
		body = g.plain(&h, text)
	}
	return &message{Date: date, Flags: g.flags(f, date), Raw: append(h.bytes(), body...), Subject: subject, Attachment: attSize}
}

func pick2(from, to, me contact) contact {
	if from.addr == me.addr {
		return to
	}
	return from
}

// cronMessage is the kind of message that has no Message-ID: a local
// cron job's mail on the old server.
func (g *gen) cronMessage(date time.Time) *message {
	var h header
	h.add("Return-Path", "<root@oldmail.example.com>")
	h.add("Delivered-To", g.acct.Email)
	h.add("Date", date.In(zone(1)).Format(time.RFC1123Z))
	h.add("From", "Cron Daemon <root@oldmail.example.com>")
	h.add("To", g.acct.Email)
	h.add("Subject", "Cron <root@oldmail> /usr/local/sbin/backup-mail.sh")
	h.add("Content-Type", "text/plain; charset=us-ascii")
	h.add("X-Cron-Env", "<SHELL=/bin/sh>")
	body := "backup-mail: 1423 maildirs, 18.2 GB, done in 41 min\r\nbackup-mail: 2 warnings (see /var/log/backup-mail.log)\r\n"
	return &message{Date: date, Flags: []imap.Flag{imap.FlagSeen}, Raw: append(h.bytes(), body...),
		Subject: "Cron <root@oldmail> /usr/local/sbin/backup-mail.sh"}
}

// flags: mostly \Seen, older mail more so; some \Answered, \Flagged and a
// keyword ($label1 is Thunderbird's "Important").
func (g *gen) flags(f *folder, date time.Time) []imap.Flag {
	var fl []imap.Flag
	switch f.Kind {
	case kindSent:
		return []imap.Flag{imap.FlagSeen}
	case kindDrafts:
		return []imap.Flag{imap.FlagSeen, imap.FlagDraft}
	case kindJunk:
		if g.chance(0.2) {
			fl = append(fl, imap.FlagSeen)
		}
		return fl
	}
	seen := 0.97
	if g.now.Sub(date) < 14*24*time.Hour {
		seen = 0.6
	}
	if g.chance(seen) {
		fl = append(fl, imap.FlagSeen)
		if g.chance(0.15) {
			fl = append(fl, imap.FlagAnswered)
		}
	}
	if g.chance(0.07) {
		fl = append(fl, imap.FlagFlagged)
	}
	if g.chance(0.05) {
		fl = append(fl, "$label1")
	}
	if g.chance(0.03) {
		fl = append(fl, imap.FlagForwarded)
	}
	return fl
}

func (g *gen) paragraphs(lang, sig string, n int) string {
	var b strings.Builder
	pool := slices.Clone(sentences[lang])
	g.rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	for range n {
		var para []string
		for range 2 + g.pick(2) {
			if len(pool) == 0 {
				break
			}
			para = append(para, g.expand(pool[0], lang, ""))
			pool = pool[1:]
		}
		if len(para) == 0 {
			break
		}
		sep := " "
		if lang == "ja" {
			sep = ""
		}
		b.WriteString(wrap(strings.Join(para, sep), 72) + "\n\n")
	}
	if sig != "" {
		b.WriteString(sig + "\n")
	}
	return b.String()
}

func (g *gen) letter(lang, to, from string) string {
	var b strings.Builder
	b.WriteString(g.expand(pickOf(g, greetings[lang]), lang, to) + "\n\n")
	b.WriteString(g.paragraphs(lang, "", 1+g.pick(3)))
	b.WriteString(pickOf(g, closings[lang]) + "\n" + from + "\n")
	return b.String()
}

// plain writes a text/plain body: quoted-printable, or 8bit as old
// servers often hold it.
func (g *gen) plain(h *header, text string) []byte {
	ascii := isASCII(text)
	cte := "7bit"
	charset := "us-ascii"
	if !ascii {
		charset = "utf-8"
		cte = "quoted-printable"
		if g.chance(0.25) {
			cte = "8bit"
		}
	}
	h.add("Content-Type", "text/plain; charset="+charset)
	h.add("Content-Transfer-Encoding", cte)
	if cte == "quoted-printable" {
		return qp(text)
	}
	return []byte(crlf(text))
}

func (g *gen) alternative(h *header, text string) []byte {
	boundary := g.boundary()
	h.add("Content-Type", `multipart/alternative; boundary="`+boundary+`"`)
	var b bytes.Buffer
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	var ph header
	part := g.plain(&ph, text)
	b.WriteString("--" + boundary + "\r\n")
	b.Write(ph.bytes())
	b.Write(part)
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	var html strings.Builder
	html.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n")
	for _, p := range strings.Split(strings.TrimSpace(text), "\n\n") {
		br := "<br>\n" // greetings and signatures keep their lines; wrapped text flows
		if slices.ContainsFunc(strings.Split(p, "\n"), func(l string) bool { return len(l) > 50 }) {
			br = "\n"
		}
		html.WriteString("<p>" + strings.ReplaceAll(escapeHTML(p), "\n", br) + "</p>\n")
	}
	html.WriteString("</body></html>\n")
	b.Write(qp(html.String()))
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

func (g *gen) withAttachment(h *header, text string, at float64) ([]byte, int) {
	boundary := g.boundary()
	h.add("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	var b bytes.Buffer
	b.WriteString("This is a multi-part message in MIME format.\r\n--" + boundary + "\r\n")
	var ph header
	part := g.plain(&ph, text)
	b.Write(ph.bytes())
	b.Write(part)

	kind := pickOf(g, attachmentKinds)
	name := g.expand(kind.name, "en", "")
	size := int(float64(minAttachment) * math.Pow(float64(maxAttachment)/minAttachment, at))
	// Whole lines of a shared block of base64 noise, from a random line
	// on: encoding megabytes for every demo start would be slow.
	lines := max(size/57, (minAttachment+56)/57)
	size = lines * 57
	block := attachmentNoise()
	start := g.pick(len(block)/78-lines+1) * 78
	encoded := block[start : start+lines*78]
	b.Grow(len(encoded) + 1024)
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: " + mime.FormatMediaType(kind.typ, map[string]string{"name": name}) + "\r\n")
	b.WriteString("Content-Disposition: " + mime.FormatMediaType("attachment", map[string]string{"filename": name}) + "\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	b.Write(encoded)
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes(), size
}

// attachmentNoise is a base64 encoding of random bytes: lines of 76
// characters and CRLF, a quarter more than the largest attachment.
var attachmentNoise = gosync.OnceValue(func() []byte {
	data := make([]byte, (maxAttachment+maxAttachment/4)/57*57)
	rand.NewChaCha8([32]byte{'m', 'a', 'i', 'l', 'f', 'e', 'r', 'r', 'y'}).Read(data)
	out := make([]byte, 0, len(data)/57*78)
	for len(data) > 0 {
		out = append(base64.StdEncoding.AppendEncode(out, data[:57]), '\r', '\n')
		data = data[57:]
	}
	return out
})

func (g *gen) boundary() string {
	return fmt.Sprintf("------------%012x%012x", g.rng.Uint64()&0xffffffffffff, g.rng.Uint64()&0xffffffffffff)
}

// header collects header fields in order.
type header struct{ b bytes.Buffer }

func (h *header) add(key, value string) { h.b.WriteString(key + ": " + value + "\r\n") }

func (h *header) bytes() []byte { return append(h.b.Bytes(), "\r\n"...) }

func address(c contact) string {
	return foldWords((&mail.Address{Name: c.name, Address: c.addr}).String())
}

// encodeHeader encodes non-ASCII text as RFC 2047 words: Q for Latin
// scripts, B for the rest (CJK, emoji), folded between words.
func encodeHeader(s string) string {
	if isASCII(s) {
		return s
	}
	enc := mime.QEncoding
	if strings.ContainsFunc(s, func(r rune) bool { return r > 0x2FF }) {
		enc = mime.BEncoding
	}
	return foldWords(enc.Encode("utf-8", s))
}

// foldWords puts each encoded word after the first on its own line.
func foldWords(s string) string { return strings.ReplaceAll(s, "?= =?", "?=\r\n =?") }

func domainOf(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return d
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func qp(s string) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	// quotedprintable writes CRLF for text line breaks already.
	return b.Bytes()
}

// baseSubject strips reply and forward prefixes.
func baseSubject(s string) string {
	for {
		t := s
		for _, p := range []string{"Re: ", "AW: ", "Fwd: "} {
			t = strings.TrimPrefix(t, p)
		}
		if t == s {
			return s
		}
		s = t
	}
}

// wrap breaks text into lines of at most width bytes at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(text) {
		if i > 0 {
			if n+1+len(w) > width {
				b.WriteString("\n")
				n = 0
			} else {
				b.WriteString(" ")
				n++
			}
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

func escapeHTML(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
