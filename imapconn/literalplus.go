package imapconn

import (
	"bytes"
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
// literals inside them); to find literal announcements, the client's. A
// reader goroutine pumps the socket so that an injected "+" can reach a
// client blocked in Read.
type literalPlusConn struct {
	net.Conn
	enabled atomic.Bool

	wmu   gosync.Mutex
	wscan streamScanner // the client's command stream

	mu       gosync.Mutex
	cond     *gosync.Cond
	buf      []byte // server bytes not yet delivered
	rerr     error
	pumping  bool
	inject   int           // "+" lines owed to the client
	rscan    streamScanner // the server's response stream
	closed   bool
	deadline time.Time
}

// pumpLimit bounds what the pump reads ahead of the client.
const pumpLimit = 256 << 10

var continuation = []byte("+ \r\n")

func newLiteralPlusConn(c net.Conn) *literalPlusConn {
	lc := &literalPlusConn{Conn: c}
	lc.cond = gosync.NewCond(&lc.mu)
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
		c.cond.Broadcast()
		c.mu.Unlock()
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Read delivers server bytes, with owed "+" lines slipped in between
// responses.
func (c *literalPlusConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.pumping {
		c.pumping = true
		go c.pump()
	}
	for {
		if c.inject > 0 && c.rscan.atBoundary() {
			c.inject--
			return copy(p, continuation), nil // bufio's buffer is far larger than 4 bytes
		}
		if len(c.buf) > 0 {
			limit := min(len(c.buf), len(p))
			n := 0
			for n < limit {
				k, _ := c.rscan.next(c.buf[n:limit])
				n += k
				if c.inject > 0 && c.rscan.atBoundary() {
					break
				}
			}
			copy(p, c.buf[:n])
			c.buf = c.buf[n:]
			c.cond.Broadcast() // room for the pump
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
			return 0, errTimeout{}
		}
		c.cond.Wait()
	}
}

func (c *literalPlusConn) pump() {
	b := make([]byte, 32<<10)
	for {
		n, err := c.Conn.Read(b)
		c.mu.Lock()
		c.buf = append(c.buf, b[:n]...)
		if err != nil {
			c.rerr = err
		}
		c.cond.Broadcast()
		for err == nil && len(c.buf) >= pumpLimit && !c.closed {
			c.cond.Wait()
		}
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// SetReadDeadline applies to the client's Read, not to the pump: the pump
// must keep reading while the client waits.
func (c *literalPlusConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.cond.Broadcast()
	c.mu.Unlock()
	if !t.IsZero() {
		// Wake a waiting Read when the deadline passes.
		time.AfterFunc(time.Until(t), func() {
			c.mu.Lock()
			c.cond.Broadcast()
			c.mu.Unlock()
		})
	}
	return nil
}

func (c *literalPlusConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *literalPlusConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

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
