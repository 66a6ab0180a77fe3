package proxy

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// BenchmarkRoundTrip compares commands sent directly to Dovecot with the
// same commands through the proxy, on loopback:
//
//	go test -run '^$' -bench RoundTrip ./proxy/
func BenchmarkRoundTrip(b *testing.B) {
	e := newEnv(b)
	msg := newBigMessage(1 << 20)
	src := login(b, e.src.Addr(), alice, alicePass, nil)
	cmd := src.Append("INBOX", 1<<20, nil)
	if _, err := msg.WriteTo(cmd); err != nil {
		b.Fatal(err)
	}
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		b.Fatal(err)
	}
	for _, side := range []struct{ name, addr string }{{"direct", e.src.Addr()}, {"proxy", e.addr}} {
		c := login(b, side.addr, alice, alicePass, nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			b.Fatal(err)
		}
		b.Run("NOOP/"+side.name, func(b *testing.B) {
			for b.Loop() {
				if err := c.Noop().Wait(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("FETCH-FLAGS/"+side.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, UID: true}).Collect(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("FETCH-1MiB/"+side.name, func(b *testing.B) {
			b.SetBytes(1 << 20)
			for b.Loop() {
				fetchSum(b, c, imap.SeqSetNum(1), &imap.FetchItemBodySection{Peek: true})
			}
		})
	}
}

func (m *bigMessage) WriteTo(w interface{ Write([]byte) (int, error) }) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := m.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err != nil {
			return n, nil
		}
	}
}
