// Package netem is a TCP forwarder on loopback for tests and benchmarks: it
// counts the bytes each way, can add latency like a WAN link, and can cut
// every connection at once or after a number of bytes, to test how
// mailferry copes with slow and broken networks.
package netem

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Forwarder relays connections from its own loopback port to a target.
type Forwarder struct {
	ln     net.Listener
	target string
	// Delay is added to each direction (a 24 ms round trip is Delay 12 ms).
	delay time.Duration

	// Up counts bytes client→server, Down server→client.
	Up, Down atomic.Int64
	// Accepted counts the connections relayed so far.
	Accepted atomic.Int64
	// CutAfterDown, if > 0, drops every connection once that many bytes
	// went server→client in total (a link that dies mid-transfer), then
	// resets itself to 0.
	CutAfterDown atomic.Int64
	// UpTap, if set before the first connection, sees every piece of what
	// clients send, as it passes, with the connection's number (1 for the
	// first one accepted).
	UpTap func(conn int64, b []byte)

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// New starts a forwarder to target ("host:port") with the given one-way
// delay. Close stops it.
func New(target string, delay time.Duration) (*Forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &Forwarder{ln: ln, target: target, delay: delay, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// Addr is the forwarder's own address.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

func (f *Forwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		if !f.track(c, s) {
			return
		}
		n := f.Accepted.Add(1)
		f.wg.Add(2)
		go f.pipe(s, c, &f.Up, n)
		go f.pipe(c, s, &f.Down, n)
	}
}

func (f *Forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		f.conns[c] = true
	}
	return true
}

// pipe copies src to dst, holding each chunk back by the delay without
// limiting throughput (chunks are in flight together, like on a long link).
func (f *Forwarder) pipe(dst, src net.Conn, count *atomic.Int64, conn int64) {
	defer f.wg.Done()
	defer dst.Close()
	defer src.Close()
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			if d := time.Until(c.at); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(c.b); err != nil {
				src.Close()
				for range q {
				}
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			total := count.Add(int64(n))
			if count == &f.Up && f.UpTap != nil {
				f.UpTap(conn, buf[:n])
			}
			q <- chunk{append([]byte(nil), buf[:n]...), time.Now().Add(f.delay)}
			if cut := f.CutAfterDown.Load(); cut > 0 && count == &f.Down && total >= cut && f.CutAfterDown.CompareAndSwap(cut, 0) {
				f.CutAll()
			}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
}

// CutAll resets every open connection, as a dying link or a crashing
// server would.
func (f *Forwarder) CutAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
		delete(f.conns, c)
	}
}

// Close stops accepting, cuts all connections and waits for the relays.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	err := f.ln.Close()
	f.CutAll()
	f.wg.Wait()
	return err
}
