package imapconn

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// rawWriteTimeout bounds each write of our own commands, like go-imap's
// command write timeout.
const rawWriteTimeout = 30 * time.Second

// MultiAppend is one MULTIAPPEND command (RFC 3502) being written: several
// messages into one folder, which the server stores all or none, in one
// transaction. A server that syncs each APPEND to disk does so once per
// command instead (Dovecot takes a delta's 100 messages in about half the
// time). go-imap has no MULTIAPPEND: this writes it on a client's
// connection between go-imap's commands, every literal non-synchronizing
// (LITERAL+), so messages stream from the source without a round trip.
//
// Until Close returns, the client must not be given other commands.
type MultiAppend struct {
	raw     *rawConn
	name    string // the folder, for errors
	mailbox string // the folder on the wire: quoted, in modified UTF-7
	bw      *bufio.Writer
	release func()
	reply   <-chan rawReply
	n       int
	err     error // writing failed: the connection is closed
	closed  bool
}

// MultiAppendData is what the server said of a MULTIAPPEND that succeeded.
type MultiAppendData struct {
	// UIDValidity and UIDs (one per message, in order) come from the
	// APPENDUID code of servers with UIDPLUS; without it they are zero.
	UIDValidity uint32
	UIDs        []imap.UID
}

// CanMultiAppend reports whether StartMultiAppend works on c: a client from
// Dial (implicit TLS or no TLS) whose server offers MULTIAPPEND and
// LITERAL+.
func CanMultiAppend(c *imapclient.Client) bool {
	_, err := multiAppendConn(c)
	return err == nil
}

func multiAppendConn(c *imapclient.Client) (*rawConn, error) {
	r := rawOf(c)
	if r == nil || !r.lp.enabled.Load() || !c.Caps().Has(imap.CapMultiAppend) {
		return nil, errNotRaw
	}
	return r, nil
}

// StartMultiAppend begins a MULTIAPPEND into mailbox on c, once go-imap is
// between two commands on c. Nothing is sent before the first message.
func StartMultiAppend(c *imapclient.Client, mailbox string) (*MultiAppend, error) {
	r, err := multiAppendConn(c)
	if err != nil {
		return nil, err
	}
	release, err := r.lp.lendWrites()
	if err != nil {
		return nil, err
	}
	m := &MultiAppend{raw: r, name: mailbox, mailbox: Quote(EncodeMUTF7(mailbox)), release: release}
	m.bw = bufio.NewWriterSize(deadlineWriter{r.tc}, 64<<10)
	return m, nil
}

// Append writes one message of size bytes read from body, with the flags
// and internal date of opts (which may be nil).
func (m *MultiAppend) Append(body io.Reader, size int64, opts *imap.AppendOptions) error {
	if m.err != nil {
		return m.err
	}
	if m.closed {
		return fmt.Errorf("MULTIAPPEND to %q: append after Close", m.name)
	}
	var flags []string
	if opts != nil {
		for _, f := range opts.Flags {
			if !isFlag(string(f)) {
				return fmt.Errorf("MULTIAPPEND to %q: flag %q is not an atom", m.name, f)
			}
			flags = append(flags, string(f))
		}
	}
	var head strings.Builder
	if m.n == 0 {
		var tag string
		tag, m.reply = m.raw.tc.raw.register()
		head.WriteString(tag + " APPEND " + m.mailbox)
	}
	head.WriteString(" (" + strings.Join(flags, " ") + ")")
	if opts != nil && !opts.Time.IsZero() {
		head.WriteString(` "` + opts.Time.Format("_2-Jan-2006 15:04:05 -0700") + `"`)
	}
	head.WriteString(" {" + strconv.FormatInt(size, 10) + "+}\r\n")
	m.n++
	if _, err := m.bw.WriteString(head.String()); err != nil {
		return m.fail(err)
	}
	n, err := io.CopyN(m.bw, body, size)
	if err != nil {
		if err == io.EOF {
			err = fmt.Errorf("message ended after %d of %d bytes", n, size)
		}
		return m.fail(err)
	}
	return nil
}

// Close ends the command and gives the connection back to go-imap; it does
// not wait for the server's reply.
func (m *MultiAppend) Close() error {
	if m.closed {
		return m.err
	}
	m.closed = true
	if m.err == nil && m.n > 0 {
		if _, err := m.bw.WriteString("\r\n"); err != nil {
			m.fail(err)
		} else if err := m.bw.Flush(); err != nil {
			m.fail(err)
		}
	}
	m.raw.tc.SetWriteDeadline(time.Time{})
	m.release()
	return m.err
}

// Wait waits for the server's reply, after Close. A NO or BAD (the server
// stored none of the messages) is an *imap.Error.
func (m *MultiAppend) Wait() (*MultiAppendData, error) {
	if m.n == 0 {
		return &MultiAppendData{}, nil
	}
	if m.err != nil {
		return nil, m.err
	}
	r := <-m.reply
	if r.err != nil {
		return nil, fmt.Errorf("MULTIAPPEND to %q: %w", m.name, r.err)
	}
	_, code, args, _, err := parseTaggedReply(r.line)
	if err != nil {
		return nil, err
	}
	data := &MultiAppendData{}
	if code == "APPENDUID" {
		if uidv, uids, err := parseAppendUID(args, m.n); err == nil && len(uids) == m.n {
			data.UIDValidity, data.UIDs = uidv, uids
		}
	}
	return data, nil
}

// fail records a write error and closes the connection: the command is
// cut off mid-stream and nothing can follow it.
func (m *MultiAppend) fail(err error) error {
	if m.err == nil {
		m.err = fmt.Errorf("MULTIAPPEND to %q: %w", m.name, err)
		m.raw.lp.Close()
	}
	return m.err
}

// deadlineWriter bounds every write to the socket.
type deadlineWriter struct{ c *toleranceConn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(rawWriteTimeout))
	return w.c.Write(p)
}

// Quote makes s an IMAP quoted string; s must be 7-bit without CR or LF
// (a mailbox name in modified UTF-7, say).
func Quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// isFlag reports whether f can be written as a flag: an atom, or "\" and an
// atom.
func isFlag(f string) bool {
	f = strings.TrimPrefix(f, `\`)
	if f == "" {
		return false
	}
	for i := 0; i < len(f); i++ {
		if !isAtomChar(f[i]) || f[i] > 0x7e {
			return false
		}
	}
	return true
}
