//go:build linux

// BenchmarkProxy is the IMAP proxy's benchmark (issue 3, "Benchmark"). It
// runs on demand only, never in CI (plain `go test ./...` does not run
// benchmarks):
//
//	go test -run '^$' -bench Proxy -benchtime 1x -timeout 30m ./internal/bench/
//
// MAILFERRY_BENCH_SCALE=0.1 (any factor in (0, 1]) shrinks the mailbox and
// the number of idle connections for a quick check; MAILFERRY_BENCH_IDLE=N
// sets the number of idle connections by itself (default 1,000).
//
// It needs what the sync tests need: Linux, root and Dovecot (dovecot-imapd).
//
// One run, in temporary directories only, on 127.0.0.1 only:
//
//  1. A Dovecot source gets one INBOX of ~450 MB (~8,400 messages from 2 KB
//     to 8 MB, LF line ends as Dovecot stores them), written straight into
//     its Maildir with Dovecot's ,S= and ,W= sizes in the file names; a
//     first SELECT indexes it and a first FETCH of everything puts it in the
//     page cache (the warm-up row). An empty Dovecot is the target.
//  2. `mailferry proxy` (built from this module) runs as a subprocess with
//     --listen-starttls on loopback (plaintext logins are allowed there),
//     the source and the target, and a mailbox list of the users.
//  3. Throughput: a raw client sends `UID FETCH 1:* BODY.PEEK[]` and reads
//     the answer as it streams in, discarding the literals (nothing is
//     collected), directly against Dovecot and through the proxy, five
//     times each, alternating; the best of each side counts.
//  4. Latency: 1,000 NOOPs and 1,000 `FETCH n (FLAGS)`, each timed from
//     writing the command to reading its tagged OK, alternating one direct
//     and one proxied command on two open connections; the added latency is
//     the proxy's median minus the direct median.
//  5. Memory: the proxy's VmRSS (from /proc/PID/status) at rest, after the
//     runs above, and with 1,000 connections logged in through it, each
//     idling (SELECT INBOX, IDLE) at once, spread over a few users; its
//     VmHWM (peak) at the end. Every idle connection must then still answer
//     DONE with OK.
//
// It prints a table to stdout and reports the main figures as benchmark
// metrics. MB is 10^6 bytes.
package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/mailferry/mailferry/internal/dovecottest"
)

const (
	pxMB          = 1e6
	pxTotalBytes  = 450 * pxMB // the mailbox at scale 1
	pxIdleDefault = 1000
	pxIdleUsers   = 4 // idle connections are spread over this many users
	pxRoundTrips  = 1000
	pxFetchRounds = 5 // each side: the best counts, and single runs here vary by ±15 %
	pxScaleEnv    = "MAILFERRY_BENCH_SCALE"
	pxIdleEnv     = "MAILFERRY_BENCH_IDLE"
	pxPassword    = "proxy-bench-secret"
)

var (
	pxOnce gosync.Once
	pxRes  *pxResults
)

// BenchmarkProxy runs the whole scenario once, whatever b.N is.
func BenchmarkProxy(b *testing.B) {
	if testing.Short() {
		b.Skip("the proxy benchmark does not run with -short")
	}
	pxOnce.Do(func() { pxRes = pxRun(b) })
	if pxRes == nil {
		b.Fatal("the scenario failed in an earlier call")
	}
	pxRes.report(b)
}

// pxFetch is one FETCH of the whole mailbox.
type pxFetch struct {
	side  string // "direct" or "proxy"
	wall  time.Duration
	msgs  int
	bytes int64
	cpu   time.Duration // the proxy's CPU time (user + system) during the FETCH
}

func (f pxFetch) mbps() float64 { return float64(f.bytes) / pxMB / f.wall.Seconds() }

// pxLatency is the round trips of one command on one side.
type pxLatency struct {
	cmd, side string
	rtts      []time.Duration // sorted
}

func (l pxLatency) pct(p float64) time.Duration {
	if len(l.rtts) == 0 {
		return 0
	}
	return l.rtts[min(len(l.rtts)-1, int(p*float64(len(l.rtts))))]
}

