// Package dovecottest starts throwaway Dovecot 2.3 IMAP servers for tests.
//
// Each server runs as its own `dovecot -F` process on free 127.0.0.1 ports, with
// its configuration, sockets, state, logs and maildirs in the test's temporary
// directory, so any number of servers can run at once, in one test binary or in
// parallel test packages. Servers are stopped at test cleanup and die with the
// test binary.
//
// It needs Linux, root (Dovecot switches to the unprivileged users dovecot,
// dovenull and nobody) and the Debian package dovecot-imapd.
package dovecottest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/big"
	"net"
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

	"github.com/emersion/go-imap/v2/imapclient"
)

// dovecotPath is where the Debian package dovecot-core installs the daemon.
const dovecotPath = "/usr/sbin/dovecot"

// missingMessage is the skip or fatal message when Dovecot is not installed.
const missingMessage = "dovecottest: " + dovecotPath + " not found: run the test script from README.md, which installs dovecot-imapd"

const (
	pollInterval   = 20 * time.Millisecond
	startTimeout   = 10 * time.Second
	portAttempts   = 5
	failureLogTail = 50
	stopGrace      = 200 * time.Millisecond
)

// capsWithoutCondStore is what Dovecot 2.3.19 advertises after login (its built-in
// CAPABILITY_STRING, then LITERAL+, NOTIFY and SPECIAL-USE, which it adds by itself only
// without an imap_capability override) minus CONDSTORE and QRESYNC. An override replaces
// the pre-login capabilities too, which is harmless.
const capsWithoutCondStore = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY " +
	"THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT " +
	"CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT SEARCHRES WITHIN " +
	"CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE " +
	"LITERAL+ NOTIFY SPECIAL-USE"

// Options configure one server.
type Options struct {
	// Separator is the hierarchy delimiter of the personal namespace: "." or "/". Default "/".
	// With "/" the maildirs use LAYOUT=fs, so mailbox names may contain "."; with "." they use
	// the Maildir++ layout (one ".Name.Sub" directory per mailbox), as Courier does.
	Separator string
	// Prefix is the personal namespace prefix, e.g. "INBOX." (Courier/Cyrus style, with Separator ".")
	// or "" (default). A non-empty prefix must end with Separator.
	Prefix string
	// Users maps login name → password (plain). At least one. Names and passwords must not contain
	// ':', '*' (the master user separator) or control characters, names no '/'.
	Users map[string]string
	// SpecialUse maps mailbox names (without prefix, using Separator) to a SPECIAL-USE attribute,
	// auto-created and auto-subscribed, e.g. {"Sent": `\Sent`, "Trash": `\Trash`} or
	// {"Sent Items": `\Sent`, "Deleted Items": `\Trash`, "Junk Email": `\Junk`}.
	SpecialUse map[string]string
	// TLS enables an implicit-TLS listener (TLSAddr) and STARTTLS on the plain one, with a
	// self-signed certificate generated in Go (crypto/x509) for 127.0.0.1; CertPEM returns it so
	// clients can trust it.
	TLS bool
	// MaxMessageSize, if > 0, makes Dovecot refuse APPENDs of messages bigger than this many bytes
	// (the literal's size). It loads the quota plugin (unlimited "count" quota) and sets its
	// quota_max_mail_size; Dovecot then answers such an APPEND with "NO [LIMIT] Mail size is larger
	// than the maximum size allowed by server configuration", for a synchronizing literal at once
	// instead of "+". Dovecot 2.3 advertises no APPENDLIMIT.
	MaxMessageSize int64
	// NoCondStore: if true the server does not advertise CONDSTORE or QRESYNC (for tests of the
	// non-CONDSTORE path). It sets imap_capability to Dovecot's default list without them; a client
	// that uses CONDSTORE anyway (SELECT (CONDSTORE), ENABLE) is still served.
	NoCondStore bool
	// Fsync: if false (default) set mail_fsync=never so tests are fast; if true keep Dovecot's default
	// (mail_fsync=optimized, for benchmarks).
	Fsync bool
	// Auth, if set, replaces the password logins: given the server's
	// directory and its passwd-file (usable as a userdb for Users), it returns
	// the auth part of dovecot.conf (auth_mechanisms, passdb and userdb
	// blocks, other auth_ settings) and files to write into the directory
	// before Dovecot starts. For servers that take other credentials, such
	// as OAuth2 tokens (internal/oauthtest).
	Auth func(dir, passwd string) (conf string, files map[string]string)
	// MasterUser, if non-empty, with MasterPassword, configures a Dovecot master passdb so that
	// "user*master" logins work (auth_master_user_separator is "*").
	MasterUser, MasterPassword string
}

