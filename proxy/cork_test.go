package proxy

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// corkPair is a corkConn on loopback TCP and the peer that reads it.
func corkPair(t *testing.T, delay time.Duration) (*corkConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cc := &corkConn{Conn: c, delay: delay}
	t.Cleanup(func() { cc.Close(); peer.Close() })
	return cc, peer
}

// readFor reads what arrives at peer within d, up to want bytes.
func readFor(t *testing.T, peer net.Conn, want int, d time.Duration) string {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(d))
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for got.Len() < want {
		n, err := peer.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return got.String()
}

func TestCorkHoldsSmallWritesUntilUncork(t *testing.T) {
	cc, peer := corkPair(t, time.Hour)
	cc.cork()
	for _, s := range []string{"* 1 FETCH (BODY[] {3}\r\n", "abc", ")\r\n"} {
		if _, err := cc.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFor(t, peer, 1, 100*time.Millisecond); got != "" {
		t.Fatalf("corked writes arrived early: %q", got)
	}
	cc.uncork()
	cc.Write([]byte("A1 OK done\r\n"))
	want := "* 1 FETCH (BODY[] {3}\r\nabc)\r\nA1 OK done\r\n"
	if got := readFor(t, peer, len(want), time.Second); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCorkBigWritesPassInOrder(t *testing.T) {
	cc, peer := corkPair(t, time.Hour)
	cc.cork()
	defer cc.uncork()
	big := strings.Repeat("x", corkSize/2)
	cc.Write([]byte("head "))
	cc.Write([]byte(big))
	if got := readFor(t, peer, len(big)+5, time.Second); got != "head "+big {
		t.Fatalf("got %d bytes (%.10q…), want the held head, then the big write", len(got), got)
	}
	// Filling the buffer sends it.
	small := strings.Repeat("y", corkSize/4)
	for range 5 {
		cc.Write([]byte(small))
	}
	if got := readFor(t, peer, len(small)*5, 200*time.Millisecond); got != strings.Repeat(small, 4) {
		t.Fatalf("got %d bytes, want the first full buffer (%d)", len(got), 4*len(small))
	}
}

func TestCorkFlushesAfterDelay(t *testing.T) {
	cc, peer := corkPair(t, 5*time.Millisecond)
	cc.cork()
	defer cc.uncork()
	cc.Write([]byte("* 1 FETCH (FLAGS ())\r\n"))
	if got := readFor(t, peer, 22, time.Second); got != "* 1 FETCH (FLAGS ())\r\n" {
		t.Fatalf("got %q after the cork delay", got)
	}
	cc.Write([]byte("* 2 FETCH (FLAGS ())\r\n")) // the timer is armed again
	if got := readFor(t, peer, 22, time.Second); got != "* 2 FETCH (FLAGS ())\r\n" {
		t.Fatalf("got %q after the second delay", got)
	}
}

// A BYE written during a FETCH (a cutover) reaches the client before the
// connection closes.
func TestCorkCloseSendsHeldBytes(t *testing.T) {
	cc, peer := corkPair(t, time.Hour)
	cc.cork()
	cc.Write([]byte("* BYE moving to the new server\r\n"))
	cc.Close()
	peer.SetReadDeadline(time.Now().Add(time.Second))
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "* BYE moving to the new server\r\n" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestCorkOfFindsItUnderWrappers(t *testing.T) {
	cc, _ := corkPair(t, time.Hour)
	if corkOf(cc) != cc || corkOf(wrapped{cc}) != cc || corkOf(cc.Conn) != nil {
		t.Fatal("corkOf did not find the corkConn")
	}
}

type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }
