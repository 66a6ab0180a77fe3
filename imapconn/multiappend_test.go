package imapconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/internal/dovecottest"
)

func TestIsRawTag(t *testing.T) {
	for line, want := range map[string]bool{
		"MF1 OK done\r\n": true, "MF42 NO [TOOBIG] x\r\n": true,
		"T1 OK done\r\n": false, "MF OK\r\n": false, "MFX1 OK\r\n": false, "MF1\r\n": false, "MF12": false,
	} {
		if got := isRawTag([]byte(line)); got != want {
			t.Errorf("%q: %v", line, got)
		}
	}
}

// TestRawRepliesTakenOut: the tolerance layer hands our tagged replies to
// their waiters and everything else to go-imap, in any cut of the stream.
func TestRawRepliesTakenOut(t *testing.T) {
	stream := "* 3 EXISTS\r\nMF1 OK [APPENDUID 7 1:3] done\r\nT4 OK done\r\n* 1 FETCH (BODY[] {21}\r\nMF2 NO inside a body)\r\nMF2 NO [TOOBIG] too big\r\n"
	want := "* 3 EXISTS\r\nT4 OK done\r\n* 1 FETCH (BODY[] {21}\r\nMF2 NO inside a body)\r\n"
	for cut := 1; cut <= len(stream); cut++ {
		var f lineFilter
		for b := []byte(stream); len(b) > 0; b = b[min(cut, len(b)):] {
			f.feed(b[:min(cut, len(b))])
		}
		if string(f.out) != want {
			t.Fatalf("cut %d: go-imap got %q", cut, f.out)
		}
		if len(f.replies) != 2 || string(f.replies[0]) != "MF1 OK [APPENDUID 7 1:3] done\r\n" || string(f.replies[1]) != "MF2 NO [TOOBIG] too big\r\n" {
			t.Fatalf("cut %d: replies %q", cut, f.replies)
		}
	}
}

func TestParseTaggedReply(t *testing.T) {
	tests := []struct {
		line      string
		typ       imap.StatusResponseType
		code      imap.ResponseCode
		args, txt string
		bad       bool
	}{
		{"MF1 OK [APPENDUID 38505 3955:3957] APPEND completed\r\n", "OK", "APPENDUID", "38505 3955:3957", "APPEND completed", false},
		{"MF1 ok done", "OK", "", "", "done", false},
		{"MF2 NO [LIMIT] Mail size is larger than the maximum\r\n", "NO", "LIMIT", "", "Mail size is larger than the maximum", false},
		{"MF3 BAD Error in IMAP command APPEND\r\n", "BAD", "", "", "Error in IMAP command APPEND", false},
		{`MF4 NO [Error="a]b" X=1] throttled`, "NO", `ERROR="A]B"`, "X=1", "throttled", false},
		{"MF5 FROB x", "", "", "", "", true},
		{"MF6", "", "", "", "", true},
		{"MF7 NO [unclosed", "", "", "", "", true},
	}
	for _, tt := range tests {
		typ, code, args, txt, err := parseTaggedReply([]byte(tt.line))
		var ie *imap.Error
		switch {
		case tt.bad:
			if err == nil || errors.As(err, &ie) {
				t.Errorf("%q: want a malformed-reply error, got %v", tt.line, err)
			}
		case typ != tt.typ || code != tt.code || args != tt.args || txt != tt.txt:
			t.Errorf("%q: got %q %q %q %q", tt.line, typ, code, args, txt)
		case (typ != "OK") != errors.As(err, &ie):
			t.Errorf("%q: error %v", tt.line, err)
		case ie != nil && (ie.Code != tt.code || ie.Text != tt.txt):
			t.Errorf("%q: error %+v", tt.line, ie)
		}
	}
}

func TestParseAppendUID(t *testing.T) {
	tests := []struct {
		args string
		max  int
		uidv uint32
		uids []imap.UID
	}{
		{"38505 3955", 1, 38505, []imap.UID{3955}},
		{"1 7:9", 3, 1, []imap.UID{7, 8, 9}},
		{"1 9:7", 3, 1, []imap.UID{9, 8, 7}},
		{"1 4,7:8,2", 4, 1, []imap.UID{4, 7, 8, 2}},
		{"1 1:4294967295", 3, 0, nil}, // more UIDs than messages
		{"1 7:9", 2, 0, nil},
		{"0 1", 1, 0, nil},
		{"1", 1, 0, nil},
		{"1 0", 1, 0, nil},
		{"1 a:b", 1, 0, nil},
		{"1 5,", 2, 0, nil},
	}
	for _, tt := range tests {
		uidv, uids, err := parseAppendUID(tt.args, tt.max)
		if uidv != tt.uidv || !slices.Equal(uids, tt.uids) || (err == nil) != (tt.uids != nil) {
			t.Errorf("%q (max %d): %d %v %v", tt.args, tt.max, uidv, uids, err)
		}
	}
}