// Server is a running Dovecot instance.
type Server struct {
	dir      string // the test's temporary directory holding everything
	addr     string // plain listener, host:port
	tlsAddr  string // implicit TLS listener, "" without TLS
	certPEM  []byte
	mailUser *user.User
	opts     Options // validated, with its own maps

	mu   sync.Mutex
	proc *process // nil when stopped
}

// process is one run of the Dovecot master.
type process struct {
	pid  int
	done chan struct{} // closed when the master has exited
	err  error         // exit status, valid after done
}

// Start starts a Dovecot server for the test, waits until its IMAP greeting is
// readable and registers tb.Cleanup(Stop). If Dovecot is not installed it skips the
// test, or fails it when the environment variable CI is set. On other platforms
// than Linux it skips the test.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if !supported {
		tb.Skipf("dovecottest: Dovecot test servers need Linux (GOOS=%s)", runtime.GOOS)
	}
	if _, err := os.Stat(dovecotPath); err != nil {
		skipOrFail(tb, missingMessage)
	}
	if os.Geteuid() != 0 {
		skipOrFail(tb, "dovecottest: Dovecot test servers need root (Dovecot switches to the users dovecot, dovenull and nobody)")
	}
	opts.Users = maps.Clone(opts.Users)
	opts.SpecialUse = maps.Clone(opts.SpecialUse)
	if err := validate(&opts); err != nil {
		tb.Fatalf("dovecottest: %v", err)
	}
	s := &Server{dir: tb.TempDir(), opts: opts}
	if strings.ContainsAny(s.dir, " \t\"'%:\\") {
		tb.Fatalf("dovecottest: temporary directory %q has characters Dovecot's configuration cannot take", s.dir)
	}
	mailUser, err := user.Lookup("nobody")
	if err != nil {
		tb.Fatalf("dovecottest: %v", err)
	}
	s.mailUser = mailUser
	if err := s.prepare(); err != nil {
		tb.Fatalf("dovecottest: preparing %s: %v", s.dir, err)
	}
	tb.Cleanup(func() {
		if tb.Failed() { // including a failed Start or Restart
			tb.Logf("dovecottest: last lines of %s:\n%s", s.logPath(), tail(s.Log(), failureLogTail))
		}
		s.Stop()
	})
	var lastErr error
	for range portAttempts {
		if err := s.pickPorts(); err != nil {
			tb.Fatalf("dovecottest: %v", err)
		}
		if err := s.writeConfig(); err != nil {
			tb.Fatalf("dovecottest: %v", err)
		}
		lastErr = s.start()
		if lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errAddrInUse) {
			break
		}
	}
	tb.Fatalf("dovecottest: %v", lastErr)
	return nil
}

