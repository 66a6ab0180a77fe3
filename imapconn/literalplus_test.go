package imapconn

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailferry/mailferry/internal/dovecottest"
	"github.com/mailferry/mailferry/internal/netem"
)

func TestLiteralAnnounce(t *testing.T) {
	tests := []struct {
		line     string
		n        int64
		sync, ok bool
	}{
		{"A1 APPEND INBOX {310}\r\n", 310, true, true},
		{"A1 APPEND INBOX {310+}\r\n", 310, false, true},
		{"* 1 FETCH (BODY[] {0}\r\n", 0, true, true},
		{"* 1 FETCH (BODY[] ~{12}\r\n", 12, true, true},
		{"A1 OK done\r\n", 0, false, false},
		{"A1 LOGIN {x}\r\n", 0, false, false},
		{"A1 LOGIN {}\r\n", 0, false, false},
		{"A1 LOGIN {-1}\r\n", 0, false, false},
		{"A1 LOGIN {+}\r\n", 0, false, false},
	}
	for _, tt := range tests {
		n, sync, ok := literalAnnounce([]byte(tt.line))
		if n != tt.n || sync != tt.sync || ok != tt.ok {
			t.Errorf("%q: got %d %v %v", tt.line, n, sync, ok)
		}
	}
}

// serverStream builds a response stream and the offsets of its response
// boundaries.
func serverStream(r *rand.Rand) ([]byte, map[int]bool) {
	var b bytes.Buffer
	bounds := map[int]bool{0: true}
	for range r.IntN(20) {
		switch r.IntN(3) {
		case 0:
			fmt.Fprintf(&b, "* %d EXISTS\r\n", r.IntN(100))
		case 1:
			body := bytes.Repeat([]byte("x\r\n{5}\r\n"), r.IntN(50))
			fmt.Fprintf(&b, "* 1 FETCH (UID 3 BODY[] {%d}\r\n", len(body))
			b.Write(body)
			b.WriteString(" FLAGS (\\Seen))\r\n")
		default:
			b.WriteString("A7 OK [APPENDUID 1 2] done\r\n")
		}
		bounds[b.Len()] = true
	}
	return b.Bytes(), bounds
}

// FuzzStreamScanner: however a stream is cut into reads, the scanner finds
// response boundaries exactly where they are.
func FuzzStreamScanner(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Fuzz(func(t *testing.T, seed, cuts uint64) {
		r := rand.New(rand.NewPCG(seed, cuts))
		stream, bounds := serverStream(r)
		var s streamScanner
		s.lineStart = true
		pos := 0
		for pos < len(stream) {
			end := min(len(stream), pos+1+r.IntN(40))
			n, _ := s.next(stream[pos:end])
			if n <= 0 {
				t.Fatalf("no progress at %d", pos)
			}
			pos += n
			if s.atBoundary() != bounds[pos] {
				t.Fatalf("at %d: boundary %v, want %v\n%q", pos, s.atBoundary(), bounds[pos], stream)
			}
		}
	})
}

// TestLiteralPlusPipelines appends through a link with 20 ms round trips:
// with LITERAL+ the APPENDs don't wait a round trip each, and every message
// arrives intact.
func TestLiteralPlusPipelines(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"u": "p"}})
	fwd, err := netem.New(srv.Addr(), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	ep, _ := ParseURL("imap+plain://"+fwd.Addr(), false)
	c, err := Dial(context.Background(), ep, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := Login(c, "u", "p"); err != nil {
		t.Fatal(err)
	}
	const n = 60
	start := time.Now()
	var cmds []interface {
		Wait() (*imap.AppendData, error)
	}
	var want [][]byte
	for i := range n {
		body := bytes.Repeat([]byte(fmt.Sprintf("line %d of a message over 4 KiB\r\n", i)), 200)
		body = append([]byte(fmt.Sprintf("Subject: %d\r\n\r\n", i)), body...)
		want = append(want, body)
		cmd := c.Append("INBOX", int64(len(body)), nil)
		cmd.Write(body)
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if d, err := cmd.Wait(); err != nil || d.UID != imap.UID(i+1) {
			t.Fatalf("append %d: %v %+v", i, err, d)
		}
	}
	// One round trip per APPEND would be n × 20 ms = 1.2 s; pipelined it's a few.
	if d := time.Since(start); d > 600*time.Millisecond {
		t.Errorf("%d APPENDs over a 20 ms link took %v: not pipelined", n, d)
	}

	// A message the server refuses doesn't break the connection, and what
	// arrived reads back byte for byte.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(1, 30, n), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(msgs) != 3 {
		t.Fatalf("fetch: %v, %d messages", err, len(msgs))
	}
	for _, m := range msgs {
		if got := m.FindBodySection(section); !bytes.Equal(got, want[m.UID-1]) {
			t.Errorf("uid %d differs", m.UID)
		}
	}
}

func TestLiteralPlusRefusal(t *testing.T) {
	srv := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"u": "p"}, MaxMessageSize: 10_000})
	ep, _ := ParseURL(srv.URL(), false)
	c, err := Dial(context.Background(), ep, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := Login(c, "u", "p"); err != nil {
		t.Fatal(err)
	}
	for i, size := range []int{5000, 20_000, 6000} {
		body := append([]byte("Subject: x\r\n\r\n"), bytes.Repeat([]byte("y"), size)...)
		cmd := c.Append("INBOX", int64(len(body)), nil)
		io.Copy(cmd, bytes.NewReader(body))
		cmd.Close()
		_, err := cmd.Wait()
		if (i == 1) != (err != nil) {
			t.Fatalf("append of %d bytes: %v", size, err)
		}
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("connection broken after a refusal: %v", err)
	}
}

// TestLendWritesWaitsForCommand: our own command waits until go-imap has
// written its current command whole, and gives up when the connection
// closes meanwhile.
func TestLendWritesWaitsForCommand(t *testing.T) {
	for _, closeIt := range []bool{false, true} {
		client, server := net.Pipe()
		go io.Copy(io.Discard, server)
		lp := newLiteralPlusConn(client)
		if _, err := lp.Write([]byte("T1 STORE 1:5 +FLAGS.SILENT (")); err != nil {
			t.Fatal(err)
		}
		lent := make(chan error, 1)
		go func() {
			release, err := lp.lendWrites()
			if err == nil {
				release()
			}
			lent <- err
		}()
		select {
		case err := <-lent:
			t.Fatalf("lent in the middle of a command: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if closeIt {
			lp.Close()
		} else if _, err := lp.Write([]byte("\\Seen)\r\n")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-lent:
			if (err != nil) != closeIt {
				t.Errorf("closed %v: %v", closeIt, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("closed %v: still waiting", closeIt)
		}
		lp.Close()
		server.Close()
	}
}