type pxResults struct {
	scale          float64
	msgs           int
	bytes          int64 // as served: Dovecot's virtual size, CRLF line ends
	biggest        int64
	seed, index    time.Duration
	version        string
	load           [2]string
	warmup         pxFetch
	fetches        []pxFetch
	latency        []pxLatency // NOOP direct, NOOP proxy, FETCH direct, FETCH proxy
	logins         []pxLatency // connect, LOGIN, SELECT: direct, proxy
	idle           int
	idleOpen       time.Duration
	idleFailed     int
	rssStart       int64 // KiB, the proxy at rest after start
	rssRest        int64 // after one login and logout
	rssAfterRuns   int64 // after the throughput and latency runs, all closed
	rssIdle        int64 // with the idle connections open
	rssAfterIdle   int64 // after they logged out
	hwm            int64 // peak
	dovecotIdleRSS int64 // KiB, all of Dovecot's processes with the idle connections open
}

func pxScale(b *testing.B) float64 {
	s := os.Getenv(pxScaleEnv)
	if s == "" {
		return 1
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f > 0 && f <= 1) {
		b.Fatalf("%s=%q: want a number in (0, 1]", pxScaleEnv, s)
	}
	return f
}

// pxHarness holds the running scenario.
type pxHarness struct {
	b        *testing.B
	start    time.Time
	dir      string
	src, tgt *dovecottest.Server
	users    []string // users[0] holds the big INBOX; the others idle on a small one
	proxy    string   // the proxy's listener
	proc     *exec.Cmd
	logPath  string
	res      *pxResults
}

func (h *pxHarness) logf(format string, args ...any) {
	fmt.Printf("[%7.1fs] %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
}

func pxRun(b *testing.B) *pxResults {
	h := &pxHarness{b: b, start: time.Now(), dir: b.TempDir(), res: &pxResults{scale: pxScale(b)}}
	res := h.res
	res.idle = int(pxIdleDefault * res.scale)
	if s := os.Getenv(pxIdleEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			b.Fatalf("%s=%q: want a number of connections", pxIdleEnv, s)
		}
		res.idle = n
	}
	pxRaiseNofile(b, res.idle)
	res.load[0] = pxLoadavg()

	users := map[string]string{}
	for i := range pxIdleUsers {
		u := fmt.Sprintf("user%d@example.com", i)
		h.users = append(h.users, u)
		users[u] = pxPassword
	}
	h.src = dovecottest.Start(b, dovecottest.Options{Users: users, Fsync: true})
	h.tgt = dovecottest.Start(b, dovecottest.Options{Users: users, Fsync: true})
	h.seed()
	h.startProxy()

	// Warm-up: Dovecot indexes the Maildir and the page cache fills.
	h.logf("warm-up: indexing and a first FETCH of everything, directly")
	t0 := time.Now()
	c := h.dial(h.src.Addr(), h.users[0])
	if _, err := c.cmd("SELECT INBOX"); err != nil {
		b.Fatal(err)
	}
	res.index = time.Since(t0)
	c.logout()
	res.warmup = h.fetchAll("direct", h.src.Addr())

	for range pxFetchRounds {
		for _, side := range []struct{ name, addr string }{{"direct", h.src.Addr()}, {"proxy", h.proxy}} {
			f := h.fetchAll(side.name, side.addr)
			h.logf("FETCH of everything, %s: %.2f s, %.1f MB/s", side.name, f.wall.Seconds(), f.mbps())
			res.fetches = append(res.fetches, f)
		}
	}
	h.roundTrips()
	h.logins()
	runtime.GC()
	time.Sleep(time.Second)
	res.rssAfterRuns = h.rss("VmRSS")
	h.idleConnections()
	res.hwm = h.rss("VmHWM")
	res.load[1] = pxLoadavg()
	h.logf("done")
	res.print(os.Stdout)
	return res
}

// pxRaiseNofile makes sure this process (and Dovecot, which inherits it)
// may hold the idle connections: each takes a descriptor here, two in the
// proxy (its own process raises its limit) and two in Dovecot.
func pxRaiseNofile(b *testing.B, idle int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	need := uint64(3*idle + 1024)
	if lim.Cur >= need {
		return
	}
	lim.Cur = max(lim.Cur, min(lim.Max, need))
	if lim.Max < need {
		lim.Max, lim.Cur = need, need // root may raise the hard limit
	}
	// Calling Setrlimit also makes os/exec hand the raised limit to
	// children (Dovecot) instead of the original one.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("raising RLIMIT_NOFILE to %d for %d idle connections: %v", need, idle, err)
	}
}

