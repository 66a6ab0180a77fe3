package imapconn

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	gosync "sync"
	"sync/atomic"
	"time"
)

// literalPlusConn sits between go-imap's client and the socket to pipeline
// APPENDs. go-imap sends every literal over 4 KiB as a synchronizing
// literal and waits for the server's "+" before the data: one round trip
// per message, which over a WAN link to Office 365 bounds a connection to
// a few dozen messages a second. When the server offers LITERAL+ (RFC 7888)
// this conn rewrites "{N}" to "{N+}" on the way out and hands the client the
// "+" it waits for itself, at the next response boundary of the server's
// stream, so the data follows at once.
//
// To find response boundaries it follows the server's stream (lines and the
// literals inside them); to find literal announcements, the client's. Reads
// go straight to the socket into the caller's buffer; when a "+" is owed
// while the client is blocked reading, a read deadline in the past wakes it.
type literalPlusConn struct {
	net.Conn
	enabled atomic.Bool

	wmu   gosync.Mutex
	wdone *gosync.Cond  // on wmu: a client command was written whole
	wscan streamScanner // the client's command stream

	mu          gosync.Mutex
	rscan       streamScanner // the server's response stream
	inject      int           // "+" lines owed to the client
	injecting   []byte        // the rest of a "+" line being delivered
	pend        []byte        // server bytes read past a boundary, not yet delivered
	pendBuf     []byte        // pend's storage, reused
	rerr        error         // an error that came with the last bytes read
	reading     bool          // a Read waits in the socket
	interrupted bool          // a past deadline was set to wake it
	deadline    time.Time     // the client's read deadline

	closeMu  gosync.Mutex
	closed   bool
	closeFns []func()
}

var continuation = []byte("+ \r\n")

func newLiteralPlusConn(c net.Conn) *literalPlusConn {
	lc := &literalPlusConn{Conn: c}
	lc.wdone = gosync.NewCond(&lc.wmu)
	lc.rscan.lineStart = true
	lc.wscan.lineStart = true
	return lc
}

