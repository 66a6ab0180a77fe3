// Package exchangetest makes a Dovecot test server answer like Exchange
// Online. A Filter is a TCP proxy on 127.0.0.1 between an IMAP client (the
// sync engine) and the server; it follows the IMAP lines both ways and,
// switch by switch (Options), rewrites or answers them the way Exchange
// does: throttling replies with a suggested back-off for one mailbox, the
// `[Error=…]` response code after login that go-imap can't parse, a cap on
// concurrent connections per mailbox, case-insensitive and reserved folder
// names, and Exchange's capability list.
//
// What needs no filter:
//   - non-mail folders (Calendar, Contacts, …): create them in Dovecot
//     (CreateNonMailFolders) and they show in LIST like on Exchange; the
//     filter lets APPENDs into them through, so tests check that none land
//     there (the target folder stays empty);
//   - size refusals: dovecottest.Options.MaxMessageSize makes Dovecot answer
//     an APPEND over the limit with "NO [LIMIT] …". Exchange's wording of
//     that refusal is not known (the notes don't record it), so Dovecot's
//     is kept.
//
// The filter understands what go-imap's client and Dovecot send: commands
// with quoted or atom arguments, literals (synchronizing or LITERAL+) at line
// ends, IDLE and AUTHENTICATE continuations. LOGIN names given as literals
// and AUTHENTICATE without an initial response leave the connection's
// mailbox unknown: none of the per-mailbox switches apply to it.
package exchangetest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/imapconn"
)

// Options switch Exchange behaviours on. The zero value relays everything
// as it is.
type Options struct {
	// Caps rewrites every capability list (greeting, CAPABILITY, tagged
	// [CAPABILITY …] codes) to Exchange's: only the capabilities in
	// ExchangeCaps and AUTH=… stay. So no CONDSTORE, QRESYNC, SPECIAL-USE,
	// ESEARCH, MULTIAPPEND, LIST-STATUS, LIST-EXTENDED, ENABLE, BINARY …;
	// LITERAL+, UIDPLUS, MOVE, IDLE, NAMESPACE stay.
	Caps bool
	// LoginCode replaces the tagged OK of a successful LOGIN or
	// AUTHENTICATE with Exchange's
	//	tag OK [Error="Some text" AuthResultFromPopImapEnd=0 Proxy="…"] LOGIN completed.
	// which go-imap's client can't parse.
	LoginCode bool
	// MaxConnections, if > 0, caps the connections logged in (or logging
	// in) as one mailbox (Stats.Peak counts them in any case). The LOGIN over the cap gets
	// "NO [UNAVAILABLE] Too many connections for this mailbox", or with
	// CapBye "* BYE Too many connections for this mailbox" and the
	// connection closed. (Exchange's cap is 16–20 by reports; its wording
	// is not documented.)
	MaxConnections int
	CapBye         bool
	// Names makes folder names behave like Exchange's ("/" separator):
	//   - they are case-insensitive: every mailbox argument (SELECT,
	//     STATUS, APPEND, CREATE, RENAME, COPY, MOVE …) is spelled part by
	//     part as the server has it, so "projects/2024" is created or found
	//     under an existing "Projects";
	//   - CREATE or RENAME to a name that exists in another letter case gets
	//     "NO [ALREADYEXISTS] Mailbox already exists";
	//   - CREATE or RENAME to "Files" (any case) or below it gets
	//     "NO Folder name is reserved".
	// The filter lists the mailbox's folders on a connection of its own,
	// with the password the client logged in with.
	Names bool
	// NoUIDPlus makes the target a server without UIDPLUS: the capability
	// goes from every list, and APPENDUID and COPYUID codes from replies.
	NoUIDPlus bool
	// Throttle throttles one mailbox.
	Throttle *Throttle
	// Log, if set, hears about everything the filter does (t.Logf).
	Log func(format string, args ...any)
}

