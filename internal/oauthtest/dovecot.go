package oauthtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dovecotPath is where Debian's dovecot-core installs the daemon.
const dovecotPath = "/usr/sbin/dovecot"

const (
	startTimeout   = 10 * time.Second
	pollInterval   = 20 * time.Millisecond
	portAttempts   = 5
	stopGrace      = 200 * time.Millisecond
	failureLogTail = 60
)

// DovecotOptions configure an XOAUTH2 Dovecot target.
type DovecotOptions struct {
	// IntrospectionURL is the token introspection endpoint (Server.IntrospectionURL).
	IntrospectionURL string
	// Scope is the scope a token must have (default Scope); "-" checks none.
	Scope string
	// Mailboxes are the addresses (user@domain) that have a mailbox. A token
	// is good for a mailbox when introspection calls it active and its
	// "username" has the mailbox's domain (the Server says "app@Domain"), as
	// app-only tokens are good for every mailbox of the tenant. (A login as
	// an address not listed passes the token check and then fails with
	// Dovecot's "NO [UNAVAILABLE] Internal error occurred", its answer to a
	// user missing from the userdb, and a disconnect.)
	Mailboxes []string
	// NoAccess are mailboxes that refuse every token, as Exchange does when
	// the app lacks FullAccess on one (a deny passdb).
	NoAccess []string
	// Debug logs Dovecot's authentication steps (auth_debug, oauth2 debug).
	Debug bool
}

// Dovecot is a running Dovecot 2.3 whose IMAP logins go through the oauth2
// passdb: AUTHENTICATE XOAUTH2 and OAUTHBEARER, and PLAIN with a token as the
// password.
type Dovecot struct {
	dir      string
	addr     string
	mailUser *user.User
	opts     DovecotOptions

	mu   sync.Mutex
	proc *process
}

type process struct {
	pid  int
	done chan struct{}
	err  error
}

// StartDovecot starts Dovecot on a free 127.0.0.1 port in a temporary
// directory and stops it at test cleanup (it also dies with the test binary).
// It skips the test where Dovecot can't run (not Linux, not root, not
// installed), or fails it when the environment variable CI is set.
func StartDovecot(tb testing.TB, opts DovecotOptions) *Dovecot {
	tb.Helper()
	if !supported {
		tb.Skipf("oauthtest: Dovecot needs Linux (GOOS=%s)", runtime.GOOS)
	}
	if _, err := os.Stat(dovecotPath); err != nil {
		skipOrFail(tb, "oauthtest: "+dovecotPath+" not found: install dovecot-imapd")
	}
	if os.Geteuid() != 0 {
		skipOrFail(tb, "oauthtest: Dovecot needs root (it switches to the users dovecot, dovenull and nobody)")
	}
	if err := validateDovecot(&opts); err != nil {
		tb.Fatalf("oauthtest: %v", err)
	}
	d := &Dovecot{dir: tb.TempDir(), opts: opts}
	if strings.ContainsAny(d.dir, " \t\"'%:\\") {
		tb.Fatalf("oauthtest: temporary directory %q has characters Dovecot's configuration cannot take", d.dir)
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		tb.Fatalf("oauthtest: %v", err)
	}
	d.mailUser = u
	if err := d.prepare(); err != nil {
		tb.Fatalf("oauthtest: preparing %s: %v", d.dir, err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("oauthtest: last lines of %s:\n%s", d.logPath(), tail(d.Log(), failureLogTail))
		}
		d.Stop()
	})
	var lastErr error
	for range portAttempts {
		if err := d.pickPort(); err != nil {
			tb.Fatalf("oauthtest: %v", err)
		}
		if err := d.writeConfig(); err != nil {
			tb.Fatalf("oauthtest: %v", err)
		}
		if lastErr = d.start(); lastErr == nil {
			return d
		}
		if !errors.Is(lastErr, errAddrInUse) {
			break
		}
	}
	tb.Fatalf("oauthtest: %v", lastErr)
	return nil
}

func skipOrFail(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

func validateDovecot(o *DovecotOptions) error {
	u, err := url.Parse(o.IntrospectionURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("IntrospectionURL %q: want http://127.0.0.1:port/path", o.IntrospectionURL)
	}
	if o.Scope == "" {
		o.Scope = Scope
	}
	if len(o.Mailboxes) == 0 {
		return errors.New("no Mailboxes")
	}
	for _, m := range append(slices.Clone(o.Mailboxes), o.NoAccess...) {
		local, domain, ok := strings.Cut(m, "@")
		if !ok || local == "" || domain == "" || m != strings.ToLower(m) ||
			strings.ContainsFunc(m, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(":*/\\\"'%", r) }) {
			return fmt.Errorf("mailbox %q: want a lower-case user@domain without special characters", m)
		}
	}
	for _, m := range o.NoAccess {
		if !slices.Contains(o.Mailboxes, m) {
			return fmt.Errorf("NoAccess mailbox %q is not in Mailboxes", m)
		}
	}
	return nil
}

