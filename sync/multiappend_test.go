package sync

import (
	"bytes"
	"regexp"
	gosync "sync"
	"testing"

	"github.com/mailferry/mailferry/internal/dovecottest"
)

// TestMultiAppendCommands: a target that offers MULTIAPPEND gets each
// chunk's messages of a folder up to 100 to a command, with the same result
// as one APPEND each (--no-multiappend).
func TestMultiAppendCommands(t *testing.T) {
	appendCmd := regexp.MustCompile(`(?m)^\S+ APPEND `)
	for _, tt := range []struct {
		single bool
		want   int
	}{{false, 3}, {true, 160}} {
		e := newEnv(t, dovecottest.Options{}, dovecottest.Options{})
		var mu gosync.Mutex
		up := map[int64]*bytes.Buffer{} // by connection: pieces of two interleave
		e.tgtFwd.UpTap = func(conn int64, b []byte) {
			mu.Lock()
			defer mu.Unlock()
			if up[conn] == nil {
				up[conn] = &bytes.Buffer{}
			}
			up[conn].Write(b)
		}
		seedN(t, e, "INBOX", 150, 2000)
		seedN(t, e, "INBOX.Sent", 10, 2000)
		res := e.pass(t, func(o *Options) { o.NoMultiAppend = tt.single })
		if res.Copied != 160 {
			t.Fatalf("single %v: copied %d", tt.single, res.Copied)
		}
		mu.Lock()
		n := 0
		for _, b := range up {
			n += len(appendCmd.FindAllIndex(b.Bytes(), -1))
		}
		mu.Unlock()
		if n != tt.want {
			t.Errorf("single %v: %d APPEND commands, want %d", tt.single, n, tt.want)
		}
		e.expectSame(t, map[string]string{"INBOX": "INBOX", "INBOX.Sent": "Sent Items"})
		if res := e.pass(t); res.Copied != 0 {
			t.Errorf("single %v: second pass copied %d", tt.single, res.Copied)
		}
	}
}