// Throttle describes Exchange's throttling of one mailbox: while it lasts,
// every command of that mailbox on every connection, LOGIN included and
// LOGOUT aside, is answered
//
//	tag NO Request is throttled. Suggested Backoff Time: <Backoff> milliseconds
//
// It lasts Backoff: a client that comes back earlier is throttled again.
// Other mailboxes are never throttled.
type Throttle struct {
	// User is the login name of the throttled mailbox (any letter case).
	User string
	// AfterAppends starts the throttle when that many of User's APPEND
	// commands came in (once per Filter): that one still goes through, the
	// next command of User is the first one throttled. 0 leaves it to
	// Filter.ThrottleNow.
	AfterAppends int
	// Backoff is the suggested back-off and how long the throttle lasts
	// (default 1500 ms; Exchange's is about 299000 ms).
	Backoff time.Duration
	// Disconnect makes the throttle start the way Exchange's does after
	// repeated errors: every connection of User logged in at that moment
	// is left "authenticated but not connected" and answers every command
	// from then on (LOGOUT aside) with
	// "NO User is authenticated but not connected."; new logins are
	// throttled for Backoff as above.
	Disconnect bool
}

// Exchange is the set of switches for a target that behaves like Exchange
// Online in everything but throttling and the connection cap.
func Exchange() Options { return Options{Caps: true, LoginCode: true, Names: true} }

// ExchangeCaps are the capabilities Exchange Online advertises (before and
// after login, besides AUTH=…), as client logs show them.
var ExchangeCaps = []string{"IMAP4", "IMAP4rev1", "SASL-IR", "UIDPLUS", "ID", "UNSELECT", "CHILDREN", "IDLE",
	"NAMESPACE", "LITERAL+", "MOVE", "STARTTLS", "LOGINDISABLED"}

// NonMailFolders are folders Exchange lists that must never receive mail.
var NonMailFolders = []string{"Calendar", "Contacts", "Tasks", "Notes", "Journal", "Conversation History", "Outbox"}

// LoginCode is the tagged OK Exchange sends after AUTHENTICATE, as public
// client logs show it, without tag and command name.
const LoginCode = `OK [Error="Some text" AuthResultFromPopImapEnd=0 Proxy="BL1PR13CA0123.outlook.office365.com:1993:SSL"]`

// Replies the filter sends itself.
const (
	replyThrottled    = "NO Request is throttled. Suggested Backoff Time: %d milliseconds"
	replyNotConnected = "NO User is authenticated but not connected."
	replyCapNo        = "NO [UNAVAILABLE] Too many connections for this mailbox"
	replyCapBye       = "* BYE Too many connections for this mailbox"
	replyCollision    = "NO [ALREADYEXISTS] Mailbox already exists"
	replyReserved     = "NO Folder name is reserved"
)

// CreateNonMailFolders creates Exchange's non-mail folders with c (a
// connection straight to Dovecot), so that they show in LIST.
func CreateNonMailFolders(c *imapclient.Client) error {
	for _, name := range NonMailFolders {
		if err := c.Create(name, nil).Wait(); err != nil {
			return fmt.Errorf("create %q: %w", name, err)
		}
	}
	return nil
}

// Stats is what the filter did so far.
type Stats struct {
	// Throttled counts commands answered "Request is throttled".
	Throttled int
	// ThrottleStart and ThrottleEnd bound the last throttle.
	ThrottleStart, ThrottleEnd time.Time
	// NotConnected counts commands answered "User is authenticated but not
	// connected".
	NotConnected int
	// CapRefused counts LOGINs refused by MaxConnections.
	CapRefused int
	// Collisions and Reserved count CREATE/RENAME refused by Names, and
	// Renamed the mailbox arguments it spelled as the server has them.
	Collisions, Reserved, Renamed int
	// Peak is the most connections logged in (or logging in) at once, and
	// Appends the successful APPENDs, per mailbox (lower-case login name).
	Peak, Appends map[string]int
}

