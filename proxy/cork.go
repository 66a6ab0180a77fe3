package proxy

import (
	"net"
	"sync"
	"time"
)

// A FETCH of many messages makes imapserver write each message in several
// small pieces and flush at the end of each (go-imap's encoder flushes at
// every line end): three or four write calls per message, which on a
// whole-mailbox FETCH cost more CPU than the bytes themselves. While a
// FETCH runs, the client's connection is corked: small writes gather in a
// buffer that goes out when it is full, when the FETCH ends, or corkDelay
// after its first byte, so a slow upstream never holds data back for long.
const (
	corkSize  = 128 << 10
	corkDelay = 2 * time.Millisecond
	// corkWriteTimeout bounds a delayed write made when imapserver has no
	// write deadline set (between two responses).
	corkWriteTimeout = 5 * time.Minute
)

var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, corkSize); return &b }}

// corkListener hands out corkConns.
type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c, delay: corkDelay}, nil
}

// corkConn is a client connection that can hold back small writes. Writes
// pass straight through while it is not corked.
type corkConn struct {
	net.Conn
	delay    time.Duration // corkDelay
	mu       sync.Mutex
	corked   bool
	buf      *[]byte // while corked
	timer    *time.Timer
	armed    bool      // the timer will flush buf
	deadline time.Time // the write deadline imapserver asked for
	err      error     // a delayed write failed: the next Write says so
}

// corkOf finds the corkConn under c (under TLS, for instance), or nil.
func corkOf(c net.Conn) *corkConn {
	for {
		switch x := c.(type) {
		case *corkConn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.corked || len(p) >= corkSize/2 {
		// Big pieces (message bodies) go out as they are.
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	if len(*c.buf)+len(p) > corkSize {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	*c.buf = append(*c.buf, p...)
	if !c.armed {
		c.armed = true
		if c.timer == nil {
			c.timer = time.AfterFunc(c.delay, c.timedFlush)
		} else {
			c.timer.Reset(c.delay)
		}
	}
	return len(p), nil
}

func (c *corkConn) flushLocked() error {
	if c.buf == nil || len(*c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	return err
}

func (c *corkConn) timedFlush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed {
		return // flushed meanwhile
	}
	c.armed = false
	if c.deadline.IsZero() {
		c.Conn.SetWriteDeadline(time.Now().Add(corkWriteTimeout))
		defer c.Conn.SetWriteDeadline(time.Time{})
	}
	if err := c.flushLocked(); err != nil && c.err == nil {
		c.err = err
	}
}

// cork holds small writes back until uncork.
func (c *corkConn) cork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		return
	}
	c.corked = true
	c.buf = corkBufs.Get().(*[]byte)
}

// uncork sends what was held back and lets writes through again. A failed
// write shows at the next Write.
func (c *corkConn) uncork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return
	}
	if err := c.flushLocked(); err != nil && c.err == nil {
		c.err = err
	}
	c.corked, c.armed = false, false
	if c.timer != nil {
		c.timer.Stop()
	}
	*c.buf = (*c.buf)[:0]
	corkBufs.Put(c.buf)
	c.buf = nil
}

func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetWriteDeadline(t)
}

func (c *corkConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

// Close sends what is held back (a BYE written during a FETCH, say) unless
// a write is stuck, and closes the connection.
func (c *corkConn) Close() error {
	if c.mu.TryLock() {
		if c.buf != nil && len(*c.buf) > 0 && c.err == nil {
			c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.flushLocked()
		}
		c.armed = false
		c.mu.Unlock()
	}
	return c.Conn.Close()
}
