package imapconn

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	gosync "sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Commands go-imap lacks (MULTIAPPEND) are written by this package on the
// connection go-imap uses, between go-imap's own commands: literalPlusConn
// lends its write side, and toleranceConn takes their tagged replies out of
// the stream before go-imap sees them. go-imap tags its commands "T1",
// "T2", …; ours are "MF1", "MF2", ….
const rawTagPrefix = "MF"

// isRawTag reports whether a response line is tagged with one of our tags.
func isRawTag(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte(rawTagPrefix))
	if !ok {
		return false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	return i > 0 && i < len(rest) && rest[i] == ' '
}

// rawReplies hands the tagged replies of our own commands to their waiters.
type rawReplies struct {
	mu   gosync.Mutex
	next uint64
	wait map[string]chan rawReply
	err  error // the stream ended: every waiter, and any later one, gets it
}

type rawReply struct {
	line []byte
	err  error
}

// register reserves a tag and the channel its reply will come on.
func (r *rawReplies) register() (string, <-chan rawReply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	tag := rawTagPrefix + strconv.FormatUint(r.next, 10)
	ch := make(chan rawReply, 1)
	if r.err != nil {
		ch <- rawReply{err: r.err}
		return tag, ch
	}
	if r.wait == nil {
		r.wait = map[string]chan rawReply{}
	}
	r.wait[tag] = ch
	return tag, ch
}

func (r *rawReplies) deliver(line []byte) {
	tag, _, _ := bytes.Cut(line, []byte(" "))
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.wait[string(tag)]; ok {
		delete(r.wait, string(tag))
		ch <- rawReply{line: line}
	}
}

func (r *rawReplies) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = fmt.Errorf("connection ended before the reply: %w", err)
	}
	for tag, ch := range r.wait {
		delete(r.wait, tag)
		ch <- rawReply{err: r.err}
	}
}

// rawConn is what the package keeps of a client from Dial to write its own
// commands on it.
type rawConn struct {
	lp *literalPlusConn
	tc *toleranceConn
}

// rawConns maps each open client from Dial (with both layers: not STARTTLS)
// to its rawConn. An entry goes when the connection closes.
var rawConns gosync.Map // *imapclient.Client → *rawConn

func registerRaw(c *imapclient.Client, lp *literalPlusConn, tc *toleranceConn) {
	lp.onClose(func() { rawConns.Delete(c) })
	rawConns.Store(c, &rawConn{lp: lp, tc: tc})
	if lp.isClosed() {
		rawConns.Delete(c)
	}
}

func rawOf(c *imapclient.Client) *rawConn {
	v, ok := rawConns.Load(c)
	if !ok {
		return nil
	}
	return v.(*rawConn)
}

// parseTaggedReply reads a tagged status response "tag OK|NO|BAD [code
// args] text": a NO or BAD comes back as an *imap.Error, like go-imap's.
func parseTaggedReply(line []byte) (typ imap.StatusResponseType, code imap.ResponseCode, args, text string, err error) {
	line = bytes.TrimRight(line, "\r\n")
	_, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return "", "", "", "", fmt.Errorf("malformed reply %q", clip(line))
	}
	word, rest, _ := bytes.Cut(rest, []byte(" "))
	switch t := imap.StatusResponseType(bytes.ToUpper(word)); t {
	case imap.StatusResponseTypeOK, imap.StatusResponseTypeNo, imap.StatusResponseTypeBad:
		typ = t
	default:
		return "", "", "", "", fmt.Errorf("malformed reply %q", clip(line))
	}
	if len(rest) > 0 && rest[0] == '[' {
		end := closingBracket(rest)
		if end < 0 {
			return "", "", "", "", fmt.Errorf("malformed reply %q", clip(line))
		}
		c, a, _ := bytes.Cut(rest[1:end], []byte(" "))
		code, args = imap.ResponseCode(bytes.ToUpper(c)), string(a)
		rest = bytes.TrimLeft(rest[end+1:], " ")
	}
	text = string(rest)
	if typ != imap.StatusResponseTypeOK {
		err = &imap.Error{Type: typ, Code: code, Text: text}
	}
	return typ, code, args, text, err
}

// parseAppendUID reads the arguments of an APPENDUID code, "uidvalidity
// uid-set", and lists the set's UIDs in order, at most max of them (a
// longer set is an error: it can't be the reply to max messages).
func parseAppendUID(args string, max int) (uint32, []imap.UID, error) {
	v, set, ok := strings.Cut(args, " ")
	if !ok {
		return 0, nil, errors.New("APPENDUID without a UID set")
	}
	uidv, err := strconv.ParseUint(v, 10, 32)
	if err != nil || uidv == 0 {
		return 0, nil, fmt.Errorf("APPENDUID: bad UIDVALIDITY %q", v)
	}
	var uids []imap.UID
	for part := range strings.SplitSeq(set, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := parseUID(lo)
		if err != nil {
			return 0, nil, err
		}
		b := a
		if isRange {
			if b, err = parseUID(hi); err != nil {
				return 0, nil, err
			}
		}
		step := imap.UID(1)
		if b < a {
			step = ^imap.UID(0) // a descending range: RFC 4315 allows either order
		}
		for u := a; ; u += step {
			if len(uids) == max {
				return 0, nil, fmt.Errorf("APPENDUID: more than %d UIDs", max)
			}
			uids = append(uids, u)
			if u == b {
				break
			}
		}
	}
	return uint32(uidv), uids, nil
}

func parseUID(s string) (imap.UID, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("APPENDUID: bad UID %q", s)
	}
	return imap.UID(n), nil
}

var errNotRaw = errors.New("connection does not allow commands of mailferry's own")