// Filter is a running proxy.
type Filter struct {
	opts     Options
	upstream string
	ln       net.Listener

	mu          sync.Mutex
	sessions    map[*session]bool
	active      map[string]int       // connections logged in or logging in, by user
	until       map[string]time.Time // throttled until, by user
	appendsSeen int                  // APPEND commands of Throttle.User
	folders     map[string][]string  // folder names by user, for Names
	creds       map[string]string    // passwords seen at LOGIN, for Names' own LIST
	stats       Stats
	closed      bool
	wg          sync.WaitGroup
}

// New starts a filter on 127.0.0.1 in front of upstream ("host:port", a
// plain IMAP listener).
func New(upstream string, opts Options) (*Filter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if opts.Throttle != nil && opts.Throttle.Backoff <= 0 {
		t := *opts.Throttle
		t.Backoff = 1500 * time.Millisecond
		opts.Throttle = &t
	}
	f := &Filter{opts: opts, upstream: upstream, ln: ln, sessions: map[*session]bool{}, active: map[string]int{},
		until: map[string]time.Time{}, creds: map[string]string{}, folders: map[string][]string{},
		stats: Stats{Peak: map[string]int{}, Appends: map[string]int{}}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// Addr is the filter's address, for imap+plain://.
func (f *Filter) Addr() string { return f.ln.Addr().String() }

// Stats returns a copy of the filter's counters.
func (f *Filter) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.Peak, s.Appends = map[string]int{}, map[string]int{}
	for k, v := range f.stats.Peak {
		s.Peak[k] = v
	}
	for k, v := range f.stats.Appends {
		s.Appends[k] = v
	}
	return s
}

// ThrottleNow starts throttling user at once, for Options.Throttle's
// Backoff (1500 ms without a Throttle).
func (f *Filter) ThrottleNow(user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.startThrottle(strings.ToLower(user), nil)
}

func (f *Filter) backoff() time.Duration {
	if f.opts.Throttle != nil {
		return f.opts.Throttle.Backoff
	}
	return 1500 * time.Millisecond
}

// startThrottle needs f.mu; held is a session whose mu the caller holds
// (or nil).
func (f *Filter) startThrottle(user string, held *session) {
	now := time.Now()
	f.until[user] = now.Add(f.backoff())
	f.stats.ThrottleStart, f.stats.ThrottleEnd = now, f.until[user]
	f.logf("throttling %s for %v", user, f.backoff())
	if f.opts.Throttle == nil || !f.opts.Throttle.Disconnect {
		return
	}
	for s := range f.sessions {
		if s != held {
			s.mu.Lock()
		}
		if s.user == user {
			s.stale = true
		}
		if s != held {
			s.mu.Unlock()
		}
	}
}

// Close stops the filter and cuts its connections.
func (f *Filter) Close() error {
	f.mu.Lock()
	f.closed = true
	var open []*session
	for s := range f.sessions {
		open = append(open, s)
	}
	f.mu.Unlock()
	for _, s := range open {
		s.close()
	}
	err := f.ln.Close()
	f.wg.Wait()
	return err
}

func (f *Filter) logf(format string, args ...any) {
	if f.opts.Log != nil {
		f.opts.Log("exchangetest: "+format, args...)
	}
}

func (f *Filter) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", f.upstream)
		if err != nil {
			c.Close()
			continue
		}
		s := &session{f: f, client: c, up: up, pending: map[string]command{}}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		f.sessions[s] = true
		f.mu.Unlock()
		f.wg.Add(2)
		go func() { defer f.wg.Done(); s.clientToServer(); s.close() }()
		go func() { defer f.wg.Done(); s.serverToClient(); s.close() }()
	}
}

