package imapconn

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"strings"
	"unicode"

	"go.uber.org/zap"
)

// toleranceConn sits between the socket and literalPlusConn and hands
// go-imap a response stream it can parse. go-imap v2.0.0-beta.8's client
// drops the connection at the first response it cannot tokenize, and
// Exchange Online sends some:
//
//   - status responses whose code is not an atom with optional text, e.g.
//     `T2 OK [Error="Some text" AuthResultFromPopImapEnd=0 Proxy="…"] AUTHENTICATE completed.`
//     The code becomes plain text, `T2 OK Error="Some text" AuthResultFromPopImapEnd=0 Proxy="…" AUTHENTICATE completed.`,
//     so a NO still shows it in its error;
//   - untagged responses go-imap doesn't know (`* VANISHED …`, `* XFOO …`),
//     and lines that have no tag at all: dropped whole, literals included,
//     and reported.
//
// A line is changed only when a model of go-imap's parser (statusAccepted,
// classify) says go-imap would reject it; everything else passes byte for
// byte. The stream is followed line by line and literal by literal, so
// literal data is passed (or, inside a dropped response, skipped) unread.
//
// It sits under literalPlusConn, so what it hands on is what
// literalPlusConn scans for response boundaries: a dropped response can't
// confuse the "+" that one injects. It is a plain blocking Read with no
// goroutine, called on go-imap's reader goroutine only; deadlines and
// writes go straight to the socket, and a read deadline (literalPlusConn
// sets one in the past to wake a blocked Read) returns at once, keeping a
// line held back for the next Read.
type toleranceConn struct {
	net.Conn
	f      lineFilter
	off    int // how much of f.out was delivered
	buf    []byte
	err    error
	report func(toleranceEvent)
	raw    rawReplies
}

// toleranceEvent is one change to the server's stream.
type toleranceEvent struct {
	dropped bool
	line    []byte // the server's line (at most maxEventLine bytes)
	now     []byte // what go-imap got instead, for a rewrite
}

// tolerate wraps c in the tolerance layer and logs what it changes.
func tolerate(c net.Conn, log *zap.Logger) *toleranceConn {
	return newToleranceConn(c, func(ev toleranceEvent) {
		if ev.dropped {
			log.Info("ignored a server response go-imap cannot parse", zap.ByteString("response", ev.line))
		} else {
			log.Debug("rewrote a server response code go-imap cannot parse", zap.ByteString("response", ev.line), zap.ByteString("as", ev.now))
		}
	})
}

func newToleranceConn(c net.Conn, report func(toleranceEvent)) *toleranceConn {
	return &toleranceConn{Conn: c, buf: make([]byte, 32<<10), report: report}
}

func (c *toleranceConn) Read(p []byte) (int, error) {
	if c.off == len(c.f.out) && c.err == nil {
		if n := c.f.passing(); n > 0 {
			// Literal data passes unchanged: straight from the socket into
			// p, without the filter's two copies (message bodies are most
			// of the stream).
			k, err := c.Conn.Read(p[:min(int64(len(p)), n)])
			c.f.passed(k)
			if err != nil && !isTimeout(err) {
				c.err, err = err, nil // for the next Read
			}
			if k > 0 {
				return k, nil // a deadline that came with data comes again
			}
			if err != nil {
				return 0, err
			}
		}
	}
	for c.off == len(c.f.out) {
		c.f.out, c.off = c.f.out[:0], 0
		if c.err != nil {
			c.raw.fail(c.err)
			return 0, c.err
		}
		n, err := c.Conn.Read(c.buf)
		c.f.feed(c.buf[:n])
		if err != nil {
			if isTimeout(err) {
				if len(c.f.out) == 0 {
					c.flushEvents()
					return 0, err // a deadline: the caller may read on later
				}
			} else {
				c.f.flush()
				c.err = err
			}
		}
		c.flushEvents()
	}
	n := copy(p, c.f.out[c.off:])
	c.off += n
	return n, nil
}