func (d *Dovecot) confPath() string   { return filepath.Join(d.dir, "dovecot.conf") }
func (d *Dovecot) oauth2Path() string { return filepath.Join(d.dir, "dovecot-oauth2.conf.ext") }
func (d *Dovecot) usersPath() string  { return filepath.Join(d.dir, "users") }
func (d *Dovecot) denyPath() string   { return filepath.Join(d.dir, "no-access") }
func (d *Dovecot) logPath() string    { return filepath.Join(d.dir, "dovecot.log") }

// prepare makes the directories, the userdb and the deny list. Dovecot's
// login processes run as dovenull, auth as dovecot, mail as nobody: all need
// to get through the temporary directory's ancestors.
func (d *Dovecot) prepare() error {
	if err := makeTraversable(d.dir); err != nil {
		return err
	}
	for _, sub := range []string{"run", "state", "mail"} {
		if err := mkdir(filepath.Join(d.dir, sub), 0o755); err != nil {
			return err
		}
	}
	uid, err := strconv.Atoi(d.mailUser.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(d.mailUser.Gid)
	if err != nil {
		return err
	}
	var users, deny strings.Builder
	for _, m := range d.opts.Mailboxes {
		home := filepath.Join(d.dir, "mail", m)
		if err := mkdir(home, 0o700); err != nil {
			return err
		}
		if err := os.Chown(home, uid, gid); err != nil {
			return err
		}
		// user:password:uid:gid:gecos:home:shell:extra (no password: userdb only)
		fmt.Fprintf(&users, "%s::%d:%d::%s::\n", m, uid, gid, home)
	}
	for _, m := range d.opts.NoAccess {
		fmt.Fprintf(&deny, "%s:\n", m)
	}
	if err := writeFile(d.usersPath(), []byte(users.String()), 0o644); err != nil {
		return err
	}
	return writeFile(d.denyPath(), []byte(deny.String()), 0o644)
}

func (d *Dovecot) pickPort() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.addr = l.Addr().String()
	return l.Close()
}

// writeConfig writes dovecot.conf and the oauth2 passdb's file; nothing from
// /etc/dovecot is read.
func (d *Dovecot) writeConfig() error {
	_, port, _ := net.SplitHostPort(d.addr)
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# Written by internal/oauthtest.")
	p("instance_name = oauthtest-%s", port)
	p("base_dir = %s/run", d.dir)
	p("state_dir = %s/state", d.dir)
	p("log_path = %s", d.logPath())
	p("protocols = imap")
	p("listen = 127.0.0.1")
	p("default_internal_user = dovecot")
	p("default_internal_group = dovecot")
	p("default_login_user = dovenull")
	p("first_valid_uid = %s", d.mailUser.Uid)
	p("last_valid_uid = %s", d.mailUser.Uid)
	p("first_valid_gid = %s", d.mailUser.Gid)
	p("last_valid_gid = %s", d.mailUser.Gid)
	p("mail_max_userip_connections = 1000")
	p("ssl = no")
	p("disable_plaintext_auth = no")
	p("mail_fsync = never")
	p("mail_location = maildir:~/Maildir:LAYOUT=fs")
	p("auth_mechanisms = xoauth2 oauthbearer plain")
	// Addresses are the login names: keep '@' and don't lowercase them away.
	p("auth_username_format = %%u")
	// No waiting after failures (Dovecot 2.3 still answers them in 0.5 s
	// batches), no auth penalty per IP, no cache: a revoked token must fail
	// at once.
	p("auth_failure_delay = 0")
	p("auth_cache_size = 0")
	p("service anvil {")
	p("  unix_listener anvil-auth-penalty {")
	p("    mode = 0")
	p("  }")
	p("}")
	if d.opts.Debug {
		p("auth_debug = yes")
		p("auth_verbose = yes")
	}
	// The deny passdb comes first: a listed user fails whatever the token.
	p("passdb {")
	p("  driver = passwd-file")
	p("  args = %s", d.denyPath())
	p("  deny = yes")
	p("}")
	p("passdb {")
	p("  driver = oauth2")
	p("  mechanisms = xoauth2 oauthbearer plain")
	p("  args = %s", d.oauth2Path())
	p("}")
	p("userdb {")
	p("  driver = passwd-file")
	p("  args = username_format=%%u %s", d.usersPath())
	p("}")
	p("namespace inbox {")
	p("  inbox = yes")
	p("  separator = /")
	p("}")
	p("service imap-login {")
	p("  inet_listener imap {")
	p("    address = 127.0.0.1")
	p("    port = %s", port)
	p("  }")
	p("  inet_listener imaps {")
	p("    port = 0")
	p("  }")
	p("}")
	if err := writeFile(d.confPath(), []byte(b.String()), 0o644); err != nil {
		return err
	}

	b.Reset()
	p("# oauth2 passdb, written by internal/oauthtest.")
	p("introspection_url = %s", d.opts.IntrospectionURL)
	p("introspection_mode = post")
	// Every answer names the app ("app@domain"); the token is good for the
	// mailboxes of that domain: compare the domains only.
	p("username_attribute = username")
	p("username_format = %%Ld")
	p("active_attribute = active")
	p("active_value = true")
	if d.opts.Scope != "-" {
		p("scope = %s", d.opts.Scope)
	}
	p("timeout_msecs = 5000")
	p("max_parallel_connections = 4")
	if d.opts.Debug {
		p("debug = yes")
	}
	// Read by the auth process, which runs as root in Dovecot 2.3.
	return writeFile(d.oauth2Path(), []byte(b.String()), 0o644)
}

