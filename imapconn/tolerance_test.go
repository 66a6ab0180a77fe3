package imapconn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Exchange Online's reply to a successful AUTHENTICATE, as clients log it.
const exchangeAuthOK = `T2 OK [Error="Some text" AuthResultFromPopImapEnd=0 Proxy="BL1PR13CA0123.outlook.office365.com:1993:SSL"] AUTHENTICATE completed.`

// filterAll runs b through a fresh filter in one piece.
func filterAll(b []byte) []byte {
	var f lineFilter
	f.feed(b)
	f.flush()
	return f.out
}

func TestToleranceRewrites(t *testing.T) {
	// out: "=" unchanged, "-" dropped, else the line go-imap gets.
	tests := []struct{ in, out string }{
		{exchangeAuthOK, `T2 OK Error="Some text" AuthResultFromPopImapEnd=0 Proxy="BL1PR13CA0123.outlook.office365.com:1993:SSL" AUTHENTICATE completed.`},
		{`* OK [Error="x"] ready`, `* OK Error="x" ready`},
		{`T5 NO [Error="a]b" X=1] Request is throttled. Suggested Backoff Time: 299000 milliseconds`,
			`T5 NO Error="a]b" X=1 Request is throttled. Suggested Backoff Time: 299000 milliseconds`},
		{`T1 ok [Error="unterminated`, `T1 ok Error="unterminated`},
		{`T1 OK []`, `T1 OK`},
		{`T1 OK [[x]] y`, `T1 OK x ] y`},
		{`* OK [UIDNEXT x] y`, `* OK UIDNEXT x y`},
		{"T1 OK\tjunk", "T1 OK \tjunk"},
		{"T1 NO a\rb", "T1 NO a b"},
		{`* BYE [Error="gone"]`, `* BYE Error="gone"`},
		{`* 3 OK [Error=""] odd`, `* 3 OK Error="" odd`},
		// Dropped: unknown untagged responses and lines without a tag.
		{`* VANISHED (EARLIER) 1:5`, `-`},
		{`* XFOO bar`, `-`},
		{`* 7 XFOO`, `-`},
		{`*`, `-`},
		{``, `-`},
		{`* OK[ALERT]`, `-`}, // "OK[ALERT" is one atom to go-imap
		// Untouched: go-imap reads these.
		{`T1 OK [CAPABILITY IMAP4rev1 LITERAL+] Logged in`, `=`},
		{`T1 OK [APPENDUID 12 345] APPEND completed.`, `=`},
		{`* OK [PERMANENTFLAGS (\Seen \*)] Limited`, `=`},
		{`* OK [HIGHESTMODSEQ 123456789012] x`, `=`},
		{`T1 NO [ALREADYEXISTS] Mailbox already exists`, `=`},
		{`T1 NO [BADCHARSET (UTF-8)] x`, `=`},
		{`T1 OK`, `=`},
		{`T1 NO User is authenticated but not connected.`, `=`},
		{`T1 OK [Error=x] atom codes are fine`, `=`},
		{`* 12 EXISTS`, `=`},
		{`* LIST (\HasNoChildren) "/" Calendar`, `=`},
		{`+ eyJzdGF0dXMiOiI0MDEifQ==`, `=`},
		{`* 99999999999 FETCH (UID 1)`, `=`}, // broken, but mailbox data: never dropped
		{`T1 FROB [x`, `=`},                  // not a status: left to go-imap
	}
	for _, tt := range tests {
		in := tt.in + "\r\n"
		want := tt.out + "\r\n"
		switch tt.out {
		case "-":
			want = ""
		case "=":
			want = in
		}
		if got := string(filterAll([]byte(in))); got != want {
			t.Errorf("%q:\n got %q\nwant %q", tt.in, got, want)
		}
	}
}