// Close closes the connection; a command of ours still waiting for its
// reply gets none.
func (c *toleranceConn) Close() error {
	c.raw.fail(net.ErrClosed)
	return c.Conn.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// flushEvents reports the changes made so far and hands on the replies to
// imapconn's own commands (Read tells their waiters when the stream ends).
func (c *toleranceConn) flushEvents() {
	for _, ev := range c.f.events {
		if c.report != nil {
			c.report(ev)
		}
	}
	c.f.events = c.f.events[:0]
	for _, line := range c.f.replies {
		c.raw.deliver(line)
	}
	c.f.replies = c.f.replies[:0]
}

const (
	// classifyLimit bytes of a line are held back to tell its kind; a
	// line that doesn't tell by then is held up to maxStatusLine.
	classifyLimit = 256
	// maxStatusLine bounds a status response held back for checking;
	// longer ones pass as they are.
	maxStatusLine = 64 << 10
	maxEventLine  = 300
	// literalTail bytes of a line's end hold any literal announcement.
	literalTail = 64
)

type lineKind int

const (
	kindData   lineKind = iota // pass, following literals
	kindText                   // continuation request: pass to the end of the line
	kindStatus                 // OK/NO/BAD/BYE/PREAUTH: check the whole line
	kindDrop                   // go-imap can't parse it: drop, literals included
	kindMore                   // can't tell yet
)

type filterState int

const (
	stStart   filterState = iota // at the start of a response
	stStatus                     // holding a status response line
	stLine                       // in a line, passing or dropping it
	stLiteral                    // in literal data
)

// lineFilter is the tolerance layer without the I/O: feed it the server's
// bytes in any pieces and it appends to out what go-imap should read.
type lineFilter struct {
	state    filterState
	line     []byte // stStart, stStatus: the line so far
	literals bool   // stLine: a literal announced at the line's end follows
	drop     bool   // the current response is being dropped
	tail     []byte // stLine: the end of the line so far
	literal  int64  // stLiteral: bytes still to come
	out      []byte
	events   []toleranceEvent
	// replies are tagged replies to imapconn's own commands (rawTagPrefix),
	// taken out of the stream: go-imap drops the connection at a tag it
	// did not send.
	replies [][]byte
}

// passing is how many bytes from here on pass unchanged without being
// looked at: the rest of a literal that is not being dropped.
func (f *lineFilter) passing() int64 {
	if f.state == stLiteral && !f.drop {
		return f.literal
	}
	return 0
}

// passed advances over n bytes that passing allowed, delivered elsewhere.
func (f *lineFilter) passed(n int) {
	f.literal -= int64(n)
	if f.literal == 0 {
		f.state = stLine
	}
}

func (f *lineFilter) feed(in []byte) {
	for len(in) > 0 {
		switch f.state {
		case stStart:
			// Most lines tell their kind in their first bytes; the rest
			// are held until they do, or up to maxStatusLine.
			limit := classifyLimit
			if len(f.line) >= classifyLimit {
				limit = maxStatusLine
			}
			var complete bool
			in, complete = takeLine(&f.line, in, limit)
			if !complete && len(f.line) < limit {
				return
			}
			kind, typEnd := classify(f.line, complete)
			if kind == kindMore {
				if len(f.line) < maxStatusLine {
					continue
				}
				kind = kindData
			}
			line := f.line
			f.line = nil
			if kind == kindStatus {
				f.state, f.line = stStatus, line
				if complete {
					f.finishStatus(typEnd)
				}
				continue
			}
			f.state, f.literals, f.drop, f.tail = stLine, kind != kindText, kind == kindDrop, f.tail[:0]
			if f.drop {
				f.events = append(f.events, toleranceEvent{dropped: true, line: clip(line)})
			}
			f.feed(line) // pass or drop what was held back: at most one line, in stLine
		case stStatus:
			var complete bool
			in, complete = takeLine(&f.line, in, maxStatusLine)
			if complete {
				_, typEnd := classify(f.line, true)
				f.finishStatus(typEnd)
			} else if len(f.line) >= maxStatusLine {
				f.out = append(f.out, f.line...)
				f.line = nil
				f.state, f.literals, f.drop = stLine, false, false
			}
		case stLine:
			seg := in
			i := bytes.IndexByte(in, '\n')
			if i >= 0 {
				seg = in[:i+1]
			}
			in = in[len(seg):]
			if !f.drop {
				f.out = append(f.out, seg...)
			}
			if f.literals {
				f.tail = keepLast(f.tail, seg, literalTail)
			}
			if i < 0 {
				continue
			}
			if n, ok := serverLiteral(f.tail); ok && f.literals {
				f.tail = f.tail[:0]
				if n > 0 {
					f.state, f.literal = stLiteral, n
				}
				continue
			}
			f.tail = f.tail[:0]
			f.state, f.drop = stStart, false
		case stLiteral:
			n := int(min(f.literal, int64(len(in))))
			if !f.drop {
				f.out = append(f.out, in[:n]...)
			}
			in = in[n:]
			f.literal -= int64(n)
			if f.literal == 0 {
				f.state = stLine
			}
		}
	}
}

// flush hands on a line held back when the stream ends.
func (f *lineFilter) flush() {
	if f.state == stStart || f.state == stStatus {
		f.out = append(f.out, f.line...)
		f.line = nil
	}
}

// finishStatus passes the held status line, rewritten if go-imap would
// reject it.
func (f *lineFilter) finishStatus(typEnd int) {
	line := f.line
	f.line = nil
	f.state = stStart
	body, tagged := lineBody(line), line[0] != '*'
	if tagged && isRawTag(line) {
		f.replies = append(f.replies, bytes.Clone(line))
		return
	}
	if statusAccepted(body[typEnd:], tagged) {
		f.out = append(f.out, line...)
		return
	}
	now := rewriteStatus(body, typEnd)
	f.out = append(f.out, now...)
	f.events = append(f.events, toleranceEvent{line: clip(line), now: clip(now)})
}

// takeLine moves bytes of in to *line up to and including the first line
// feed, or until *line holds limit bytes.
func takeLine(line *[]byte, in []byte, limit int) (rest []byte, complete bool) {
	room := max(limit-len(*line), 0)
	if i := bytes.IndexByte(in[:min(len(in), room)], '\n'); i >= 0 {
		*line = append(*line, in[:i+1]...)
		return in[i+1:], true
	}
	n := min(len(in), room)
	*line = append(*line, in[:n]...)
	return in[n:], false
}

func keepLast(tail, b []byte, n int) []byte {
	if len(b) >= n {
		return append(tail[:0], b[len(b)-n:]...)
	}
	tail = append(tail, b...)
	if len(tail) > n {
		tail = append(tail[:0], tail[len(tail)-n:]...)
	}
	return tail
}

func clip(b []byte) []byte {
	b = bytes.TrimRight(b, "\r\n")
	if len(b) > maxEventLine {
		b = b[:maxEventLine]
	}
	return bytes.Clone(b)
}

// lineBody is a line without its line feed (but with the CR before it:
// go-imap takes only one CR for the line end).
func lineBody(line []byte) []byte { return bytes.TrimSuffix(line, []byte("\n")) }

// serverLiteral reports a literal announced at the end of a line: "{N}"
// followed by what go-imap takes for CRLF (an optional space, an optional
// CR, LF). "{N+}" counts too, as the stream scanner has it.
func serverLiteral(tail []byte) (int64, bool) {
	t := bytes.TrimSuffix(tail, []byte("\n"))
	t = bytes.TrimSuffix(t, []byte("\r"))
	t = bytes.TrimSuffix(t, []byte(" "))
	if !bytes.HasSuffix(t, []byte("}")) {
		return 0, false
	}
	open := bytes.LastIndexByte(t, '{')
	if open < 0 {
		return 0, false
	}
	num := bytes.TrimSuffix(t[open+1:len(t)-1], []byte("+"))
	if len(num) == 0 || num[0] < '0' || num[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// knownUntagged are the untagged response types go-imap v2.0.0-beta.8's
// client parses (imapclient.Client.readResponseData).
var knownUntagged = map[string]bool{
	"ID": true, "CAPABILITY": true, "ENABLED": true, "NAMESPACE": true, "FLAGS": true, "EXISTS": true,
	"RECENT": true, "LIST": true, "STATUS": true, "FETCH": true, "EXPUNGE": true, "SEARCH": true,
	"ESEARCH": true, "SORT": true, "THREAD": true, "METADATA": true, "QUOTA": true, "QUOTAROOT": true,
	"MYRIGHTS": true, "ACL": true,
}

var untaggedStatus = map[string]bool{"OK": true, "NO": true, "BAD": true, "BYE": true, "PREAUTH": true}

// classify tells what go-imap makes of a line, or of its start when
// !complete (kindMore: that start is not enough to tell), and for a status
// response where its type word ends.
func classify(line []byte, complete bool) (kind lineKind, typEnd int) {
	body := line
	if complete {
		body = lineBody(line)
	}
	s := scanner{b: body, open: !complete}
	more := func() bool { return s.open && s.end() }
	if len(body) > 0 && body[0] == '+' {
		return kindText, 0
	}
	if s.accept('*') {
		if more() {
			return kindMore, 0
		}
		if !s.sp() {
			return kindDrop, 0
		}
		typ, whole := s.atom()
		if !whole {
			return kindMore, 0
		}
		if typ == "" {
			return kindDrop, 0
		}
		if typ[0] >= '0' && typ[0] <= '9' {
			if _, err := strconv.ParseUint(typ, 10, 32); err != nil {
				return kindData, 0 // a broken message number: never drop mailbox data
			}
			if more() {
				return kindMore, 0
			}
			if !s.sp() {
				return kindDrop, 0
			}
			if typ, whole = s.atom(); !whole {
				return kindMore, 0
			}
			if typ == "" {
				return kindDrop, 0
			}
		}
		switch t := strings.ToUpper(typ); {
		case untaggedStatus[t]:
			return kindStatus, s.pos
		case knownUntagged[t]:
			return kindData, 0
		}
		return kindDrop, 0
	}
	tag, whole := s.atom()
	if !whole {
		return kindMore, 0
	}
	if tag == "" {
		return kindDrop, 0 // no tag: go-imap can't read it
	}
	if more() {
		return kindMore, 0
	}
	if !s.sp() {
		return kindData, 0
	}
	typ, whole := s.atom()
	if !whole {
		return kindMore, 0
	}
	switch strings.ToUpper(typ) {
	case "OK", "NO", "BAD":
		return kindStatus, s.pos
	}
	return kindData, 0
}

// statusAccepted mirrors how go-imap reads what follows the type word of a
// status response (readResponseTagged / readResponseData): rest is that
// part of the line, without the line feed. Codes that go-imap parses
// further are checked like it does, except COPYUID and PERMANENTFLAGS,
// which only compliant servers send.
func statusAccepted(rest []byte, tagged bool) bool {
	s := scanner{b: rest}
	hasSP := s.sp()
	if hasSP && s.accept('[') {
		code, _ := s.atom()
		if code == "" {
			return false
		}
		switch {
		case code == "CAPABILITY":
			for s.sp() {
				for {
					p := s.pos
					if !s.sp() {
						break
					}
					if s.pos == p {
						return false // "(": go-imap would loop for ever
					}
				}
				if c, _ := s.atom(); c == "" {
					return false
				}
			}
		case code == "COPYUID", !tagged && code == "PERMANENTFLAGS":
			return true
		case tagged && code == "APPENDUID":
			if !s.sp() || !s.number(32) || !s.sp() || !s.number(32) {
				return false
			}
		case !tagged && (code == "UIDNEXT" || code == "UIDVALIDITY"):
			if !s.sp() || !s.number(32) {
				return false
			}
		case !tagged && code == "HIGHESTMODSEQ":
			if !s.sp() || !s.number(64) {
				return false
			}
		case !tagged && code == "NOMODSEQ":
		default:
			// go-imap skips to the next "]", past line ends if need be.
			if s.sp() {
				i := bytes.IndexByte(s.b[s.pos:], ']')
				if i < 0 {
					return false
				}
				s.pos += i
			}
		}
		if !s.accept(']') {
			return false
		}
		hasSP = s.sp()
	}
	if hasSP {
		for !s.end() && s.b[s.pos] != '\r' {
			s.pos++
		}
	}
	s.accept(' ')
	s.accept('\r')
	return s.end()
}

// rewriteStatus turns a rejected status line into "<tag> <type> <text>":
// the response code's content becomes the start of the text.
func rewriteStatus(body []byte, typEnd int) []byte {
	rest := bytes.TrimLeft(bytes.TrimSuffix(body[typEnd:], []byte("\r")), " ")
	parts := [][]byte{rest}
	if len(rest) > 0 && rest[0] == '[' {
		if end := closingBracket(rest); end >= 0 {
			parts = [][]byte{rest[1:end], rest[end+1:]}
		} else {
			parts = [][]byte{rest[1:]}
		}
	}
	var text []byte
	for _, p := range parts {
		if p = bytes.Trim(p, " "); len(p) > 0 {
			if len(text) > 0 {
				text = append(text, ' ')
			}
			text = append(text, p...)
		}
	}
	text = bytes.ReplaceAll(text, []byte("\r"), []byte(" "))
	text = bytes.TrimLeft(text, "[ ") // a "[" there would start a code again
	out := append(bytes.Clone(body[:typEnd]), ' ')
	if len(text) == 0 {
		out = out[:len(out)-1]
	}
	out = append(out, text...)
	return append(out, '\r', '\n')
}

// closingBracket finds the "]" that ends a response code starting at b[0],
// skipping quoted strings; -1 if there is none.
func closingBracket(b []byte) int {
	quoted := false
	for i := 1; i < len(b); i++ {
		switch {
		case quoted && b[i] == '\\':
			i++
		case b[i] == '"':
			quoted = !quoted
		case !quoted && b[i] == ']':
			return i
		}
	}
	return bytes.IndexByte(b, ']') // unbalanced quotes: the first "]" then
}

// scanner reads a line like go-imap's imapwire.Decoder. The end of b stands
// for the line end, unless open: then more of the line is still to come.
type scanner struct {
	b    []byte
	pos  int
	open bool
}

func (s *scanner) end() bool { return s.pos >= len(s.b) }

func (s *scanner) accept(c byte) bool {
	if !s.end() && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// sp is imapwire.Decoder.SP: a space not followed by the line end
// (consumed either way), or a "(" (not consumed).
func (s *scanner) sp() bool {
	if s.accept(' ') {
		if s.end() {
			return s.open
		}
		return s.b[s.pos] != '\r'
	}
	return !s.end() && s.b[s.pos] == '('
}

// atom reads go-imap's atom characters; whole is false when it runs into
// the end of an open line.
func (s *scanner) atom() (atom string, whole bool) {
	start := s.pos
	for !s.end() && isAtomChar(s.b[s.pos]) {
		s.pos++
	}
	return string(s.b[start:s.pos]), !(s.open && s.end())
}

func (s *scanner) number(bits int) bool {
	start := s.pos
	for !s.end() && s.b[s.pos] >= '0' && s.b[s.pos] <= '9' {
		s.pos++
	}
	_, err := strconv.ParseUint(string(s.b[start:s.pos]), 10, bits)
	return s.pos > start && err == nil
}

// isAtomChar is imapwire.IsAtomChar.
func isAtomChar(c byte) bool {
	switch c {
	case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
		return false
	}
	return !unicode.IsControl(rune(c))
}