var errAddrInUse = errors.New("address already in use")

// start runs the Dovecot master and waits for the IMAP greeting.
func (d *Dovecot) start() error {
	logFile, err := os.OpenFile(d.logPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	cmd := exec.Command(dovecotPath, "-F", "-c", d.confPath())
	cmd.Dir = d.dir
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()

	proc := &process{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked Dovecot ends: keep
		// this goroutine on its thread until Dovecot has exited.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		proc.pid = cmd.Process.Pid
		started <- nil
		proc.err = cmd.Wait()
		close(proc.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting %s: %w", dovecotPath, err)
	}
	d.mu.Lock()
	d.proc = proc
	d.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		err := readGreeting(d.addr)
		if err == nil {
			return nil
		}
		select {
		case <-proc.done:
			d.mu.Lock()
			d.proc = nil
			d.mu.Unlock()
			if bytes.Contains(d.logSince(logStart), []byte("Address already in use")) {
				return fmt.Errorf("dovecot exited (%v): %w", proc.err, errAddrInUse)
			}
			return fmt.Errorf("dovecot exited before its greeting (%v)", proc.err)
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			d.Stop()
			return fmt.Errorf("no IMAP greeting on %s after %v: %v", d.addr, startTimeout, err)
		}
	}
}

func readGreeting(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "* OK") {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	return nil
}

// Addr is the IMAP listener, "127.0.0.1:port" (no TLS).
func (d *Dovecot) Addr() string { return d.addr }

// URL is the listener as mailferry's server URL, "imap+plain://127.0.0.1:port".
func (d *Dovecot) URL() string { return "imap+plain://" + d.addr }

// Dir is the directory with the configuration, the log and the mail.
func (d *Dovecot) Dir() string { return d.dir }

// Log returns what Dovecot has logged so far.
func (d *Dovecot) Log() string {
	b, err := os.ReadFile(d.logPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Sprintf("(reading %s: %v)", d.logPath(), err)
	}
	return string(b)
}

func (d *Dovecot) logSince(off int64) []byte {
	b, _ := os.ReadFile(d.logPath())
	if off > int64(len(b)) {
		return nil
	}
	return b[off:]
}

// Stop kills Dovecot's process group (SIGTERM, SIGKILL after 200 ms) and
// waits for the master. It may be called more than once.
func (d *Dovecot) Stop() {
	d.mu.Lock()
	proc := d.proc
	d.proc = nil
	d.mu.Unlock()
	if proc == nil {
		return
	}
	signalGroup(proc.pid, syscall.SIGTERM)
	select {
	case <-proc.done:
	case <-time.After(stopGrace):
		signalGroup(proc.pid, syscall.SIGKILL)
		<-proc.done
	}
}

func mkdir(path string, perm os.FileMode) error {
	if err := os.Mkdir(path, perm); err != nil {
		return err
	}
	return os.Chmod(path, perm)
}

func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return err
	}
	return os.Chmod(path, perm)
}

// makeTraversable gives everyone search permission on dir and its ancestors
// where it is missing (t.TempDir makes them 0700).
func makeTraversable(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			keep := os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky
			if err := os.Chmod(p, fi.Mode()&keep|0o011); err != nil {
				return err
			}
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
