//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mailferry/mailferry/imapconn"
)

// rawStats is what one raw pipelined upload did.
type rawStats struct {
	elapsed  time.Duration // from dialing to the last tagged reply
	commands int           // tagged commands after LOGIN (CREATEs and APPENDs)
	ok       int           // tagged OK replies
	failures []string      // tagged NO/BAD replies (the first few)
	failed   int
	bytes    int64 // message bytes sent
}

const imapDateTime = "02-Jan-2006 15:04:05 -0700"

// rawAppend is the limit of a target: a minimal IMAP client that logs in,
// then writes one CREATE per folder the target lacks and one APPEND per
// message (or with multi > 0, per multi messages of a folder) with LITERAL+
// non-synchronising literals, all back to back on ONE connection without
// waiting for any reply, while a reader goroutine counts the tagged replies. Message bytes come from the source's Maildir
// files (paths), in appendOrder. It returns when every command has been
// answered.
func rawAppend(addr, user, password string, c *corpus, paths map[int]string, multi int) (rawStats, error) {
	var creates []string
	for _, f := range folders {
		if !f.auto {
			creates = append(creates, f.wire())
		}
	}
	var items []rawItem
	for _, m := range c.appendOrder() {
		path, size := paths[m.idx], m.size
		items = append(items, rawItem{m: m, open: func() (io.ReadCloser, error) {
			f, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			fi, err := f.Stat()
			if err == nil && fi.Size() != size {
				err = fmt.Errorf("size %d, want %d", fi.Size(), size)
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("message file %s: %w", path, err)
			}
			return f, nil
		}})
	}
	return rawPipeline(addr, user, password, creates, items, multi)
}

// rawItem is a message for rawPipeline and how to read its bytes.
type rawItem struct {
	m    *message
	open func() (io.ReadCloser, error)
}

// rawDelta is the limit of a target for the delta pass's new messages: they
// are built in memory and appended over conns raw pipelines at once (like
// mailferry's pairs), each taking whole folders, the biggest share first to
// the least loaded connection. It returns when every reply is in.
func rawDelta(addr, user, password string, msgs []*message, conns, multi int) (time.Duration, error) {
	byFolder := map[int][]*message{}
	for _, m := range msgs {
		byFolder[m.folder] = append(byFolder[m.folder], m)
	}
	groups := slices.Collect(maps.Values(byFolder))
	slices.SortFunc(groups, func(a, b []*message) int { return cmp.Compare(len(b), len(a)) })
	shares := make([][]rawItem, conns)
	for _, g := range groups {
		least := 0
		for i := range shares {
			if len(shares[i]) < len(shares[least]) {
				least = i
			}
		}
		for _, m := range g {
			data := m.build()
			m.size = int64(len(data))
			shares[least] = append(shares[least], rawItem{m: m, open: func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(data)), nil
			}})
		}
	}
	start := time.Now()
	errs := make(chan error, conns)
	for _, items := range shares {
		go func() {
			st, err := rawPipeline(addr, user, password, nil, items, multi)
			if err == nil && st.ok != st.commands {
				err = fmt.Errorf("%d OK of %d APPENDs: %q", st.ok, st.commands, st.failures)
			}
			errs <- err
		}()
	}
	var first error
	for range shares {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return time.Since(start), first
}

// rawPipeline logs in on one connection and writes creates as CREATE
// commands, then items as APPENDs, without waiting for replies. With multi
// > 0, consecutive items of one folder go up to multi to a MULTIAPPEND.
func rawPipeline(addr, user, password string, creates []string, items []rawItem, multi int) (rawStats, error) {
	var st rawStats
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return st, err
	}
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 64<<10)
	greeting, err := br.ReadString('\n')
	if err != nil {
		return st, fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return st, fmt.Errorf("greeting %q", greeting)
	}
	if _, err := fmt.Fprintf(conn, "L LOGIN %s %s\r\n", imapconn.Quote(user), imapconn.Quote(password)); err != nil {
		return st, err
	}
	caps := greeting
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return st, fmt.Errorf("LOGIN: %w", err)
		}
		caps += line
		if strings.HasPrefix(line, "L ") {
			if !strings.HasPrefix(line, "L OK") {
				return st, fmt.Errorf("LOGIN: %q", strings.TrimSpace(line))
			}
			break
		}
	}
	if !strings.Contains(caps, "LITERAL+") {
		return st, errors.New("the target does not announce LITERAL+ in its greeting or LOGIN reply")
	}

	// first[i]: item i starts an APPEND command.
	first := make([]bool, len(items))
	for i, run := 0, 0; i < len(items); i++ {
		if multi == 0 || i == 0 || items[i-1].m.folder != items[i].m.folder || run == multi {
			first[i], run = true, 0
		}
		run++
	}
	st.commands = len(creates)
	for _, f := range first {
		if f {
			st.commands++
		}
	}

	// The reader counts tagged replies until every command has one.
	done := make(chan error, 1)
	go func() {
		for n := 0; n < st.commands; {
			line, err := br.ReadString('\n')
			if err != nil {
				done <- fmt.Errorf("after %d of %d replies: %w", n, st.commands, err)
				return
			}
			tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			if tag == "*" || tag == "+" {
				continue // untagged data; "+" never comes with LITERAL+
			}
			if tag == "" || (tag[0] != 'C' && tag[0] != 'A') {
				done <- fmt.Errorf("unexpected line %q", line)
				return
			}
			n++
			if strings.HasPrefix(rest, "OK") {
				st.ok++
				continue
			}
			st.failed++
			if len(st.failures) < 5 {
				st.failures = append(st.failures, strings.TrimSpace(line))
			}
		}
		done <- nil
	}()

	write := func() error {
		bw := bufio.NewWriterSize(conn, 256<<10)
		for i, name := range creates {
			fmt.Fprintf(bw, "C%d CREATE %s\r\n", i, imapconn.Quote(name))
		}
		for i, it := range items {
			m := it.m
			f, err := it.open()
			if err != nil {
				return err
			}
			if first[i] {
				if i > 0 {
					bw.WriteString("\r\n") // ends the command before
				}
				fmt.Fprintf(bw, "A%d APPEND %s", i, imapconn.Quote(folders[m.folder].wire()))
			}
			fmt.Fprintf(bw, " (%s) \"%s\" {%d+}\r\n", strings.Join(m.flags, " "), m.internal.Format(imapDateTime), m.size)
			n, err := io.CopyN(bw, f, m.size)
			f.Close()
			st.bytes += n
			if err != nil {
				return fmt.Errorf("sending message %d: %w", m.idx, err)
			}
		}
		if len(items) > 0 {
			bw.WriteString("\r\n")
		}
		return bw.Flush()
	}
	if err := write(); err != nil {
		conn.Close() // unblocks the reader
		<-done
		return st, err
	}
	if err := <-done; err != nil {
		return st, err
	}
	st.elapsed = time.Since(start)
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(conn, "Z LOGOUT\r\n")
	return st, nil
}