// pxLoadavg returns the first three fields of /proc/loadavg.
func pxLoadavg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// pxSize draws a message size: mostly small text mail, some with
// attachments, a few big ones. The mean is about 53 KB.
func pxSize(r *rand.Rand) int {
	lu := func(lo, hi float64) int { return int(lo * math.Pow(hi/lo, r.Float64())) }
	switch p := r.Float64(); {
	case p < 0.84:
		return lu(2e3, 30e3)
	case p < 0.99:
		return lu(30e3, 300e3)
	default:
		return lu(500e3, 8e6)
	}
}

// seed writes the big INBOX of users[0] and a small one for the others
// into the source's Maildirs, as files Dovecot will index on first access.
func (h *pxHarness) seed() {
	b := h.b
	t0 := time.Now()
	nobody, err := osuser.Lookup("nobody")
	if err != nil {
		b.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	r := rand.New(rand.NewPCG(3, 2024))
	// A pool of base64-like text lines to cut bodies from.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	pool := make([]byte, 1<<20)
	for i := range pool {
		if i%77 == 76 {
			pool[i] = '\n'
		} else {
			pool[i] = alphabet[r.IntN(len(alphabet))]
		}
	}
	total := int64(pxTotalBytes * h.res.scale)
	base := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	for ui, user := range h.users {
		root := h.src.MaildirPath(user)
		for _, d := range []string{root, filepath.Join(root, "cur"), filepath.Join(root, "new"), filepath.Join(root, "tmp")} {
			if err := os.Mkdir(d, 0o700); err != nil {
				b.Fatal(err)
			}
			if err := os.Chown(d, uid, gid); err != nil {
				b.Fatal(err)
			}
		}
		var written int64
		var buf bytes.Buffer
		for i := 0; ; i++ {
			if ui == 0 && written >= total || ui > 0 && i == 50 {
				break
			}
			size := pxSize(r)
			if ui > 0 {
				size = 4000
			}
			date := base.Add(time.Duration(i) * 17 * time.Minute)
			buf.Reset()
			fmt.Fprintf(&buf, "Return-Path: <sender%d@example.org>\nReceived: from mx.example.org by mail.example.com with ESMTPS id %x\n\tfor <%s>; %s\n"+
				"Message-ID: <%d.%x@example.org>\nDate: %s\nFrom: Sender %d <sender%d@example.org>\nTo: <%s>\n"+
				"Subject: Benchmark message %d of the proxy\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n",
				i%97, r.Uint64(), user, date.Format(time.RFC1123Z), i, r.Uint64(), date.Format(time.RFC1123Z), i%97, i%97, user, i)
			for buf.Len() < size {
				off := r.IntN(len(pool)/77-1) * 77
				n := min(size-buf.Len(), len(pool)-off)
				buf.Write(pool[off : off+n])
			}
			if buf.Bytes()[buf.Len()-1] != '\n' {
				buf.WriteByte('\n')
			}
			raw := buf.Bytes()
			vsize := int64(len(raw) + bytes.Count(raw, []byte{'\n'}))
			info := "S"
			if i%10 == 0 {
				info = "" // unread
			}
			name := fmt.Sprintf("%d.M%dP1.bench,S=%d,W=%d:2,%s", date.Unix(), i, len(raw), vsize, info)
			path := filepath.Join(root, "cur", name)
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				b.Fatal(err)
			}
			if err := os.Chown(path, uid, gid); err != nil {
				b.Fatal(err)
			}
			t := date.Add(time.Minute)
			os.Chtimes(path, t, t) // INTERNALDATE
			written += int64(len(raw))
			if ui == 0 {
				h.res.msgs++
				h.res.bytes += vsize
				h.res.biggest = max(h.res.biggest, vsize)
			}
		}
	}
	h.res.seed = time.Since(t0)
	h.logf("seeded %s's INBOX: %d messages, %.1f MB as served, biggest %.1f MB, in %.1f s",
		h.users[0], h.res.msgs, float64(h.res.bytes)/pxMB, float64(h.res.biggest)/pxMB, h.res.seed.Seconds())
}