// session is one client connection and its upstream connection.
type session struct {
	f          *Filter
	client, up net.Conn
	// wmu serializes writes to the client: the server's responses hold it
	// from their first byte to their last, so that the filter's own
	// replies go between responses.
	wmu       sync.Mutex
	closeOnce sync.Once

	mu          sync.Mutex
	pending     map[string]command // commands sent upstream, by tag
	user        string             // logged in as (lower-case)
	slot        string             // user this connection counts for in active
	passthrough string             // tag of an IDLE/AUTHENTICATE in progress
	stale       bool               // "authenticated but not connected"
}

// command is a client command as the filter sees it.
type command struct {
	tag, name  string // name upper-case, "UID FETCH" for UID commands
	user, pass string // LOGIN/AUTHENTICATE
	boxes      []mailboxArg
}

// mailboxArg is a mailbox name in a command line: decoded, and where it is.
type mailboxArg struct {
	name       string
	start, end int
}

func (s *session) close() {
	s.closeOnce.Do(func() {
		s.client.Close()
		s.up.Close()
		f := s.f
		f.mu.Lock()
		delete(f.sessions, s)
		s.mu.Lock()
		if s.slot != "" {
			f.active[s.slot]--
			s.slot = ""
		}
		s.mu.Unlock()
		f.mu.Unlock()
	})
}

func (s *session) clientToServer() {
	r := bufio.NewReaderSize(s.client, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		s.mu.Lock()
		pass := s.passthrough != ""
		s.mu.Unlock()
		if pass { // IDLE's DONE, SASL responses: not commands
			if _, err := s.up.Write(line); err != nil {
				return
			}
			continue
		}
		cmd := parseCommand(line)
		reply, out := s.decide(cmd, line)
		if reply != "" {
			if err := swallow(r, line); err != nil {
				return
			}
			s.f.logf("%s %s → %s", cmd.tag, cmd.name, reply)
			if strings.HasPrefix(reply, "* BYE") {
				s.writeClient(reply + "\r\n")
				return
			}
			s.writeClient(cmd.tag + " " + reply + "\r\n")
			continue
		}
		s.mu.Lock()
		s.pending[cmd.tag] = cmd
		if cmd.name == "IDLE" || cmd.name == "AUTHENTICATE" {
			s.passthrough = cmd.tag
		}
		s.mu.Unlock()
		if err := relay(s.up, r, out); err != nil {
			return
		}
	}
}

func (s *session) writeClient(text string) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.client.Write([]byte(text))
}

// decide returns the filter's own reply to cmd, or "" and the command line
// to pass on.
func (s *session) decide(cmd command, line []byte) (reply string, out []byte) {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd.name == "LOGOUT" {
		return "", line
	}
	if s.stale {
		f.stats.NotConnected++
		return replyNotConnected, nil
	}
	user := s.user
	if cmd.name == "LOGIN" || cmd.name == "AUTHENTICATE" {
		user = cmd.user
		if cmd.pass != "" {
			f.creds[user] = cmd.pass
		}
	}
	if user != "" && time.Now().Before(f.until[user]) {
		f.stats.Throttled++
		return fmt.Sprintf(replyThrottled, f.backoff().Milliseconds()), nil
	}
	switch cmd.name {
	case "LOGIN", "AUTHENTICATE":
		if user == "" || s.slot != "" {
			return "", line
		}
		if f.opts.MaxConnections > 0 && f.active[user] >= f.opts.MaxConnections {
			f.stats.CapRefused++
			if f.opts.CapBye {
				return replyCapBye, nil
			}
			return replyCapNo, nil
		}
		f.active[user]++
		s.slot = user
		f.stats.Peak[user] = max(f.stats.Peak[user], f.active[user])
	case "APPEND":
		// This one goes through; the throttle answers the next command.
		t := f.opts.Throttle
		if t != nil && s.user != "" && strings.EqualFold(t.User, s.user) {
			f.appendsSeen++
			if t.AfterAppends > 0 && f.appendsSeen == t.AfterAppends {
				f.startThrottle(s.user, s)
			}
		}
	}
	if f.opts.Names && s.user != "" && len(cmd.boxes) > 0 {
		return f.names(s.user, cmd, line)
	}
	return "", line
}

