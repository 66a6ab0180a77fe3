package proxy

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

const bigSize = 30 << 20

// bigMessage generates a message of exactly size bytes, line by line,
// without holding it: a header, then 76-character base64-looking lines.
type bigMessage struct {
	size, off int64
	line      []byte
}

func newBigMessage(size int64) *bigMessage {
	m := &bigMessage{size: size}
	m.line = make([]byte, 78)
	for i := range 76 {
		m.line[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i%64]
	}
	m.line[76], m.line[77] = '\r', '\n'
	return m
}

const bigHeader = "From: big@example.com\r\nTo: alice@example.com\r\nSubject: thirty megabytes\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"

func (m *bigMessage) Read(p []byte) (int, error) {
	if m.off >= m.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && m.off < m.size {
		var c byte
		if m.off < int64(len(bigHeader)) {
			c = bigHeader[m.off]
		} else {
			c = m.line[(m.off-int64(len(bigHeader)))%int64(len(m.line))]
		}
		p[n] = c
		n++
		m.off++
	}
	return n, nil
}

// memPeak samples the heap while a transfer runs.
type memPeak struct {
	stop               chan struct{}
	wg                 sync.WaitGroup
	mu                 sync.Mutex
	baseHeap, peakHeap uint64
	baseAlloc          uint64
}

func startMemPeak() *memPeak {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p := &memPeak{stop: make(chan struct{}), baseHeap: ms.HeapInuse, peakHeap: ms.HeapInuse, baseAlloc: ms.TotalAlloc}
	p.wg.Go(func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				p.mu.Lock()
				p.peakHeap = max(p.peakHeap, ms.HeapInuse)
				p.mu.Unlock()
			}
		}
	})
	return p
}

func (p *memPeak) end() (peakGrowth, allocated uint64) {
	close(p.stop)
	p.wg.Wait()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return p.peakHeap - p.baseHeap, ms.TotalAlloc - p.baseAlloc
}

// TestBigMessage sends a 30 MB message through the proxy with APPEND and
// back with FETCH. Everything but Dovecot runs in this process (the test's
// client streams too), so the process's heap bounds the proxy's. With the
// garbage collector made eager (GOGC 10) the heap in use stays close to the
// live data, and it is sampled every 2 ms: a buffer of the message's size
// would show as tens of MiB for far longer than that. What each transfer
// allocated in all is logged too (garbage included). Not parallel: other
// tests would allocate meanwhile.
func TestBigMessage(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	e := newEnv(t)
	c := login(t, e.addr, alice, alicePass, nil)

	mem := startMemPeak()
	sum := sha256.New()
	cmd := c.Append("INBOX", bigSize, &imap.AppendOptions{Time: seedDate})
	if _, err := io.CopyBuffer(io.MultiWriter(cmd, sum), newBigMessage(bigSize), make([]byte, 32<<10)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	ad, err := cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	peak, alloc := mem.end()
	t.Logf("APPEND of %d MiB: heap peak +%.1f MiB, allocated %.1f MiB", bigSize>>20, mib(peak), mib(alloc))
	checkMem(t, "APPEND", peak, alloc)
	want := fmt.Sprintf("%x", sum.Sum(nil))

	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	mem = startMemPeak()
	got, n := fetchSum(t, c, imap.UIDSetNum(ad.UID), &imap.FetchItemBodySection{Peek: true})
	peak, alloc = mem.end()
	t.Logf("FETCH of %d MiB: heap peak +%.1f MiB, allocated %.1f MiB", bigSize>>20, mib(peak), mib(alloc))
	checkMem(t, "FETCH", peak, alloc)
	if n != bigSize || got != want {
		t.Fatalf("FETCH returned %d bytes, sha256 %s; appended %d, %s", n, got, bigSize, want)
	}

	// A partial FETCH from the middle.
	part := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 20 << 20, Size: 1 << 20}}
	if _, n := fetchSum(t, c, imap.UIDSetNum(ad.UID), part); n != 1<<20 {
		t.Fatalf("partial FETCH: %d bytes", n)
	}
}

func fetchSum(t testing.TB, c *imapclient.Client, set imap.NumSet, sec *imap.FetchItemBodySection) (string, int64) {
	t.Helper()
	cmd := c.Fetch(set, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}})
	defer cmd.Close()
	var (
		sum hash.Hash = sha256.New()
		n   int64
	)
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
				m, err := io.CopyBuffer(sum, b.Literal, make([]byte, 32<<10))
				if err != nil {
					t.Fatal(err)
				}
				n += m
			}
		}
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sum.Sum(nil)), n
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

func checkMem(t *testing.T, what string, peak, alloc uint64) {
	t.Helper()
	if peak > 8<<20 {
		t.Errorf("%s: heap grew by %.1f MiB", what, mib(peak))
	}
	_ = alloc // logged only: garbage says nothing about what was held
}