// TestToleranceLiteralsKept: literal data passes byte for byte, however
// much it looks like responses, and the literals of a dropped response go
// with it.
func TestToleranceLiteralsKept(t *testing.T) {
	evil := "T3 OK [Error=\"x\"] fake\r\n* XFOO\r\n* OK [Error=\"y\"]\r\n{5}\r\n"
	stream := "* 1 FETCH (UID 1 BODY[] {" + fmt.Sprint(len(evil)) + "}\r\n" + evil + ")\r\n" +
		"* XFOO (a {" + fmt.Sprint(len(evil)) + "}\r\n" + evil + " b {3} \n" + "abc)\r\n" +
		"* 2 FETCH (UID 2 BODY[] {0}\r\n)\r\n" +
		"T3 OK [Error=\"z\"] done\r\n"
	want := "* 1 FETCH (UID 1 BODY[] {" + fmt.Sprint(len(evil)) + "}\r\n" + evil + ")\r\n" +
		"* 2 FETCH (UID 2 BODY[] {0}\r\n)\r\n" +
		"T3 OK Error=\"z\" done\r\n"
	for size := 1; size <= len(stream); size++ {
		var f lineFilter
		for b := []byte(stream); len(b) > 0; {
			n := min(size, len(b))
			f.feed(b[:n])
			b = b[n:]
		}
		if string(f.out) != want {
			t.Fatalf("pieces of %d:\n got %q\nwant %q", size, f.out, want)
		}
	}
}

// scriptServer serves one IMAP connection on loopback: each command gets the
// next reply queued for its name (with %[1]s for the tag), or a plain OK.
func scriptServer(t *testing.T, greeting string, replies map[string][]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(c, greeting+"\r\n")
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			tag, name := f[0], strings.ToUpper(f[1])
			if name == "UID" && len(f) > 2 {
				name += " " + strings.ToUpper(f[2])
			}
			reply := "%[1]s OK done"
			if q := replies[name]; len(q) > 0 {
				reply, replies[name] = q[0], q[1:]
			} else if name == "LOGOUT" {
				reply = "* BYE bye\r\n%[1]s OK done"
			}
			fmt.Fprintf(c, reply+"\r\n", tag)
		}
	}()
	return ln.Addr().String()
}