// startProxy builds cmd/mailferry and runs `mailferry proxy`.
func (h *pxHarness) startProxy() {
	b := h.b
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		b.Fatalf("go env GOMOD: %q %v", gomod, err)
	}
	root := filepath.Dir(gomod)
	h.res.version = "the working tree"
	if out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output(); err == nil {
		h.res.version = "the working tree at " + strings.TrimSpace(string(out))
	}
	bin := filepath.Join(h.dir, "mailferry")
	h.logf("building %s/cmd/mailferry", root)
	build := exec.Command("go", "build", "-o", bin, "./cmd/mailferry")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/mailferry: %v\n%s", err, out)
	}
	var csv strings.Builder
	csv.WriteString("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n")
	for _, u := range h.users {
		fmt.Fprintf(&csv, "%s,%s,%s,%s,%s\n", u, u, pxPassword, u, pxPassword)
	}
	csvPath := filepath.Join(h.dir, "users.csv")
	if err := os.WriteFile(csvPath, []byte(csv.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	h.proxy = ln.Addr().String()
	ln.Close()
	h.logPath = filepath.Join(h.dir, "proxy.log")
	logFile, err := os.Create(h.logPath)
	if err != nil {
		b.Fatal(err)
	}
	h.proc = exec.Command(bin, "proxy", "--source", h.src.URL(), "--target", h.tgt.URL(), "--mailboxes", csvPath,
		"--data", filepath.Join(h.dir, "data"), "--listen-starttls", h.proxy, "--log-level", "warn")
	h.proc.Stdout, h.proc.Stderr = logFile, logFile
	if err := h.proc.Start(); err != nil {
		b.Fatal(err)
	}
	logFile.Close()
	exited := make(chan struct{})
	go func() { h.proc.Wait(); close(exited) }()
	b.Cleanup(func() {
		h.proc.Process.Kill()
		<-exited
		if b.Failed() {
			log, _ := os.ReadFile(h.logPath)
			b.Logf("the proxy's log:\n%s", pxTail(string(log), 40))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := pxDialGreeting(h.proxy)
		if err == nil {
			c.close()
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(h.logPath)
			b.Fatalf("mailferry proxy exited: %v\n%s", h.proc.ProcessState, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("mailferry proxy does not answer on %s: %v", h.proxy, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	h.res.rssStart = h.rss("VmRSS")
	// The first login through the proxy checks the password against the
	// source and stores an argon2id verifier (19 MiB of memory, once).
	for _, u := range h.users {
		h.dial(h.proxy, u).logout()
	}
	runtime.GC()
	time.Sleep(time.Second)
	h.res.rssRest = h.rss("VmRSS")
	h.logf("mailferry proxy on %s: VmRSS %.1f MB after start, %.1f MB after the first logins",
		h.proxy, float64(h.res.rssStart)*1024/pxMB, float64(h.res.rssRest)*1024/pxMB)
}

func pxTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// rss returns a field of the proxy's /proc/PID/status in KiB.
func (h *pxHarness) rss(field string) int64 {
	return pxStatusField(h.proc.Process.Pid, field)
}

// cpu returns the proxy's CPU time so far, user and system.
func (h *pxHarness) cpu() time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.proc.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (in parentheses): state is field
	// 3, utime 14, stime 15, in clock ticks (USER_HZ, 100 on Linux).
	_, rest, _ := bytes.Cut(raw, []byte(") "))
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func pxStatusField(pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// dovecotRSS sums VmRSS over a Dovecot instance's processes (the master's
// process group).
func pxGroupRSS(pgid int) int64 {
	ents, _ := os.ReadDir("/proc")
	var sum int64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid {
			sum += pxStatusField(pid, "VmRSS")
		}
	}
	return sum
}

// fetchAll fetches the whole big INBOX once, streaming.
func (h *pxHarness) fetchAll(side, addr string) pxFetch {
	b := h.b
	c := h.dial(addr, h.users[0])
	defer c.logout()
	if _, err := c.cmd("SELECT INBOX"); err != nil {
		b.Fatal(err)
	}
	cpu0 := h.cpu()
	t0 := time.Now()
	st, err := c.cmd("UID FETCH 1:* BODY.PEEK[]")
	f := pxFetch{side: side, wall: time.Since(t0), msgs: st.literals, bytes: st.literalBytes}
	if side == "proxy" {
		f.cpu = h.cpu() - cpu0
	}
	if err != nil {
		b.Fatalf("FETCH of everything, %s: %v", side, err)
	}
	if f.msgs != h.res.msgs || f.bytes != h.res.bytes {
		b.Fatalf("FETCH of everything, %s: %d messages, %d bytes; want %d, %d", side, f.msgs, f.bytes, h.res.msgs, h.res.bytes)
	}
	return f
}

// roundTrips times small commands, alternating direct and proxied ones.
func (h *pxHarness) roundTrips() {
	b := h.b
	direct, proxied := h.dial(h.src.Addr(), h.users[0]), h.dial(h.proxy, h.users[0])
	defer direct.logout()
	defer proxied.logout()
	for _, c := range []*pxConn{direct, proxied} {
		if _, err := c.cmd("SELECT INBOX"); err != nil {
			b.Fatal(err)
		}
	}
	for _, kind := range []string{"NOOP", "FETCH FLAGS"} {
		cmd := func(i int) string {
			if kind == "NOOP" {
				return "NOOP"
			}
			return fmt.Sprintf("FETCH %d (FLAGS)", i%h.res.msgs+1)
		}
		d, p := pxLatency{cmd: kind, side: "direct"}, pxLatency{cmd: kind, side: "proxy"}
		for i := -50; i < pxRoundTrips; i++ { // 50 to warm up
			for _, s := range []struct {
				c *pxConn
				l *pxLatency
			}{{direct, &d}, {proxied, &p}} {
				t0 := time.Now()
				if _, err := s.c.cmd(cmd(i + 50)); err != nil {
					b.Fatalf("%s %s: %v", kind, s.l.side, err)
				}
				if i >= 0 {
					s.l.rtts = append(s.l.rtts, time.Since(t0))
				}
			}
		}
		slices.Sort(d.rtts)
		slices.Sort(p.rtts)
		h.res.latency = append(h.res.latency, d, p)
		h.logf("%d × %s: median %v direct, %v through the proxy", pxRoundTrips, kind, d.pct(0.5), p.pct(0.5))
	}
}

// logins times whole sessions (connect, greeting, LOGIN, SELECT INBOX of
// a small mailbox), one at a time, alternating direct and proxied ones.
func (h *pxHarness) logins() {
	const n = 100
	d, p := pxLatency{cmd: "connect + LOGIN + SELECT", side: "direct"}, pxLatency{cmd: "connect + LOGIN + SELECT", side: "proxy"}
	for range n {
		for _, s := range []struct {
			addr string
			l    *pxLatency
		}{{h.src.Addr(), &d}, {h.proxy, &p}} {
			t0 := time.Now()
			c := h.dial(s.addr, h.users[1])
			if _, err := c.cmd("SELECT INBOX"); err != nil {
				h.b.Fatal(err)
			}
			s.l.rtts = append(s.l.rtts, time.Since(t0))
			c.logout()
		}
	}
	slices.Sort(d.rtts)
	slices.Sort(p.rtts)
	h.res.logins = []pxLatency{d, p}
	h.logf("%d sessions: median %v direct, %v through the proxy", n, d.pct(0.5), p.pct(0.5))
}

// idleConnections holds res.idle connections through the proxy at once,
// each logged in, with INBOX selected and idling.
func (h *pxHarness) idleConnections() {
	res := h.res
	if res.idle == 0 {
		return
	}
	h.logf("opening %d idle connections through the proxy", res.idle)
	conns := make([]*pxConn, res.idle)
	errs := make([]error, res.idle)
	t0 := time.Now()
	var wg gosync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				// Users 1.. idle on a small INBOX; user 0's big one is
				// for the runs above.
				user := h.users[1+i%(len(h.users)-1)]
				c, err := pxDialLogin(h.proxy, user, pxPassword)
				if err == nil {
					_, err = c.cmd("SELECT INBOX")
					if err == nil {
						err = c.idle()
					}
					if err != nil {
						c.close()
					}
				}
				conns[i], errs[i] = c, err
			}
		})
	}
	for i := range res.idle {
		next <- i
	}
	close(next)
	wg.Wait()
	res.idleOpen = time.Since(t0)
	var firstErr error
	for i, err := range errs {
		if err != nil {
			res.idleFailed++
			firstErr = cmpErr(firstErr, fmt.Errorf("connection %d: %w", i, err))
			conns[i] = nil
		}
	}
	h.logf("%d idle connections open in %.1f s (%d failed: %v)", res.idle-res.idleFailed, res.idleOpen.Seconds(), res.idleFailed, firstErr)
	time.Sleep(2 * time.Second)
	res.rssIdle = h.rss("VmRSS")
	res.dovecotIdleRSS = pxGroupRSS(h.srcPgid())
	h.logf("proxy VmRSS with them: %.1f MB; the source Dovecot's processes: %.1f MB", float64(res.rssIdle)*1024/pxMB, float64(res.dovecotIdleRSS)*1024/pxMB)
	// Every idle connection is still alive and ends its IDLE cleanly.
	for i, c := range conns {
		if c == nil {
			continue
		}
		if err := c.done(); err != nil {
			res.idleFailed++
			firstErr = cmpErr(firstErr, fmt.Errorf("connection %d at DONE: %w", i, err))
		}
		c.logout()
	}
	if res.idleFailed > 0 {
		log, _ := os.ReadFile(h.logPath)
		h.b.Errorf("%d of %d idle connections failed; first: %v\nthe proxy's log:\n%s", res.idleFailed, res.idle, firstErr, pxTail(string(log), 20))
	}
	runtime.GC()
	time.Sleep(2 * time.Second)
	res.rssAfterIdle = h.rss("VmRSS")
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// srcPgid finds the source Dovecot master's process group: the process
// that listens on its port is one of its children; Dovecot runs as its own
// group (dovecottest sets Setpgid).
func (h *pxHarness) srcPgid() int {
	conf := filepath.Join(h.src.Dir(), "dovecot.conf")
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(cmdline, []byte(conf)) {
			if g, err := syscall.Getpgid(pid); err == nil {
				return g
			}
		}
	}
	return -1
}

// dial connects and logs in, failing the benchmark on error.
func (h *pxHarness) dial(addr, user string) *pxConn {
	c, err := pxDialLogin(addr, user, pxPassword)
	if err != nil {
		h.b.Fatalf("login as %s on %s: %v", user, addr, err)
	}
	return c
}

// pxConn is a minimal IMAP client: it writes commands and reads their
// answers, discarding literals as they stream in.
type pxConn struct {
	conn net.Conn
	r    *bufio.Reader
	tag  int
	line []byte
}

type pxStats struct {
	literals     int
	literalBytes int64
}

func pxDialGreeting(addr string) (*pxConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &pxConn{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := c.readLine()
	conn.SetDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if !bytes.HasPrefix(line, []byte("* OK")) {
		conn.Close()
		return nil, fmt.Errorf("greeting %q", line)
	}
	return c, nil
}

func pxDialLogin(addr, user, password string) (*pxConn, error) {
	c, err := pxDialGreeting(addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.cmd(fmt.Sprintf("LOGIN %s %s", strconv.Quote(user), strconv.Quote(password))); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *pxConn) close() { c.conn.Close() }

func (c *pxConn) logout() {
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	c.cmd("LOGOUT")
	c.conn.Close()
}

// readLine reads one line, without CRLF, however long.
func (c *pxConn) readLine() ([]byte, error) {
	c.line = c.line[:0]
	for {
		frag, err := c.r.ReadSlice('\n')
		c.line = append(c.line, frag...)
		if err == nil {
			return bytes.TrimRight(c.line, "\r\n"), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// cmd sends a command and reads up to its tagged answer, which must be OK.
func (c *pxConn) cmd(command string) (pxStats, error) {
	var st pxStats
	c.tag++
	tag := fmt.Sprintf("b%d", c.tag)
	if _, err := io.WriteString(c.conn, tag+" "+command+"\r\n"); err != nil {
		return st, err
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return st, fmt.Errorf("%s: %w", command, err)
		}
		// A literal ends the line: {N} (or {N+}); skip its N bytes.
		for bytes.HasSuffix(line, []byte("}")) {
			open := bytes.LastIndexByte(line, '{')
			n, err := strconv.ParseInt(strings.TrimSuffix(string(line[open+1:len(line)-1]), "+"), 10, 64)
			if open < 0 || err != nil {
				break
			}
			if _, err := io.CopyN(io.Discard, c.r, n); err != nil {
				return st, fmt.Errorf("%s: reading a literal: %w", command, err)
			}
			st.literals++
			st.literalBytes += n
			if line, err = c.readLine(); err != nil {
				return st, fmt.Errorf("%s: %w", command, err)
			}
		}
		if rest, ok := bytes.CutPrefix(line, []byte(tag+" ")); ok {
			if !bytes.HasPrefix(rest, []byte("OK")) {
				return st, fmt.Errorf("%s: %s", command, rest)
			}
			return st, nil
		}
	}
}

// idle starts IDLE and waits for the continuation request.
func (c *pxConn) idle() error {
	c.tag++
	if _, err := fmt.Fprintf(c.conn, "b%d IDLE\r\n", c.tag); err != nil {
		return err
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if bytes.HasPrefix(line, []byte("+")) {
			return nil
		}
		if bytes.HasPrefix(line, []byte(fmt.Sprintf("b%d ", c.tag))) {
			return fmt.Errorf("IDLE: %s", line)
		}
	}
}

// done ends IDLE; its tagged answer must be OK.
func (c *pxConn) done() error {
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(c.conn, "DONE\r\n"); err != nil {
		return err
	}
	tag := []byte(fmt.Sprintf("b%d ", c.tag))
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if rest, ok := bytes.CutPrefix(line, tag); ok {
			if !bytes.HasPrefix(rest, []byte("OK")) {
				return fmt.Errorf("IDLE: %s", rest)
			}
			return nil
		}
	}
}

// best returns the fastest FETCH of a side.
func (res *pxResults) best(side string) pxFetch {
	var best pxFetch
	for _, f := range res.fetches {
		if f.side == side && (best.wall == 0 || f.wall < best.wall) {
			best = f
		}
	}
	return best
}

func pxKiB(v int64) string { return fmt.Sprintf("%.1f", float64(v)*1024/pxMB) }

func (res *pxResults) print(w io.Writer) {
	fmt.Fprintf(w, "\nmailferry proxy benchmark (scale %g; mailferry built from %s)\n", res.scale, res.version)
	fmt.Fprintf(w, "One INBOX: %d messages, %.1f MB as served (CRLF), biggest %.1f MB; written in %.1f s, indexed by the first SELECT in %.2f s.\n",
		res.msgs, float64(res.bytes)/pxMB, float64(res.biggest)/pxMB, res.seed.Seconds(), res.index.Seconds())
	fmt.Fprintf(w, "Dovecot %s on 127.0.0.1; `mailferry proxy` as a subprocess; a raw client, one command at a time; %d CPUs; %s. MB = 10^6 bytes.\n",
		pxDovecotVersion(), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(w, "Load average (1, 5, 15 min) at the start: %s; at the end: %s.\n\n", res.load[0], res.load[1])

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "FETCH 1:* BODY.PEEK[]\tSIDE\tSECONDS\tMB/S\tPROXY CPU s\t")
	fmt.Fprintf(tw, "warm-up (page cache)\t%s\t%.2f\t%.1f\t–\t\n", res.warmup.side, res.warmup.wall.Seconds(), res.warmup.mbps())
	for i, f := range res.fetches {
		cpu := "–"
		if f.side == "proxy" {
			cpu = fmt.Sprintf("%.2f", f.cpu.Seconds())
		}
		fmt.Fprintf(tw, "round %d\t%s\t%.2f\t%.1f\t%s\t\n", i/2+1, f.side, f.wall.Seconds(), f.mbps(), cpu)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "ROUND TRIPS (%d; sessions: 100)\tSIDE\tMEDIAN µs\tP90 µs\tP99 µs\tMAX µs\t\n", pxRoundTrips)
	us := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond)) }
	for _, l := range append(slices.Clip(res.latency), res.logins...) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", l.cmd, l.side, us(l.pct(0.5)), us(l.pct(0.9)), us(l.pct(0.99)), us(l.rtts[len(l.rtts)-1]))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PROXY MEMORY\tVmRSS MB\t")
	fmt.Fprintf(tw, "just started\t%s\t\n", pxKiB(res.rssStart))
	fmt.Fprintf(tw, "at rest after the first logins (argon2id verifiers)\t%s\t\n", pxKiB(res.rssRest))
	fmt.Fprintf(tw, "at rest after the FETCH and round-trip runs\t%s\t\n", pxKiB(res.rssAfterRuns))
	fmt.Fprintf(tw, "with %d idle connections (opened in %.1f s, %d failed)\t%s\t\n", res.idle, res.idleOpen.Seconds(), res.idleFailed, pxKiB(res.rssIdle))
	fmt.Fprintf(tw, "at rest after they logged out\t%s\t\n", pxKiB(res.rssAfterIdle))
	fmt.Fprintf(tw, "peak (VmHWM) over the whole run\t%s\t\n", pxKiB(res.hwm))
	fmt.Fprintf(tw, "(the source Dovecot's processes with them, VmRSS summed)\t%s\t\n", pxKiB(res.dovecotIdleRSS))
	tw.Flush()

	goal := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	d, p := res.best("direct"), res.best("proxy")
	ratio := p.mbps() / d.mbps()
	fmt.Fprintf(w, "\nGoals (issue 3):\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  FETCH through the proxy ≥ 0.9× direct (best of %d each)\t%.1f / %.1f MB/s = %.2f×\t%s\n", pxFetchRounds, p.mbps(), d.mbps(), ratio, goal(ratio >= 0.9))
	for i := 0; i+1 < len(res.latency); i += 2 {
		added := res.latency[i+1].pct(0.5) - res.latency[i].pct(0.5)
		fmt.Fprintf(tw, "  added median latency ≤ 0.2 ms, %s\t%.3f ms\t%s\n", res.latency[i].cmd, float64(added)/float64(time.Millisecond), goal(added <= 200*time.Microsecond))
	}
	limit := 50*pxMB + float64(res.idle)*pxMB
	rss := float64(res.rssIdle) * 1024
	perConn := 0.0
	if n := res.idle - res.idleFailed; n > 0 {
		perConn = float64(res.rssIdle-res.rssAfterRuns) * 1024 / float64(n)
	}
	fmt.Fprintf(tw, "  RSS ≤ 50 MB + 1 MB per idle connection (%d: %.0f MB)\t%.1f MB (%.0f KB per connection)\t%s\n",
		res.idle, limit/pxMB, rss/pxMB, perConn/1e3, goal(rss <= limit && res.idleFailed == 0))
	fmt.Fprintf(tw, "  %d idle connections held at once\t%d failed\t%s\n", res.idle, res.idleFailed, goal(res.idleFailed == 0))
	tw.Flush()
	fmt.Fprintln(w)
}

func pxDovecotVersion() string {
	out, err := exec.Command("/usr/sbin/dovecot", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.Fields(string(out) + " ?")[0]
}

func (res *pxResults) report(b *testing.B) {
	b.ReportMetric(0, "ns/op") // one scenario, not an operation
	d, p := res.best("direct"), res.best("proxy")
	b.ReportMetric(d.mbps(), "direct-MB/s")
	b.ReportMetric(p.mbps(), "proxy-MB/s")
	b.ReportMetric(p.mbps()/d.mbps(), "fetch-ratio")
	for i := 0; i+1 < len(res.latency); i += 2 {
		name := strings.ReplaceAll(strings.ToLower(res.latency[i].cmd), " ", "-")
		b.ReportMetric(float64(res.latency[i+1].pct(0.5)-res.latency[i].pct(0.5))/float64(time.Microsecond), name+"-added-µs")
	}
	b.ReportMetric(float64(res.rssRest)*1024/pxMB, "rest-RSS-MB")
	b.ReportMetric(float64(res.rssIdle)*1024/pxMB, "idle-RSS-MB")
	b.ReportMetric(float64(res.idleFailed), "idle-failed")
}