// names applies Exchange's folder name rules to a command's mailbox
// arguments: the reserved Files, refused case variants of existing names,
// and case-insensitive lookup (each path part spelled as the server has
// it, so "projects/2024" is created or found under an existing
// "Projects").
func (f *Filter) names(user string, cmd command, line []byte) (string, []byte) {
	if cmd.name == "CREATE" || cmd.name == "RENAME" {
		dst := cmd.boxes[len(cmd.boxes)-1].name
		if top, _, _ := strings.Cut(dst, "/"); strings.EqualFold(top, "Files") {
			f.stats.Reserved++
			return replyReserved, nil
		}
		if canon, exists := f.resolve(user, dst); exists && canon != dst {
			f.stats.Collisions++
			return replyCollision, nil
		}
	}
	out := line
	for i := len(cmd.boxes) - 1; i >= 0; i-- { // from the end: earlier offsets stay valid
		b := cmd.boxes[i]
		if canon, _ := f.resolve(user, b.name); canon != b.name {
			f.logf("%s %s: %q is %q on the server", cmd.tag, cmd.name, b.name, canon)
			f.stats.Renamed++
			out = append(append(append([]byte(nil), out[:b.start]...), imapconn.Quote(imapconn.EncodeMUTF7(canon))...), out[b.end:]...)
		}
	}
	switch cmd.name {
	case "CREATE", "DELETE", "RENAME":
		delete(f.folders, user)
	}
	return "", out
}

// resolve spells name as the server has it, part by part, case-insensitively;
// exists reports whether the whole name is there. The folder list is
// cached, and read again when a name is not in it.
func (f *Filter) resolve(user, name string) (canon string, exists bool) {
	for fresh := false; ; fresh = true {
		if _, ok := f.folders[user]; !ok || fresh {
			names, err := f.list(user)
			if err != nil {
				f.logf("listing %s's folders: %v", user, err)
				return name, false
			}
			f.folders[user] = names
		}
		canon, exists = resolveIn(f.folders[user], name)
		if exists || fresh {
			return canon, exists
		}
	}
}

func resolveIn(names []string, name string) (string, bool) {
	parts := strings.Split(name, "/")
	for i := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		found := ""
		for _, n := range names {
			if n == prefix {
				found = n
				break
			}
			if strings.EqualFold(n, prefix) {
				found = n
			}
		}
		if found == "" {
			return strings.Join(parts, "/"), false
		}
		copy(parts, strings.Split(found, "/"))
	}
	return strings.Join(parts, "/"), true
}

// list lists user's folders on a connection of its own, straight to the
// server (f.mu held: it is rare, and this keeps the order of events).
func (f *Filter) list(user string) ([]string, error) {
	pass, ok := f.creds[user]
	if !ok {
		return nil, fmt.Errorf("no password seen for %s", user)
	}
	c, err := imapclient.DialInsecure(f.upstream, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		return nil, err
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return nil, err
	}
	names := make([]string, len(list))
	for i, l := range list {
		names[i] = l.Mailbox
	}
	return names, nil
}