// skipOrFail skips the test, or fails it in CI (environment variable CI set),
// where a missing prerequisite must not go unnoticed.
func skipOrFail(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// validate checks opts and fills in defaults.
func validate(opts *Options) error {
	if opts.Separator == "" {
		opts.Separator = "/"
	}
	if opts.Separator != "/" && opts.Separator != "." {
		return fmt.Errorf("bad Separator %q: want \".\" or \"/\"", opts.Separator)
	}
	if opts.Prefix != "" && !strings.HasSuffix(opts.Prefix, opts.Separator) {
		return fmt.Errorf("bad Prefix %q: must end with Separator %q", opts.Prefix, opts.Separator)
	}
	if len(opts.Users) == 0 {
		return errors.New("no Users")
	}
	for u, p := range opts.Users {
		if u == "" || u == "." || u == ".." || strings.Contains(u, "/") || !plainField(u) || !plainField(p) {
			return fmt.Errorf("user %q or its password cannot go into a passwd-file or be a directory name", u)
		}
	}
	if (opts.MasterUser == "") != (opts.MasterPassword == "") {
		return errors.New("set both MasterUser and MasterPassword or neither")
	}
	if opts.MasterUser != "" && (!plainField(opts.MasterUser) || !plainField(opts.MasterPassword)) {
		return fmt.Errorf("master user %q or its password cannot go into a passwd-file", opts.MasterUser)
	}
	for name, attr := range opts.SpecialUse {
		if name == "" || strings.ContainsAny(name, "\"\\\r\n") {
			return fmt.Errorf("bad SpecialUse mailbox name %q", name)
		}
		if !strings.HasPrefix(attr, `\`) || strings.ContainsAny(attr, " \"\r\n") {
			return fmt.Errorf("bad SpecialUse attribute %q for %q", attr, name)
		}
	}
	return nil
}

// plainField reports whether s can be a field of a passwd-file line and a login name.
func plainField(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r == ':' || r == '*' || r < ' ' || r == 0x7f })
}

// Layout of the server's directory.
func (s *Server) confPath() string            { return filepath.Join(s.dir, "dovecot.conf") }
func (s *Server) logPath() string             { return filepath.Join(s.dir, "dovecot.log") }
func (s *Server) passwdPath() string          { return filepath.Join(s.dir, "passwd") }
func (s *Server) masterPasswdPath() string    { return filepath.Join(s.dir, "master-users") }
func (s *Server) certPath() string            { return filepath.Join(s.dir, "cert.pem") }
func (s *Server) keyPath() string             { return filepath.Join(s.dir, "key.pem") }
func (s *Server) homePath(user string) string { return filepath.Join(s.dir, "mail", user) }

// prepare creates the directories, passwd-files and certificate. Dovecot runs its
// login processes as dovenull, auth as dovecot and mail processes as nobody: they
// all need to reach into the directory (search permission on every ancestor), auth
// needs to read the passwd-files and nobody owns the mail homes.
func (s *Server) prepare() error {
	if err := makeTraversable(s.dir); err != nil {
		return err
	}
	for _, d := range []string{"run", "state", "mail"} {
		if err := mkdir(filepath.Join(s.dir, d), 0o755); err != nil {
			return err
		}
	}
	uid, err := strconv.Atoi(s.mailUser.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(s.mailUser.Gid)
	if err != nil {
		return err
	}
	var passwd strings.Builder
	for _, u := range sortedKeys(s.opts.Users) {
		home := s.homePath(u)
		if err := mkdir(home, 0o700); err != nil {
			return err
		}
		if err := os.Chown(home, uid, gid); err != nil {
			return err
		}
		// user:password:uid:gid:gecos:home:shell:extra
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s:%d:%d::%s::\n", u, s.opts.Users[u], uid, gid, home)
	}
	if err := writeFile(s.passwdPath(), []byte(passwd.String()), 0o644); err != nil {
		return err
	}
	if s.opts.MasterUser != "" {
		line := fmt.Sprintf("%s:{PLAIN}%s\n", s.opts.MasterUser, s.opts.MasterPassword)
		if err := writeFile(s.masterPasswdPath(), []byte(line), 0o644); err != nil {
			return err
		}
	}
	if s.opts.TLS {
		certPEM, keyPEM, err := selfSignedCert()
		if err != nil {
			return err
		}
		s.certPEM = certPEM
		if err := writeFile(s.certPath(), certPEM, 0o644); err != nil {
			return err
		}
		if err := writeFile(s.keyPath(), keyPEM, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// mkdir creates a directory with exactly perm, whatever the umask.
func mkdir(path string, perm os.FileMode) error {
	if err := os.Mkdir(path, perm); err != nil {
		return err
	}
	return os.Chmod(path, perm)
}

// writeFile writes a file with exactly perm, whatever the umask.
func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return err
	}
	return os.Chmod(path, perm)
}

// makeTraversable gives everyone search (not read) permission on dir and all its
// ancestors where it is missing: t.TempDir creates its directories 0700.
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

// selfSignedCert returns a PEM certificate and PKCS#8 key for 127.0.0.1.
func selfSignedCert() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "127.0.0.1", Organization: []string{"mailferry dovecottest"}},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// pickPorts chooses free loopback ports for the listeners. Another process may
// take them before Dovecot binds them: Start then tries again with new ones.
func (s *Server) pickPorts() error {
	n := 1
	if s.opts.TLS {
		n = 2
	}
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	s.addr = addrs[0]
	if s.opts.TLS {
		s.tlsAddr = addrs[1]
	}
	return nil
}

// writeConfig writes dovecot.conf for the current ports. It is self-contained:
// nothing from /etc/dovecot is read.
func (s *Server) writeConfig() error {
	_, port, _ := net.SplitHostPort(s.addr)
	tlsPort := "0" // port 0 disables a listener
	if s.tlsAddr != "" {
		_, tlsPort, _ = net.SplitHostPort(s.tlsAddr)
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# Written by internal/dovecottest.")
	p("instance_name = dovecottest-%s", port)
	p("base_dir = %s/run", s.dir)
	p("state_dir = %s/state", s.dir)
	p("log_path = %s", s.logPath())
	p("protocols = imap")
	p("listen = 127.0.0.1")
	p("default_internal_user = dovecot")
	p("default_internal_group = dovecot")
	p("default_login_user = dovenull")
	// Mail processes run as the uid/gid of the passwd-file (nobody): Dovecot refuses root.
	p("first_valid_uid = %s", s.mailUser.Uid)
	p("last_valid_uid = %s", s.mailUser.Uid)
	p("first_valid_gid = %s", s.mailUser.Gid)
	p("last_valid_gid = %s", s.mailUser.Gid)
	p("mail_max_userip_connections = 1000")
	p("disable_plaintext_auth = no")
	// Less waiting after failed logins: no auth_failure_delay (default 2 s; 2.3 still
	// answers failures in 0.5 s batches) and no auth penalty (2, 4, 8, 15 s per IP),
	// which mode 0 on its anvil socket turns off.
	p("auth_failure_delay = 0")
	p("service anvil {")
	p("  unix_listener anvil-auth-penalty {")
	p("    mode = 0")
	p("  }")
	p("}")
	if s.opts.TLS {
		p("ssl = yes")
		p("ssl_cert = <%s", s.certPath())
		p("ssl_key = <%s", s.keyPath())
	} else {
		p("ssl = no")
	}
	if !s.opts.Fsync {
		p("mail_fsync = never")
	}
	layout := "" // Maildir++: ".Sub.Sub" directories, hierarchy separator "."
	if s.opts.Separator == "/" {
		layout = ":LAYOUT=fs" // real subdirectories, so names may contain "."
	}
	p("mail_location = maildir:~/Maildir%s", layout)
	switch {
	case s.opts.NoCondStore:
		p("imap_capability = %s", capsWithoutCondStore)
	case len(s.opts.SpecialUse) == 0:
		// Dovecot advertises SPECIAL-USE only when a mailbox has a special_use.
		p("imap_capability = +SPECIAL-USE")
	}
	if s.opts.MaxMessageSize > 0 {
		// quota_max_mail_size is enforced by the quota plugin, which needs a quota root;
		// "count" without quota_rule is unlimited.
		p("mail_plugins = $mail_plugins quota")
		p("plugin {")
		p("  quota = count:User quota")
		p("  quota_vsizes = yes")
		p("  quota_max_mail_size = %dB", s.opts.MaxMessageSize)
		p("}")
	}
	if s.opts.Auth != nil {
		conf, files := s.opts.Auth(s.dir, s.passwdPath())
		for name, content := range files {
			if err := writeFile(filepath.Join(s.dir, name), []byte(content), 0o644); err != nil {
				return err
			}
		}
		b.WriteString(conf)
	} else {
		s.writePasswordAuth(p)
	}
	p("namespace inbox {")
	p("  inbox = yes")
	p("  separator = %s", s.opts.Separator)
	p("  prefix = %s", s.opts.Prefix)
	for _, name := range sortedKeys(s.opts.SpecialUse) {
		p("  mailbox \"%s\" {", name)
		p("    special_use = %s", s.opts.SpecialUse[name])
		p("    auto = subscribe")
		p("  }")
	}
	p("}")
	p("service imap-login {")
	p("  inet_listener imap {")
	p("    address = 127.0.0.1")
	p("    port = %s", port)
	p("  }")
	p("  inet_listener imaps {")
	p("    address = 127.0.0.1")
	p("    port = %s", tlsPort)
	p("    ssl = yes")
	p("  }")
	p("}")
	return writeFile(s.confPath(), []byte(b.String()), 0o644)
}

var errAddrInUse = errors.New("address already in use")

// start runs the Dovecot master and waits for the greeting.
// writePasswordAuth is the default auth part: LOGIN and PLAIN against the
// passwd-file, and the master user when there is one.
func (s *Server) writePasswordAuth(p func(format string, args ...any)) {
	p("auth_mechanisms = plain login")
	if s.opts.MasterUser != "" {
		p("auth_master_user_separator = *")
		p("passdb {")
		p("  driver = passwd-file")
		p("  args = scheme=PLAIN %s", s.masterPasswdPath())
		p("  master = yes")
		p("  pass = yes") // the user logged in as must exist in the next passdb
		p("}")
	}
	p("passdb {")
	p("  driver = passwd-file")
	p("  args = scheme=PLAIN username_format=%%u %s", s.passwdPath())
	p("}")
	p("userdb {")
	p("  driver = passwd-file")
	p("  args = username_format=%%u %s", s.passwdPath())
	p("}")
}

func (s *Server) start() error {
	logFile, err := os.OpenFile(s.logPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	cmd := exec.Command(dovecotPath, "-F", "-c", s.confPath())
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout = logFile // errors before the log process runs, e.g. bad configuration
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()

	proc := &process{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked Dovecot ends, not the process:
		// keep this goroutine on its thread until Dovecot has exited.
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
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		err := readGreeting(s.addr)
		if err == nil {
			return nil
		}
		select {
		case <-proc.done:
			s.mu.Lock()
			s.proc = nil
			s.mu.Unlock()
			if bytes.Contains(s.logSince(logStart), []byte("Address already in use")) {
				return fmt.Errorf("dovecot exited (%v): %w", proc.err, errAddrInUse)
			}
			return fmt.Errorf("dovecot exited before greeting (%v)", proc.err)
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("no IMAP greeting on %s after %v: %v", s.addr, startTimeout, err)
		}
	}
}

// readGreeting connects to addr and reads the server's untagged OK greeting.
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

// Addr returns the plain listener's address, "127.0.0.1:port". It offers
// STARTTLS when the server has TLS.
func (s *Server) Addr() string { return s.addr }

// TLSAddr returns the implicit-TLS listener's address, "127.0.0.1:port", or ""
// when Options.TLS is false.
func (s *Server) TLSAddr() string { return s.tlsAddr }

// URL returns the plain listener as a URL, "imap+plain://127.0.0.1:port".
func (s *Server) URL() string { return "imap+plain://" + s.addr }

// CertPEM returns the server's self-signed certificate in PEM form (nil without
// TLS), for a client's root pool.
func (s *Server) CertPEM() []byte { return s.certPEM }

// Dir returns the directory holding the server's configuration, log, state and mail.
func (s *Server) Dir() string { return s.dir }

// Dial connects to the plain listener and logs in as user with the password from
// Options.Users. The client is closed at test cleanup.
func (s *Server) Dial(tb testing.TB, user string) *imapclient.Client {
	tb.Helper()
	password, ok := s.opts.Users[user]
	if !ok {
		tb.Fatalf("dovecottest: no user %q", user)
	}
	c, err := imapclient.DialInsecure(s.addr, nil)
	if err != nil {
		tb.Fatalf("dovecottest: dialing %s: %v", s.addr, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		tb.Fatalf("dovecottest: login as %q on %s: %v", user, s.addr, err)
	}
	return c
}

// Stop kills Dovecot's process group (SIGTERM, then SIGKILL after 200 ms) and waits
// for the master to exit. It may be called more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	proc := s.proc
	s.proc = nil
	s.mu.Unlock()
	if proc == nil {
		return
	}
	// SIGTERM to the whole group: usually every process exits within a few
	// milliseconds and the master reaps its children. (SIGTERM to the master
	// alone takes a second and leaves zombies.) Now and then the master waits a
	// second for a child it has just forked: SIGKILL then, leaving init to reap.
	signalGroup(proc.pid, syscall.SIGTERM)
	select {
	case <-proc.done:
	case <-time.After(stopGrace):
		signalGroup(proc.pid, syscall.SIGKILL)
		<-proc.done
	}
}

// Restart stops Dovecot and starts it again on the same ports, configuration and
// mail, as after a crash. Clients connected before are disconnected.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	// The ports were just freed; if something else grabbed one, wait a little.
	var err error
	for range portAttempts {
		if err = s.start(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("dovecottest: restart: %v", err)
	}
}

// MaildirPath returns the user's Maildir (the INBOX; other mailboxes are below it).
func (s *Server) MaildirPath(user string) string {
	return filepath.Join(s.homePath(user), "Maildir")
}

// Log returns what Dovecot has logged so far, including what it wrote to stderr.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("(reading %s: %v)", s.logPath(), err)
	}
	return string(b)
}

// logSince returns the log from byte offset off.
func (s *Server) logSince(off int64) []byte {
	b, _ := os.ReadFile(s.logPath())
	if off > int64(len(b)) {
		return nil
	}
	return b[off:]
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