// FuzzParseTaggedReply: any reply line parses or fails without a panic, and
// an APPENDUID never yields more UIDs than asked for.
func FuzzParseTaggedReply(f *testing.F) {
	f.Add("MF1 OK [APPENDUID 38505 3955:3957,4000] APPEND completed\r\n", 3)
	f.Add("MF2 NO [LIMIT] too big", 1)
	f.Fuzz(func(t *testing.T, line string, max int) {
		max = max%1000 + 1
		if max <= 0 {
			max = 1
		}
		_, code, args, _, err := parseTaggedReply([]byte(line))
		if err != nil || code != "APPENDUID" {
			return
		}
		if _, uids, err := parseAppendUID(args, max); err == nil && (len(uids) > max || len(uids) == 0) {
			t.Fatalf("%q: %d UIDs for %d messages", line, len(uids), max)
		}
	})
}

// dialDovecot logs in to a fresh Dovecot as u, with implicit TLS when
// opts.TLS is set.
func dialDovecot(t *testing.T, opts dovecottest.Options) (*dovecottest.Server, *imapclient.Client) {
	t.Helper()
	opts.Users = map[string]string{"u": "p"}
	srv := dovecottest.Start(t, opts)
	ep, _ := ParseURL(srv.URL(), false)
	if opts.TLS {
		ep, _ = ParseURL("imaps://"+srv.TLSAddr(), false)
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(srv.CertPEM())
		ep.TLSConfig = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	}
	c, err := Dial(context.Background(), ep, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := Login(c, "u", "p"); err != nil {
		t.Fatal(err)
	}
	return srv, c
}

type testMsg struct {
	body  []byte
	flags []imap.Flag
	date  time.Time
}

func multiAppend(c *imapclient.Client, mailbox string, msgs []testMsg) (*MultiAppendData, error) {
	m, err := StartMultiAppend(c, mailbox)
	if err != nil {
		return nil, err
	}
	for _, msg := range msgs {
		if err := m.Append(bytes.NewReader(msg.body), int64(len(msg.body)), &imap.AppendOptions{Flags: msg.flags, Time: msg.date}); err != nil {
			m.Close()
			return nil, err
		}
	}
	if err := m.Close(); err != nil {
		return nil, err
	}
	return m.Wait()
}

func folderMessages(t *testing.T, c *imapclient.Client, mailbox string) []*imapclient.FetchMessageBuffer {
	t.Helper()
	if _, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	c.Unselect().Wait()
	return msgs
}

// TestMultiAppend: messages of one MULTIAPPEND arrive byte for byte with
// their flags and dates, under the UIDs the reply names, while go-imap's
// own commands go on before and after it on the same connection.
func TestMultiAppend(t *testing.T) {
	for _, implicitTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", implicitTLS), func(t *testing.T) { testMultiAppend(t, implicitTLS) })
	}
}