func (s *session) serverToClient() {
	r := bufio.NewReaderSize(s.up, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		out := s.response(line)
		s.wmu.Lock()
		_, err = s.client.Write(out)
		// Literals and the rest of the response, as they are.
		for err == nil {
			n, _, ok := literalAt(line)
			if !ok {
				break
			}
			if _, err = io.CopyN(s.client, r, n); err != nil {
				break
			}
			if line, err = r.ReadBytes('\n'); err == nil {
				_, err = s.client.Write(line)
			}
		}
		s.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// response does the bookkeeping for a server response's first line and
// returns it as the client gets it.
func (s *session) response(line []byte) []byte {
	f := s.f
	if f.opts.Caps {
		line = filterCaps(line)
	}
	if f.opts.NoUIDPlus {
		line = stripUIDPlus(line)
	}
	tag, rest, _ := strings.Cut(string(line), " ")
	if tag == "*" || tag == "+" {
		return line
	}
	typ, _, _ := strings.Cut(rest, " ")
	typ = strings.ToUpper(strings.TrimRight(typ, "\r\n"))
	f.mu.Lock()
	defer f.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd, ok := s.pending[tag]
	if !ok {
		return line
	}
	delete(s.pending, tag)
	if s.passthrough == tag {
		s.passthrough = ""
	}
	switch cmd.name {
	case "LOGIN", "AUTHENTICATE":
		if typ != "OK" {
			if s.slot != "" {
				f.active[s.slot]--
				s.slot = ""
			}
			return line
		}
		s.user = cmd.user
		if f.opts.LoginCode {
			return []byte(tag + " " + LoginCode + " " + cmd.name + " completed.\r\n")
		}
	case "APPEND":
		if typ == "OK" && s.user != "" {
			f.stats.Appends[s.user]++
		}
	case "CREATE", "DELETE", "RENAME":
		delete(f.folders, s.user)
	}
	return line
}

// relay sends a command line and its literals upstream.
func relay(up io.Writer, r *bufio.Reader, line []byte) error {
	for {
		if _, err := up.Write(line); err != nil {
			return err
		}
		n, _, ok := literalAt(line)
		if !ok {
			return nil
		}
		if _, err := io.CopyN(up, r, n); err != nil {
			return err
		}
		var err error
		if line, err = r.ReadBytes('\n'); err != nil {
			return err
		}
	}
}

// swallow skips what follows a command the filter answers itself: the
// LITERAL+ literals and the rest of the command. A synchronizing literal is
// never sent, since no "+" comes.
func swallow(r *bufio.Reader, line []byte) error {
	for {
		n, sync, ok := literalAt(line)
		if !ok || sync {
			return nil
		}
		if _, err := io.CopyN(io.Discard, r, n); err != nil {
			return err
		}
		var err error
		if line, err = r.ReadBytes('\n'); err != nil {
			return err
		}
	}
}

// literalAt parses a literal announced at a line's end: "{N}" or "{N+}".
func literalAt(line []byte) (n int64, sync, ok bool) {
	l := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if !bytes.HasSuffix(l, []byte("}")) {
		return 0, false, false
	}
	open := bytes.LastIndexByte(l, '{')
	if open < 0 {
		return 0, false, false
	}
	num := l[open+1 : len(l)-1]
	sync = !bytes.HasSuffix(num, []byte("+"))
	num = bytes.TrimSuffix(num, []byte("+"))
	v, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || v < 0 || len(num) == 0 || num[0] == '+' || num[0] == '-' {
		return 0, false, false
	}
	return v, sync, true
}

// mailboxArgs says which arguments of a command are mailbox names.
var mailboxArgs = map[string][]int{
	"SELECT": {0}, "EXAMINE": {0}, "CREATE": {0}, "DELETE": {0}, "SUBSCRIBE": {0}, "UNSUBSCRIBE": {0},
	"STATUS": {0}, "APPEND": {0}, "RENAME": {0, 1}, "COPY": {1}, "MOVE": {1}, "UID COPY": {1}, "UID MOVE": {1},
}

// parseCommand reads a command's tag, name and the arguments the filter
// needs.
func parseCommand(line []byte) command {
	l := strings.TrimRight(string(line), "\r\n")
	var cmd command
	head := splitArgs(l, 3)
	if len(head) < 2 {
		if len(head) == 1 {
			cmd.tag = head[0].v
		}
		return cmd
	}
	cmd.tag, cmd.name = head[0].v, strings.ToUpper(head[1].v)
	rest := head[1].end
	if cmd.name == "UID" && len(head) > 2 {
		cmd.name += " " + strings.ToUpper(head[2].v)
		rest = head[2].end
	}
	args := splitArgs(l[rest:], 2)
	for i := range args {
		args[i].start += rest
		args[i].end += rest
	}
	switch cmd.name {
	case "LOGIN":
		if len(args) == 2 {
			cmd.user, cmd.pass = strings.ToLower(args[0].v), args[1].v
		}
	case "AUTHENTICATE":
		if len(args) == 2 {
			cmd.user, cmd.pass = saslUser(strings.ToUpper(args[0].v), args[1].v)
		}
	}
	for _, i := range mailboxArgs[cmd.name] {
		if i < len(args) && args[i].ok {
			cmd.boxes = append(cmd.boxes, mailboxArg{name: imapconn.DecodeMUTF7(args[i].v), start: args[i].start, end: args[i].end})
		}
	}
	return cmd
}

// arg is a command argument: an atom or a quoted string (ok), or anything
// else up to the next space (not ok: lists, literals).
type arg struct {
	v          string
	start, end int
	ok         bool
}

// splitArgs reads up to n space-separated arguments from s.
func splitArgs(s string, n int) []arg {
	var out []arg
	for i := 0; i < len(s) && len(out) < n; {
		if s[i] == ' ' {
			i++
			continue
		}
		a := arg{start: i, ok: s[i] != '(' && s[i] != '{'}
		if s[i] == '"' {
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			a.v, a.end, a.ok = b.String(), min(j+1, len(s)), j < len(s)
		} else {
			j := strings.IndexByte(s[i:], ' ')
			if j < 0 {
				j = len(s) - i
			}
			a.v, a.end = s[i:i+j], i+j
		}
		out = append(out, a)
		i = a.end
	}
	return out
}

// saslUser finds the user (and password) in an initial response of PLAIN
// or XOAUTH2.
func saslUser(mech, ir string) (user, pass string) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(ir))
	if err != nil {
		return "", ""
	}
	switch mech {
	case "PLAIN":
		parts := strings.Split(string(raw), "\x00")
		if len(parts) == 3 {
			return strings.ToLower(parts[1]), parts[2]
		}
	case "XOAUTH2":
		for _, kv := range strings.Split(string(raw), "\x01") {
			if u, ok := strings.CutPrefix(kv, "user="); ok {
				return strings.ToLower(u), ""
			}
		}
	}
	return "", ""
}