// TestToleranceWithClient sends Exchange's odd responses to a real client
// through Dial's stack; the connection survives all of them and keeps what
// they say.
func TestToleranceWithClient(t *testing.T) {
	evil := "Subject: x\r\n\r\nT3 OK [Error=\"x\"] fake\r\n* VANISHED 1:2\r\n* OK [Error=\"y\"]\r\n"
	addr := scriptServer(t,
		`* OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS MOVE IDLE NAMESPACE AUTH=PLAIN] The Microsoft Exchange IMAP4 service is ready. [TABAAEIAMQ==]`,
		map[string][]string{
			"LOGIN": {strings.Replace(exchangeAuthOK, "T2", "%[1]s", 1)},
			"SELECT": {"* 1 EXISTS\r\n* VANISHED (EARLIER) 1:5\r\n* XFOO {12}\r\n%[1]s OK fake\r\n\r\n* 3 XBAR\r\n" +
				"* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 4] ok\r\n* FLAGS (\\Seen)\r\n* OK [PERMANENTFLAGS (\\Seen)] ok\r\n" +
				"%[1]s OK [READ-WRITE] SELECT completed."},
			"UID FETCH": {"* 1 FETCH (UID 1 BODY[] {" + fmt.Sprint(len(evil)) + "}\r\n" + evil + ")\r\n%[1]s OK FETCH completed."},
			"NOOP": {
				`%[1]s NO [Error="Throttled" AuthResultFromPopImapEnd=0 Proxy="x:1993:SSL"] Request is throttled. Suggested Backoff Time: 299000 milliseconds`,
				`%[1]s NO User is authenticated but not connected.`,
				`%[1]s OK NOOP completed.`,
			},
		})
	core, logs := observer.New(zapcore.DebugLevel)
	ep, _ := ParseURL("imap+plain://"+addr, false)
	c, err := Dial(context.Background(), ep, zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := Login(c, "u", "p"); err != nil {
		t.Fatalf("LOGIN with Exchange's [Error=…] code: %v", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 || sel.UIDNext != 4 || sel.UIDValidity != 7 {
		t.Fatalf("SELECT with unknown untagged responses: %v %+v", err, sel)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(msgs) != 1 || string(msgs[0].FindBodySection(section)) != evil {
		t.Fatalf("FETCH: %v %d", err, len(msgs))
	}

	err = c.Noop().Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || !strings.Contains(ie.Text, `Error="Throttled"`) {
		t.Fatalf("throttled NOOP: %v", err)
	}
	if d, ok := ThrottleDelay(err); !ok || d != 299*time.Second || !IsTemporary(err) {
		t.Errorf("throttle reply: delay %v %v, temporary %v", d, ok, IsTemporary(err))
	}
	err = c.Noop().Wait()
	if !IsExchangeTransient(err) {
		t.Errorf("not connected: %v not recognised", err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("connection broken: %v", err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}

	dropped := logs.FilterMessage("ignored a server response go-imap cannot parse").All()
	if len(dropped) != 3 {
		t.Errorf("logged %d dropped responses, want 3 (VANISHED, XFOO, XBAR)", len(dropped))
	}
	if n := logs.FilterMessage("rewrote a server response code go-imap cannot parse").Len(); n != 2 {
		t.Errorf("logged %d rewrites, want 2", n)
	}
}

func TestIsExchangeTransient(t *testing.T) {
	for err, want := range map[error]bool{
		&imap.Error{Type: imap.StatusResponseTypeNo, Text: "User is authenticated but not connected."}:                         true,
		fmt.Errorf("sync: %w", &imap.Error{Type: imap.StatusResponseTypeBye, Text: "User is authenticated but not connected"}): true,
		&imap.Error{Type: imap.StatusResponseTypeNo, Text: "Folder name is reserved"}:                                          false,
		errors.New("User is authenticated but not connected"):                                                                  false,
	} {
		if got := IsExchangeTransient(err); got != want {
			t.Errorf("%v: %v", err, got)
		}
	}
}

// clientBreaks sends resp to a real go-imap client as the reply to its
// first NOOP (with "TAG" replaced by the command's tag), optionally through
// the tolerance layer, and reports whether the client lost the connection.
func clientBreaks(t testing.TB, resp string, layer bool) bool {
	cc, sc := net.Pipe()
	defer sc.Close()
	var conn net.Conn = cc
	if layer {
		conn = newToleranceConn(cc, nil)
	}
	go func() {
		defer sc.Close()
		sc.Write([]byte("* OK [CAPABILITY IMAP4rev1] hi\r\n"))
		r := bufio.NewReader(sc)
		for i := range 2 {
			sc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, _, _ := strings.Cut(line, " ")
			out := tag + " OK done\r\n"
			if i == 0 {
				out = strings.ReplaceAll(resp, "TAG", tag)
			}
			sc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := sc.Write([]byte(out)); err != nil {
				return
			}
		}
	}()
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	var ie *imap.Error
	if err := c.Noop().Wait(); err != nil && !errors.As(err, &ie) {
		return true
	}
	return c.Noop().Wait() != nil
}

// TestModelMatchesClient checks statusAccepted against go-imap itself.
func TestModelMatchesClient(t *testing.T) {
	// go-imap spins for ever on this one; the model rejects it.
	if statusAccepted([]byte(" [CAPABILITY (x] y"), true) {
		t.Error("[CAPABILITY ( accepted")
	}
	for _, line := range []string{
		exchangeAuthOK, `T1 OK [Error=x] y`, `T1 OK [ALERT] y`, `T1 OK [ALERT`, `T1 OK [BADCHARSET (UTF-8)] x`,
		`T1 OK [APPENDUID 1 x] y`, `T1 OK [CAPABILITY IMAP4rev1  IDLE] y`, `T1 OK  `,
		"T1 OK \r", "T1 OK a\rb", "T1 OK [X a\rb] c", `T1 NO [] x`, `T1 OK(x`, "T1 OK\tx",
	} {
		kind, typEnd := classify([]byte(line+"\r\n"), true)
		if kind != kindStatus {
			t.Fatalf("%q: kind %v", line, kind)
		}
		model := statusAccepted(lineBody([]byte(line + "\r\n"))[typEnd:], true)
		_, rest, _ := strings.Cut(line, " ")
		resp := "TAG " + rest + "\r\n"
		if broke := clientBreaks(t, resp, false); broke == model {
			t.Errorf("%q: model accepts %v, go-imap breaks %v", line, model, broke)
		}
		if clientBreaks(t, resp, true) {
			t.Errorf("%q: go-imap breaks through the tolerance layer", line)
		}
	}
}

// FuzzToleranceClient: for any status response or unknown untagged
// response, go-imap accepts what the layer hands it, and the model of
// go-imap agrees with go-imap on the raw line.
func FuzzToleranceClient(f *testing.F) {
	f.Add(`OK [Error="Some text" AuthResultFromPopImapEnd=0 Proxy="x:1993:SSL"] AUTHENTICATE completed.`, true)
	f.Add(`NO [ALERT] x`, true)
	f.Add(`OK [UIDNEXT 5] x`, false)
	f.Add(`VANISHED (EARLIER) 1:5`, false)
	f.Add(`OK [CAPABILITY IMAP4rev1] x`, false)
	f.Fuzz(func(t *testing.T, line string, tagged bool) {
		if strings.ContainsAny(line, "\n") || strings.Contains(line, "TAG") {
			return
		}
		resp := "* " + line
		if tagged {
			resp = "TAG " + line
		}
		resp += "\r\n"
		kind, typEnd := classify([]byte(resp), true)
		if kind != kindStatus && (kind != kindDrop || tagged) {
			return
		}
		if kind == kindStatus && (strings.Contains(line, "[COPYUID") || strings.Contains(line, "[PERMANENTFLAGS")) {
			return // trusted by the model
		}
		if !tagged {
			resp += "TAG OK done\r\n"
		}
		model := kind == kindStatus && statusAccepted(lineBody([]byte(strings.SplitAfter(resp, "\n")[0]))[typEnd:], tagged)
		// go-imap spins for ever on "[CAPABILITY (", and waits for more
		// lines after a "[" with no "]": the raw client is not tried on
		// those (TestModelMatchesClient has one of each).
		_, afterBracket, hasBracket := strings.Cut(line, "[")
		unterminated := hasBracket && !strings.Contains(afterBracket, "]")
		spins := strings.Contains(line, "CAPABILITY") && strings.Contains(line, "(")
		if !unterminated && !spins {
			if broke := clientBreaks(t, resp, false); broke == model {
				t.Errorf("%q: model accepts %v, go-imap breaks %v", resp, model, broke)
			}
		}
		if clientBreaks(t, resp, true) {
			t.Errorf("%q: go-imap breaks through the tolerance layer", resp)
		}
	})
}

// FuzzToleranceStream: arbitrary server lines between responses with
// literals never panic the filter, never change a byte of a literal,
// never leak a dropped response, give the same output however the stream
// is cut into reads, change only lines go-imap rejects, and always
// produce lines it accepts.
func FuzzToleranceStream(f *testing.F) {
	f.Add([]byte(exchangeAuthOK+"\n* VANISHED 1:3\n* 1 EXISTS\nT1 OK [ALERT] x\n\n+ abc"), uint64(1))
	f.Add([]byte("* XFOO {3}\nT1 OK [x\n* OK [Error=\"a]\"] b\r\n*\n"), uint64(2))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		if len(data) > 8<<10 {
			return
		}
		r := rand.New(rand.NewPCG(seed, 7))
		payload := data[:min(len(data), 700)] // literal data: lines of all kinds
		var stream, want []byte
		for i, line := range bytes.Split(data, []byte("\n")) {
			if _, ok := serverLiteral(append(bytes.Clone(line), '\r', '\n')); ok {
				line = append(line, '.') // one line, not the start of a literal
			}
			l := append(bytes.Clone(line), '\r', '\n')
			got := filterAll(l)
			checkLine(t, l, got)
			stream, want = append(stream, l...), append(want, got...)
			switch r.IntN(3) {
			case 0:
				fetch := fmt.Appendf(nil, "* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n", i+1, i+1, len(payload), payload)
				stream, want = append(stream, fetch...), append(want, fetch...)
			case 1:
				stream = fmt.Appendf(stream, "* XFOO (%d {%d}\r\n%s {2} \n\r\n)\r\n", i, len(payload), payload)
			}
		}
		if got := filterAll(stream); !bytes.Equal(got, want) {
			t.Fatalf("stream in one piece:\n got %q\nwant %q", got, want)
		}
		var fl lineFilter
		for b := stream; len(b) > 0; {
			n := min(len(b), 1+r.IntN(64))
			fl.feed(b[:n])
			b = b[n:]
		}
		fl.flush()
		if !bytes.Equal(fl.out, want) {
			t.Fatalf("stream in pieces:\n got %q\nwant %q", fl.out, want)
		}
		// Through the conn, whose literal data skips the filter.
		tc := newToleranceConn(&chunkConn{data: stream, r: r}, nil)
		var got []byte
		for {
			p := make([]byte, 1+r.IntN(96))
			n, err := tc.Read(p)
			got = append(got, p[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("stream through the conn:\n got %q\nwant %q", got, want)
		}
	})
}

// chunkConn serves data in reads of random sizes, then io.EOF.
type chunkConn struct {
	net.Conn
	data []byte
	r    *rand.Rand
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.r.IntN(64))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func checkLine(t *testing.T, in, out []byte) {
	kind, typEnd := classify(in, true)
	switch kind {
	case kindDrop:
		if len(out) != 0 {
			t.Fatalf("%q: dropped line gave %q", in, out)
		}
	case kindStatus:
		accepted := statusAccepted(lineBody(in)[typEnd:], in[0] != '*')
		if accepted && !bytes.Equal(in, out) {
			t.Fatalf("%q: accepted line changed to %q", in, out)
		}
		k2, end2 := classify(out, true)
		if k2 != kindStatus || !statusAccepted(lineBody(out)[end2:], out[0] != '*') || bytes.Count(out, []byte("\n")) != 1 {
			t.Fatalf("%q: rewritten to %q, which go-imap rejects", in, out)
		}
		if !accepted && !bytes.HasPrefix(out, lineBody(in)[:typEnd]) {
			t.Fatalf("%q: rewrite %q lost the tag or type", in, out)
		}
	default:
		if !bytes.Equal(in, out) {
			t.Fatalf("%q: changed to %q", in, out)
		}
	}
}

// BenchmarkToleranceFetch: what the layer costs on a stream of message
// bodies (the bulk of what the sync engine reads).
func BenchmarkToleranceFetch(b *testing.B) {
	body := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog, again and again.\r\n"), 1000)
	var stream []byte
	for i := range 100 {
		stream = fmt.Appendf(stream, "* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n", i+1, i+1, len(body), body)
	}
	b.SetBytes(int64(len(stream)))
	var f lineFilter
	for b.Loop() {
		for p := stream; len(p) > 0; {
			n := min(len(p), 32<<10)
			f.feed(p[:n])
			f.out = f.out[:0]
			p = p[n:]
		}
	}
}