func testMultiAppend(t *testing.T, implicitTLS bool) {
	_, c := dialDovecot(t, dovecottest.Options{TLS: implicitTLS})
	if !CanMultiAppend(c) {
		t.Fatal("Dovecot offers MULTIAPPEND and LITERAL+, but CanMultiAppend says no")
	}
	const folder = "Clients/Müller & Co"
	if err := c.Create(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	date := time.Date(2019, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	msgs := []testMsg{
		{body: []byte("Subject: one\r\n\r\nsmall\r\n"), flags: []imap.Flag{imap.FlagSeen, "$Label1"}, date: date},
		{body: append([]byte("Subject: two\r\n\r\n"), bytes.Repeat([]byte("a line over 4 KiB in all\r\n"), 2000)...), date: date.Add(time.Hour)},
		{body: []byte("Subject: three\r\n\r\n8-bit: \xe4\xf6\r\n"), flags: []imap.Flag{imap.FlagFlagged}},
	}
	// A go-imap APPEND whose reply is still out when ours starts, and one
	// sent before ours is answered.
	before := c.Append(folder, int64(len(msgs[0].body)), nil)
	before.Write(msgs[0].body)
	if err := before.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := StartMultiAppend(c, folder)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range msgs {
		if err := m.Append(bytes.NewReader(msg.body), int64(len(msg.body)), &imap.AppendOptions{Flags: msg.flags, Time: msg.date}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	noop := c.Noop()
	data, err := m.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := before.Wait(); err != nil {
		t.Fatalf("go-imap's APPEND before ours: %v", err)
	}
	if err := noop.Wait(); err != nil {
		t.Fatalf("go-imap's NOOP after ours: %v", err)
	}
	if data.UIDValidity == 0 || !slices.Equal(data.UIDs, []imap.UID{2, 3, 4}) {
		t.Fatalf("APPENDUID: %+v", data)
	}
	got := folderMessages(t, c, folder)
	if len(got) != 4 {
		t.Fatalf("%d messages in the folder, want 4", len(got))
	}
	for i, msg := range msgs {
		g := got[i+1]
		if g.UID != data.UIDs[i] || !bytes.Equal(g.FindBodySection(&imap.FetchItemBodySection{Peek: true}), msg.body) {
			t.Errorf("message %d: uid %d, body differs or missing", i, g.UID)
		}
		flags := slices.DeleteFunc(g.Flags, func(f imap.Flag) bool { return f == "\\Recent" })
		if !slices.Equal(flags, msg.flags) && len(flags)+len(msg.flags) > 0 {
			t.Errorf("message %d: flags %v, want %v", i, flags, msg.flags)
		}
		if !msg.date.IsZero() && !g.InternalDate.Equal(msg.date) {
			t.Errorf("message %d: internal date %v, want %v", i, g.InternalDate, msg.date)
		}
	}

	// Nothing appended, nothing sent.
	if data, err := multiAppend(c, folder, nil); err != nil || len(data.UIDs) != 0 {
		t.Fatalf("empty MULTIAPPEND: %+v %v", data, err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestMultiAppendRefused: a server that refuses one message stores none of
// the command's, says why, and the connection goes on.
func TestMultiAppendRefused(t *testing.T) {
	_, c := dialDovecot(t, dovecottest.Options{MaxMessageSize: 10_000})
	body := func(n int) []byte { return append([]byte("Subject: x\r\n\r\n"), bytes.Repeat([]byte("y"), n)...) }
	_, err := multiAppend(c, "INBOX", []testMsg{{body: body(5000)}, {body: body(20_000)}, {body: body(6000)}})
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo {
		t.Fatalf("a batch with a message over the limit: %v", err)
	}
	if _, err := multiAppend(c, "No such folder", []testMsg{{body: body(10)}}); !errors.As(err, &ie) || ie.Code != imap.ResponseCodeTryCreate {
		t.Fatalf("into a missing folder: %v", err)
	}
	if got := folderMessages(t, c, "INBOX"); len(got) != 0 {
		t.Fatalf("%d messages stored from refused commands", len(got))
	}
	if _, err := multiAppend(c, "INBOX", []testMsg{{body: body(100)}, {body: body(200)}}); err != nil {
		t.Fatalf("after refusals: %v", err)
	}
	if got := folderMessages(t, c, "INBOX"); len(got) != 2 {
		t.Fatalf("%d messages, want 2", len(got))
	}
}

// TestMultiAppendCutOff: a message that ends early (the source broke off)
// can't be completed: the connection is closed and the server stores
// nothing of the command.
func TestMultiAppendCutOff(t *testing.T) {
	srv, c := dialDovecot(t, dovecottest.Options{})
	m, err := StartMultiAppend(c, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	whole := []byte("Subject: whole\r\n\r\nbody\r\n")
	if err := m.Append(bytes.NewReader(whole), int64(len(whole)), nil); err != nil {
		t.Fatal(err)
	}
	short := strings.NewReader("Subject: cut\r\n\r\nthe source broke")
	if err := m.Append(short, 1000, nil); err == nil || !strings.Contains(err.Error(), "ended after") {
		t.Fatalf("a short message: %v", err)
	}
	if err := m.Close(); err == nil {
		t.Fatal("Close after a cut-off message succeeded")
	}
	if _, err := m.Wait(); err == nil {
		t.Fatal("Wait after a cut-off message succeeded")
	}
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open")
	}
	c2 := srv.Dial(t, "u")
	if got := folderMessages(t, c2, "INBOX"); len(got) != 0 {
		t.Fatalf("%d messages stored from a cut-off command", len(got))
	}
}

// TestMultiAppendConnectionLost: a waiter learns that the connection ended
// before the reply.
func TestMultiAppendConnectionLost(t *testing.T) {
	_, c := dialDovecot(t, dovecottest.Options{})
	m, err := StartMultiAppend(c, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("Subject: x\r\n\r\ny\r\n")
	m.Append(bytes.NewReader(body), int64(len(body)), nil)
	c.Close()
	m.Close()
	done := make(chan error, 1)
	go func() { _, err := m.Wait(); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait hangs after the connection closed")
	}
	if _, err := StartMultiAppend(c, "INBOX"); err == nil {
		t.Fatal("a closed client still allows MULTIAPPEND")
	}
}

func TestMultiAppendRejectsBadFlag(t *testing.T) {
	_, c := dialDovecot(t, dovecottest.Options{})
	m, err := StartMultiAppend(c, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("Subject: x\r\n\r\ny\r\n")
	if err := m.Append(bytes.NewReader(body), int64(len(body)), &imap.AppendOptions{Flags: []imap.Flag{"bad flag"}}); err == nil {
		t.Fatal("a flag with a space was accepted")
	}
	if err := m.Append(bytes.NewReader(body), int64(len(body)), nil); err != nil {
		t.Fatalf("the command broke on a refused flag: %v", err)
	}
	m.Close()
	if data, err := m.Wait(); err != nil || len(data.UIDs) != 1 {
		t.Fatal(fmt.Sprint(data, err))
	}
}