// Write passes client bytes on, turning synchronizing literals into
// non-synchronizing ones once enabled.
func (c *literalPlusConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	enabled := c.enabled.Load()
	out := p
	converted := 0
	for rest := p; len(rest) > 0; {
		n, sync := c.wscan.next(rest)
		chunk := rest[:n]
		rest = rest[n:]
		// Only a "}\r\n" in this very write can still be changed.
		if sync && enabled && bytes.HasSuffix(chunk, []byte("}\r\n")) {
			if converted == 0 {
				out = append(make([]byte, 0, len(p)+8), p[:len(p)-len(rest)-n]...)
			}
			out = append(append(out, chunk[:n-3]...), "+}\r\n"...)
			converted++
		} else if converted > 0 {
			out = append(out, chunk...)
		}
	}
	if converted > 0 {
		c.mu.Lock()
		c.inject += converted
		if c.reading && !c.interrupted {
			c.interrupted = true
			c.Conn.SetReadDeadline(time.Unix(1, 0))
		}
		c.mu.Unlock()
	}
	_, err := c.Conn.Write(out)
	if c.wscan.atBoundary() || err != nil {
		c.wdone.Broadcast()
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// lendWrites hands the write side to a command of our own (raw.go) until
// release, once go-imap is between two commands (another goroutine may be
// writing one: with LITERAL+ nothing holds it up); go-imap's writes wait
// meanwhile.
func (c *literalPlusConn) lendWrites() (release func(), err error) {
	c.wmu.Lock()
	for !c.wscan.atBoundary() {
		if c.isClosed() {
			c.wmu.Unlock()
			return nil, net.ErrClosed
		}
		c.wdone.Wait()
	}
	return c.wmu.Unlock, nil
}

// Close closes the connection; functions given to onClose run first.
func (c *literalPlusConn) Close() error {
	c.closeMu.Lock()
	fns := c.closeFns
	c.closed, c.closeFns = true, nil
	c.closeMu.Unlock()
	for _, fn := range fns {
		fn()
	}
	// A lendWrites waiting for go-imap gives up. Not under wmu here: the
	// command that holds it may be what closes the connection.
	go func() {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		c.wdone.Broadcast()
	}()
	return c.Conn.Close()
}

func (c *literalPlusConn) onClose(fn func()) {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	c.closeFns = append(c.closeFns, fn)
}

func (c *literalPlusConn) isClosed() bool {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	return c.closed
}

// Read delivers server bytes, with owed "+" lines slipped in between
// responses.
func (c *literalPlusConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if len(c.injecting) == 0 && c.inject > 0 && c.rscan.atBoundary() {
			c.inject--
			c.injecting = continuation
		}
		if len(c.injecting) > 0 {
			n := copy(p, c.injecting)
			c.injecting = c.injecting[n:]
			return n, nil
		}
		if len(c.pend) > 0 {
			n := c.scanUpTo(c.pend[:min(len(c.pend), len(p))])
			copy(p, c.pend[:n])
			c.pend = c.pend[n:]
			return n, nil
		}
		if c.rerr != nil {
			err := c.rerr
			c.rerr = nil
			return 0, err
		}
		c.reading = true
		c.mu.Unlock()
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		c.reading = false
		if n > 0 {
			k := c.scanUpTo(p[:n])
			c.pend = append(c.pendBuf[:0], p[k:n]...)
			c.pendBuf = c.pend[:0]
			c.rerr = err
			if k > 0 {
				return k, nil
			}
			continue // a "+" goes first
		}
		var ne net.Error
		if c.interrupted && errors.As(err, &ne) && ne.Timeout() {
			c.interrupted = false
			c.Conn.SetReadDeadline(c.deadline)
			continue
		}
		return 0, err
	}
}

// scanUpTo advances the server stream over b and returns how much of b
// may go to the client now: all of it, unless a "+" is owed and a response
// boundary comes first.
func (c *literalPlusConn) scanUpTo(b []byte) int {
	n := 0
	for n < len(b) {
		if c.inject > 0 && c.rscan.atBoundary() {
			break
		}
		k, _ := c.rscan.next(b[n:])
		n += k
	}
	return n
}

// SetReadDeadline records the client's deadline; while a wake-up deadline
// is in force, the client's is restored after it.
func (c *literalPlusConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if c.interrupted {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *literalPlusConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// streamScanner follows an IMAP stream (either direction): lines that may
// carry literals "{N}", "{N+}" or "~{N}" at their ends, followed by N bytes
// that are not parsed.
type streamScanner struct {
	literal   int64  // literal bytes still to skip
	tail      []byte // end of the current line, enough to hold "{N+}\r"
	lineStart bool   // between two lines: a response boundary
}

func (s *streamScanner) atBoundary() bool { return s.lineStart && s.literal == 0 }

const maxTail = 24

// next advances over the first piece of b: literal data, or text up to and
// including the next line feed, or all of b. It reports the piece's length
// and whether the piece ends a line announcing a synchronizing literal.
func (s *streamScanner) next(b []byte) (n int, syncLiteral bool) {
	if s.literal > 0 {
		n = int(min(s.literal, int64(len(b))))
		s.literal -= int64(n)
		return n, false
	}
	s.lineStart = false
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		s.keepTail(b)
		return len(b), false
	}
	s.keepTail(b[:i+1])
	size, sync, ok := literalAnnounce(s.tail)
	s.tail = s.tail[:0]
	if ok {
		s.literal = size
	} else {
		s.lineStart = true
	}
	return i + 1, ok && sync
}

func (s *streamScanner) keepTail(b []byte) {
	s.tail = append(s.tail, b...)
	if len(s.tail) > maxTail {
		s.tail = append(s.tail[:0], s.tail[len(s.tail)-maxTail:]...)
	}
}

// literalAnnounce parses a line end "{N}\r\n" or "{N+}\r\n".
func literalAnnounce(line []byte) (n int64, sync bool, ok bool) {
	if !bytes.HasSuffix(line, []byte("}\r\n")) {
		return 0, false, false
	}
	line = line[:len(line)-3]
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	num := line[open+1:]
	sync = true
	if bytes.HasSuffix(num, []byte("+")) {
		num, sync = num[:len(num)-1], false
	}
	v, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || v < 0 || len(num) == 0 || num[0] == '+' || num[0] == '-' {
		return 0, false, false
	}
	return v, sync, true
}