var exchangeCapSet = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range ExchangeCaps {
		m[strings.ToUpper(c)] = true
	}
	return m
}()

// filterCaps rewrites the capability list of "* CAPABILITY …" or of a
// "[CAPABILITY …]" code to Exchange's.
func filterCaps(line []byte) []byte {
	s := string(line)
	var start, end int
	if rest, ok := strings.CutPrefix(s, "* CAPABILITY "); ok {
		start = len(s) - len(rest)
		end = len(strings.TrimRight(s, "\r\n"))
	} else if i := strings.Index(s, "[CAPABILITY "); i >= 0 {
		start = i + len("[CAPABILITY ")
		j := strings.IndexByte(s[start:], ']')
		if j < 0 {
			return line
		}
		end = start + j
	} else {
		return line
	}
	var kept []string
	for _, c := range strings.Fields(s[start:end]) {
		u := strings.ToUpper(c)
		if exchangeCapSet[u] || strings.HasPrefix(u, "AUTH=") {
			kept = append(kept, c)
		}
	}
	return []byte(s[:start] + strings.Join(kept, " ") + s[end:])
}

var uidPlusCode = regexp.MustCompile(`(?i)\[(APPENDUID|COPYUID) [^\]]*\] ?|\bUIDPLUS ?`)

// stripUIDPlus removes UIDPLUS from capability lists and APPENDUID and
// COPYUID codes from replies.
func stripUIDPlus(line []byte) []byte { return uidPlusCode.ReplaceAll(line, nil) }
